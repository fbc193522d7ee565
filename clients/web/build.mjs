// Builds the package (dist/index.js, Uppy left to the app) and the example page
// (example/dist/: one bundle with Uppy and the Dashboard, and its CSS).
import { build } from 'esbuild'

await build({
  entryPoints: ['src/index.js'],
  outfile: 'dist/index.js',
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  external: ['@uppy/*'],
})
await build({
  entryPoints: ['example/main.js'],
  outdir: 'example/dist',
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  minify: true,
})

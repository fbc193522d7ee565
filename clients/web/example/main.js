// The ready page: several files, per-file progress, pause and resume, retry after a network
// error (the Dashboard's own), and each file's mediagate state once processing starts.
// Configured by the URL: ?api=<mediagate base URL>&token=<app token>. A token in a URL is for
// this demo only: URLs end up in browser history, server logs and Referer headers. A real app
// gets its token from its own sign-in and hands it to `getToken`.
import Uppy from '@uppy/core'
import Dashboard from '@uppy/dashboard'
import '@uppy/core/css/style.min.css'
import '@uppy/dashboard/css/style.min.css'
import { mediagateUppy } from '../src/index.js'

const params = new URLSearchParams(location.search)
const uppy = new Uppy({ autoProceed: false })
uppy.use(Dashboard, { inline: true, target: '#uploader', proudlyDisplayPoweredByUppy: false })
mediagateUppy(uppy, {
  baseUrl: params.get('api') ?? location.origin,
  getToken: () => params.get('token') ?? '',
  // Processing usually starts within seconds; the page asks every half second.
  pollMs: 500,
})
// Multipart from 10 MiB, so large files can be paused and resumed part by part.
uppy.getPlugin('AwsS3').setOptions({ shouldUseMultipart: (file) => file.size > 10 * 1024 * 1024 })

const states = document.querySelector('#states')
uppy.on('mediagate:state', (file, upload) => {
  let row = states.querySelector(`[data-upload="${upload.upload_id}"]`)
  if (!row) {
    row = document.createElement('li')
    row.dataset.upload = upload.upload_id
    states.append(row)
  }
  row.dataset.file = file.name
  row.dataset.state = upload.state
  row.textContent = `${file.name}: ${upload.state}${upload.state_reason ? ` (${upload.state_reason})` : ''}`
})
window.uppy = uppy

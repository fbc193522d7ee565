// The ready page: several files, per-file progress, pause and resume, retry after a network
// error (the Dashboard's own), each file's mediagate state as it changes and, once processing
// is done, its rendition and cover.
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
})
// Multipart from 10 MiB, so large files can be paused and resumed part by part.
uppy.getPlugin('AwsS3').setOptions({ shouldUseMultipart: (file) => file.size > 10 * 1024 * 1024 })

// One row per upload: its state, and its media once it is ready.
const states = document.querySelector('#states')
function row(file, upload) {
  let li = states.querySelector(`[data-upload="${upload.upload_id}"]`)
  if (!li) {
    li = document.createElement('li')
    li.dataset.upload = upload.upload_id
    li.append(document.createElement('span'))
    states.append(li)
  }
  li.dataset.file = file.name
  li.dataset.state = upload.state
  li.firstChild.textContent =
    `${file.name}: ${upload.state}${upload.state_reason ? ` (${upload.state_reason})` : ''}`
  return li
}
uppy.on('mediagate:state', row)
uppy.on('mediagate:failed', row)
uppy.on('mediagate:ready', (file, upload, outputs) => {
  const li = row(file, upload)
  const video = outputs.find((o) => o.kind === 'video')
  const cover = outputs.find((o) => o.kind === 'image')
  if (video) {
    const player = document.createElement('video')
    for (const name of ['controls', 'muted', 'playsinline']) player.setAttribute(name, '')
    // The attribute only sets the default; a page that may autoplay must be muted now.
    player.muted = true
    player.preload = 'auto'
    player.src = video.url
    li.append(player)
  }
  if (cover) {
    const img = document.createElement('img')
    img.alt = `cover of ${file.name}`
    img.src = cover.url
    li.append(img)
  }
})
uppy.on('mediagate:error', (file, error) => {
  const li = states.querySelector(`[data-upload="${file.meta.mediagateUploadId}"]`)
  if (li) li.firstChild.textContent = `${file.name}: cannot follow (${error.message})`
})
window.uppy = uppy

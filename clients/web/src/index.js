// Wires an Uppy instance to mediagate: each added file becomes a mediagate upload in
// `presigned` mode (one POST /v1/uploads), every request to the bucket is signed by
// mediagate for that upload's own key (POST /v1/uploads/{id}/sign), and each upload is then
// followed to its outcome (its state stream, or polling when the stream cannot be used). No
// key reaches the browser.
import AwsS3 from '@uppy/aws-s3'
import { FAILED, followUpload } from './follow.js'

const MEDIA_FIELDS = ['title', 'description', 'tags', 'cate_id', 'cover_url', 'user_data']
const sleep = (ms) => new Promise((done) => setTimeout(done, ms))

export function mediagateUppy(uppy, options) {
  const { baseUrl, getToken, pollMs = 1000, pollMaxMs = 30000, pollForMs, retries = 5 } = options
  const base = baseUrl.replace(/\/$/, '')
  const uploadIds = new Map()
  // The files being followed, to stop when one is removed or Uppy is closed.
  const following = new Map()
  // What a reload must not lose, per file (name, size, last change): the mediagate upload and
  // the multipart upload, so the same file added again sends only the missing parts.
  const saved = options.storage ?? globalThis.localStorage
  const fingerprint = (file) =>
    `mediagate:${file.name}:${file.size}:${file.data?.lastModified ?? ''}`
  const remember = (file) =>
    saved?.setItem(
      fingerprint(file),
      JSON.stringify({
        uploadId: file.meta.mediagateUploadId,
        key: file.meta.mediagateKey,
        s3Multipart: file.s3Multipart,
      }),
    )
  const forget = (file) => saved?.removeItem(fingerprint(file))

  // mediagate answers 429 and 503 with Retry-After; Uppy gives up on a file whose sign call
  // fails, so those are waited out here.
  async function api(path, body) {
    for (let attempt = 0; ; attempt++) {
      const response = await fetch(base + path, {
        method: body === undefined ? 'GET' : 'POST',
        headers: {
          authorization: `Bearer ${await getToken()}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      })
      if ((response.status === 429 || response.status === 503) && attempt < retries) {
        const seconds = Number(response.headers.get('retry-after')) || 1
        await sleep(seconds * 1000)
        continue
      }
      const answer = await response.json().catch(() => ({}))
      if (!response.ok) {
        const error = new Error(answer.error?.message ?? `mediagate answered ${response.status}`)
        error.code = answer.error?.code
        throw error
      }
      return answer
    }
  }

  async function register(fileIDs) {
    for (const id of fileIDs) {
      const file = uppy.getFile(id)
      if (file.meta.mediagateUploadId) {
        uploadIds.set(file.meta.mediagateKey, file.meta.mediagateUploadId)
        continue
      }
      const media = Object.fromEntries(
        MEDIA_FIELDS.filter((k) => file.meta[k] !== undefined).map((k) => [k, file.meta[k]]),
      )
      const created = await api('/v1/uploads', {
        file_name: file.name,
        size: file.size ?? undefined,
        content_type: file.type || undefined,
        mode: 'presigned',
        ...(Object.keys(media).length ? { media } : {}),
      })
      uppy.setFileMeta(id, {
        mediagateUploadId: created.upload_id,
        mediagateKey: created.object_key,
      })
      uploadIds.set(created.object_key, created.upload_id)
      remember(uppy.getFile(id))
    }
  }

  function restore(file) {
    const before = JSON.parse(saved?.getItem(fingerprint(file)) ?? 'null')
    if (!before?.uploadId) return
    uppy.setFileMeta(file.id, { mediagateUploadId: before.uploadId, mediagateKey: before.key })
    uploadIds.set(before.key, before.uploadId)
    if (before.s3Multipart) uppy.setFileState(file.id, { s3Multipart: before.s3Multipart })
  }

  async function follow(file) {
    following.get(file.id)?.abort()
    const stop = new AbortController()
    following.set(file.id, stop)
    let state
    const current = () => uppy.getFile(file.id)
    let upload
    try {
      upload = await followUpload({
        baseUrl: base,
        id: file.meta.mediagateUploadId,
        getToken,
        signal: stop.signal,
        pollMs,
        pollMaxMs,
        forMs: pollForMs,
        onView: (view) => {
          if (view.state === state || !current()) return
          state = view.state
          uppy.setFileMeta(file.id, { mediagateState: view.state })
          uppy.emit('mediagate:state', current(), view)
        },
      })
    } catch (error) {
      // Removed, or Uppy closed: nobody is waiting for this file any more.
      if (stop.signal.aborted || !current()) return
      uppy.log(`mediagate: ${error.message}`, 'warning')
      uppy.emit('mediagate:error', current(), error)
      return
    } finally {
      if (following.get(file.id) === stop) following.delete(file.id)
    }
    if (!current()) return
    if (upload.state === 'ready') {
      uppy.emit('mediagate:ready', current(), upload, upload.outputs ?? [])
    } else if (FAILED.has(upload.state)) {
      uppy.emit('mediagate:failed', current(), upload)
    }
  }

  uppy.on('file-added', restore)
  uppy.on('s3-multipart:part-uploaded', (file) => remember(uppy.getFile(file.id)))
  uppy.addPreProcessor(register)
  uppy.use(AwsS3, {
    generateObjectKey: (file) => file.meta.mediagateKey,
    signRequest: (request) => {
      const id = uploadIds.get(request.key)
      if (!id) throw new Error(`no mediagate upload for ${request.key}`)
      return api(`/v1/uploads/${id}/sign`, request)
    },
  })
  uppy.on('upload-success', (file) => {
    forget(file)
    follow(uppy.getFile(file.id) ?? file).catch((error) =>
      uppy.log(`mediagate: ${error.message}`, 'warning'),
    )
  })
  uppy.on('file-removed', (file) => following.get(file.id)?.abort())
  uppy.on('cancel-all', () => {
    for (const stop of following.values()) stop.abort()
  })
  return uppy
}

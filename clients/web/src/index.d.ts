import type Uppy from '@uppy/core'

export interface MediagateOptions {
  /** mediagate's base URL, e.g. `https://uploads.example.com`. */
  baseUrl: string
  /** The app user's token (JWT or API key), fetched before each call. */
  getToken: () => string | Promise<string>
  /** How often to ask for the upload's state after the bytes are in the bucket (1000 ms). */
  pollMs?: number
  /** How long to keep asking (120000 ms). */
  pollForMs?: number
  /** Retries of a call answered 429 or 503, after its Retry-After (5). */
  retries?: number
  /** Where an upload in progress is kept across page reloads (`localStorage`). */
  storage?: Pick<Storage, 'getItem' | 'setItem' | 'removeItem'>
}

/** A mediagate upload as `GET /v1/uploads/{id}` returns it. */
export interface MediagateUpload {
  upload_id: string
  object_key: string
  state: 'issued' | 'uploaded' | 'triggered' | 'skipped' | 'failed' | 'rejected' | 'expired'
  state_reason?: string
  [field: string]: unknown
}

/**
 * Wires `uppy` to mediagate (installs `@uppy/aws-s3` in `signRequest` mode). Emits
 * `mediagate:state` (file, upload) when the upload's state changes after its bytes are in
 * the bucket; the file's meta gets `mediagateUploadId`, `mediagateKey`, `mediagateState`.
 */
export function mediagateUppy<U extends Uppy<any, any>>(uppy: U, options: MediagateOptions): U

import type Uppy from '@uppy/core'
import type { Body, Meta, UppyFile } from '@uppy/core/utils'

export interface MediagateOptions {
  /** mediagate's base URL, e.g. `https://uploads.example.com`. */
  baseUrl: string
  /** The app user's token (JWT or API key), fetched before each call. */
  getToken: () => string | Promise<string>
  /**
   * When the state stream cannot be used, the first wait before asking for the upload again
   * (1000 ms); each wait without a change doubles, up to `pollMaxMs`.
   */
  pollMs?: number
  /** The longest wait between two looks at an upload (30000 ms). */
  pollMaxMs?: number
  /** Stop following an upload after this long (no limit: every upload ends in a final state). */
  pollForMs?: number
  /** Retries of a call answered 429 or 503, after its Retry-After (5). */
  retries?: number
  /** Where an upload in progress is kept across page reloads (`localStorage`). */
  storage?: Pick<Storage, 'getItem' | 'setItem' | 'removeItem'>
}

/** Something processing made, with a GET URL for it. */
export interface MediagateOutput {
  workflow: string
  name: string
  kind: 'video' | 'audio' | 'image' | 'other'
  format: string | null
  width: number | null
  height: number | null
  duration_ms: number | null
  size: number | null
  /** A GET URL for exactly this object, valid until `url_expires_at`. */
  url: string
  /** RFC 3339. */
  url_expires_at: string
}

/** A mediagate upload as `GET /v1/uploads/{id}` returns it. */
export interface MediagateUpload {
  upload_id: string
  object_key: string
  state:
    | 'issued'
    | 'uploaded'
    | 'triggered'
    | 'processing'
    | 'ready'
    | 'skipped'
    | 'failed'
    | 'rejected'
    | 'expired'
  state_reason?: string
  outputs: MediagateOutput[]
  [field: string]: unknown
}

/** Following an upload ended without an outcome: mediagate answered 401, 403 or 404. */
export interface MediagateFollowError extends Error {
  status?: number
  code?: string
}

/**
 * Wires `uppy` to mediagate (installs `@uppy/aws-s3` in `signRequest` mode) and follows each
 * uploaded file to its outcome. Events on `uppy`:
 * - `mediagate:state` (file, upload) each time the upload's state changes;
 * - `mediagate:ready` (file, upload, outputs) when processing made everything it should;
 * - `mediagate:failed` (file, upload) when it ended `failed`, `rejected`, `expired` or
 *   `skipped` (`upload.state_reason` says why);
 * - `mediagate:error` (file, error) when following had to stop without an outcome.
 *
 * An upload whose workflows report nothing back ends `triggered`: only `mediagate:state`.
 * Following stops when the file is removed or Uppy is closed. The file's meta gets
 * `mediagateUploadId`, `mediagateKey`, `mediagateState`.
 */
export function mediagateUppy<U extends Uppy<any, any>>(uppy: U, options: MediagateOptions): U

declare module '@uppy/core' {
  interface UppyEventMap<M extends Meta, B extends Body> {
    'mediagate:state': (file: UppyFile<M, B>, upload: MediagateUpload) => void
    'mediagate:ready': (
      file: UppyFile<M, B>,
      upload: MediagateUpload,
      outputs: MediagateOutput[],
    ) => void
    'mediagate:failed': (file: UppyFile<M, B>, upload: MediagateUpload) => void
    'mediagate:error': (file: UppyFile<M, B>, error: MediagateFollowError) => void
  }
}

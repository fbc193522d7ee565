// Follows one mediagate upload to its outcome: the state stream
// (GET /v1/uploads/{id}/events, Server-Sent Events read through fetch, since EventSource
// cannot send an Authorization header), and polling GET /v1/uploads/{id} with backoff
// whenever the stream cannot be used. No Uppy in here, so it runs as it is under `node --test`.

/** States after which nothing more happens to an upload by itself (the server's own list). */
export const FINAL = new Set(['triggered', 'ready', 'skipped', 'failed', 'rejected', 'expired'])

/** States a follower reports as a failure; `triggered` (no outcome followed) is neither. */
export const FAILED = new Set(['skipped', 'failed', 'rejected', 'expired'])

/**
 * An incremental Server-Sent Events parser (the WHATWG rules): lines end with CRLF, LF or
 * CR, a blank line dispatches the event, `:` starts a comment, `data:` lines are joined with
 * `\n`, one space after the colon is dropped, an event with no data is not dispatched, and
 * an event cut off by the end of the stream is discarded. Text may be split anywhere.
 * `onEvent({ event, data, id })` gets each event (`event` defaults to `message`).
 */
export function createSseParser(onEvent) {
  let buffer = ''
  let afterCr = false // the last chunk ended with CR: a LF opening the next one belongs to it
  let started = false
  let event = ''
  let data = []
  let lastId = ''

  function line(text) {
    if (text === '') {
      if (data.length) onEvent({ event: event || 'message', data: data.join('\n'), id: lastId })
      event = ''
      data = []
      return
    }
    if (text.startsWith(':')) return
    const colon = text.indexOf(':')
    const field = colon < 0 ? text : text.slice(0, colon)
    let value = colon < 0 ? '' : text.slice(colon + 1)
    if (value.startsWith(' ')) value = value.slice(1)
    if (field === 'event') event = value
    else if (field === 'data') data.push(value)
    else if (field === 'id' && !value.includes('\0')) lastId = value
    // `retry` and unknown fields: nothing to do for this client.
  }

  return {
    push(text) {
      if (!text) return
      if (!started) {
        started = true
        if (text.startsWith('\uFEFF')) text = text.slice(1)
      }
      if (afterCr && text.startsWith('\n')) text = text.slice(1)
      afterCr = false
      buffer += text
      let start = 0
      for (let i = 0; i < buffer.length; i++) {
        const c = buffer[i]
        if (c !== '\n' && c !== '\r') continue
        line(buffer.slice(start, i))
        if (c === '\r') {
          if (i + 1 === buffer.length) afterCr = true
          else if (buffer[i + 1] === '\n') i++
        }
        start = i + 1
      }
      buffer = buffer.slice(start)
    },
  }
}

/** An HTTP answer that ends following: the upload is not (or no longer) the caller's to see. */
export class FollowError extends Error {
  constructor(status, answer) {
    super(answer?.error?.message ?? `mediagate answered ${status}`)
    this.name = 'FollowError'
    this.status = status
    this.code = answer?.error?.code
  }
}

// 408 and 429 are worth another try; any other 4xx will be answered the same way again.
const gone = (status) => status >= 400 && status < 500 && status !== 408 && status !== 429

/** `Retry-After` in ms (seconds or an HTTP date); 0 when absent or unreadable. */
function retryAfter(response) {
  const value = response.headers.get('retry-after')
  if (!value) return 0
  const seconds = Number(value)
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000)
  const at = Date.parse(value)
  return Number.isNaN(at) ? 0 : Math.max(0, at - Date.now())
}

function abortableSleep(ms, signal) {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve()
    const done = () => {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    signal.addEventListener('abort', done)
  })
}

/**
 * Follows upload `id` until a final state and resolves with its last view. `onView(view)` is
 * called with each view that differs from the one before. Rejects with a `FollowError` on
 * 401, 403, 404 (and other answers that would not change), with the abort reason when
 * `signal` is aborted, and with an `Error` when `forMs` ran out.
 *
 * The stream comes first. When it cannot be used (no streaming body, a network error, 429
 * over the streams allowed per user, 5xx, or a stream that ends before a final state) the
 * upload is looked at right away (after the answer's `Retry-After`, if any) and then polled, after `pollMs` doubling to `pollMaxMs`
 * (back to `pollMs` after a change), never sooner than a `Retry-After`. The stream is tried
 * again on a backoff of its own with the same steps; a stream that told of a change and then
 * ended starts it afresh.
 */
export async function followUpload({
  baseUrl,
  id,
  getToken,
  onView = () => {},
  signal = new AbortController().signal,
  pollMs = 1000,
  pollMaxMs = 30000,
  forMs = Infinity,
  // The server says something (at least `: keep-alive`) every 15 s; silence past this means
  // a connection that died without closing.
  idleMs = 45000,
  fetch = globalThis.fetch.bind(globalThis),
  sleep = abortableSleep,
  now = Date.now,
}) {
  const path = `${baseUrl.replace(/\/$/, '')}/v1/uploads/${encodeURIComponent(id)}`
  const until = now() + forMs
  let last
  let lastText
  // Whether `view` is final; `onView` hears of it if it differs from the last one.
  const see = (view) => {
    const text = JSON.stringify(view)
    if (text !== lastText) {
      last = view
      lastText = text
      try {
        onView(view)
      } catch (error) {
        // A listener's mistake is the page's to see (its console, `onerror`), and no reason
        // to stop following.
        if (globalThis.reportError) globalThis.reportError(error)
        else
          queueMicrotask(() => {
            throw error
          })
      }
    }
    return FINAL.has(view.state)
  }
  const request = async (url, accept, own) =>
    fetch(url, {
      headers: { authorization: `Bearer ${await getToken()}`, accept },
      signal: own,
      cache: 'no-store',
    })
  const stopIfAborted = () => {
    if (signal.aborted) throw signal.reason ?? new DOMException('aborted', 'AbortError')
  }

  // One stream: 'final' once it showed a final state; else whether streams cannot work here
  // at all, and the least wait its answer asked for.
  async function stream() {
    const own = new AbortController()
    const abort = () => own.abort(signal.reason)
    signal.addEventListener('abort', abort)
    let idle
    const awake = () => {
      clearTimeout(idle)
      idle = setTimeout(() => own.abort(new Error('the stream went quiet')), idleMs)
    }
    let final = false
    try {
      awake()
      const response = await request(`${path}/events`, 'text/event-stream', own.signal)
      const type = response.headers.get('content-type') ?? ''
      if (!response.ok) {
        const answer = await response.json().catch(() => undefined)
        if (gone(response.status)) throw new FollowError(response.status, answer)
        return { wait: retryAfter(response) }
      }
      const reader = type.startsWith('text/event-stream') && response.body?.getReader?.()
      if (!reader) {
        // A body that cannot be read as it comes (or a proxy's page): poll from now on.
        response.body?.cancel?.().catch(() => {})
        return { wait: 0, unusable: true }
      }
      const decoder = new TextDecoder()
      const parser = createSseParser(({ event, data }) => {
        if (event !== 'upload' || final) return
        let view
        try {
          view = JSON.parse(data)
        } catch {
          return
        }
        final = see(view)
      })
      while (!final) {
        const { value, done } = await reader.read()
        if (done) break
        awake()
        parser.push(decoder.decode(value, { stream: true }))
      }
      if (final) {
        reader.cancel().catch(() => {})
        return 'final'
      }
      return { wait: 0 }
    } catch (error) {
      if (error instanceof FollowError) throw error
      stopIfAborted()
      return final ? 'final' : { wait: 0 }
    } finally {
      clearTimeout(idle)
      signal.removeEventListener('abort', abort)
    }
  }

  // One look: 'final', or the least wait its answer asked for.
  async function poll() {
    let response
    try {
      response = await request(path, 'application/json', signal)
    } catch {
      stopIfAborted()
      return { wait: 0 }
    }
    const answer = await response.json().catch(() => undefined)
    if (response.ok && typeof answer?.state === 'string') return see(answer) ? 'final' : { wait: 0 }
    if (gone(response.status)) throw new FollowError(response.status, answer)
    return { wait: retryAfter(response) }
  }

  let canStream = true
  let streamDelay = pollMs
  let nextStream = 0
  let delay = pollMs
  for (;;) {
    stopIfAborted()
    if (now() >= until) throw new Error(`upload ${id} was not final after ${forMs} ms`)
    if (canStream && now() >= nextStream) {
      const before = lastText
      const result = await stream()
      if (result === 'final') return last
      stopIfAborted()
      if (result.unusable) canStream = false
      // A stream that told of a change and then ended (a proxy's timeout, a restart) may well
      // work again soon; one that told nothing new waits longer each time.
      const progressed = lastText !== before
      if (progressed) streamDelay = pollMs
      nextStream = now() + Math.max(streamDelay, result.wait)
      if (!progressed) streamDelay = Math.min(streamDelay * 2, pollMaxMs)
      // A server that said when to come back (503 with Retry-After) is not asked before.
      if (result.wait > 0) {
        await sleep(result.wait, signal)
        stopIfAborted()
      }
    }
    const before = lastText
    const result = await poll()
    if (result === 'final') return last
    delay = lastText !== before ? pollMs : Math.min(delay * 2, pollMaxMs)
    const next = canStream ? Math.min(delay, nextStream - now()) : delay
    await sleep(Math.max(result.wait, next, 0), signal)
  }
}

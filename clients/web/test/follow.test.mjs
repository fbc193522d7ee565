// Following an upload to its outcome against a small `node:http` stand-in for mediagate:
// the stream when it works, polling with backoff when it does not. `node --test`
// (scripts/web.sh test).
import assert from 'node:assert/strict'
import { test } from 'node:test'

import { FollowError, followUpload } from '../src/follow.js'
import { READY, TOKEN, json, send, server, sse, view } from './standin.mjs'

// Waits are recorded and move a clock of their own instead of taking that long, so backoff
// is checked without waiting it out.
function quickSleep() {
  const waits = []
  let clock = 0
  const now = () => clock
  const sleep = (ms, signal) => {
    waits.push(ms)
    clock += ms
    return new Promise((r) => {
      const t = setTimeout(r, 5)
      signal.addEventListener('abort', () => (clearTimeout(t), r()), { once: true })
    })
  }
  return { waits, sleep, now }
}

const follow = (baseUrl, extra = {}) => {
  const views = []
  const done = followUpload({
    baseUrl,
    id: 'u1',
    getToken: async () => TOKEN,
    onView: (v) => views.push(v.state),
    ...extra,
  })
  return { views, done }
}

test('the stream alone: every view, then the final one', async () => {
  const s = await server({
    events: (req, res) => {
      sse(res)
      res.write(': keep-alive\n\n')
      send(res, view('uploaded'))
      setTimeout(() => send(res, view('processing')), 20)
      setTimeout(() => (send(res, READY), res.end()), 40)
    },
    upload: (req, res) => json(res, 500, {}),
  })
  try {
    const { views, done } = follow(s.baseUrl)
    const upload = await done
    assert.equal(upload.state, 'ready')
    assert.equal(upload.outputs[0].kind, 'video')
    assert.deepEqual(views, ['uploaded', 'processing', 'ready'])
    assert.equal(s.seen.upload, 0, 'no polling while the stream works')
  } finally {
    s.close()
  }
})

test('a stream answered 429 (too many streams): polling with backoff reaches ready', async () => {
  const states = ['processing', 'processing', 'processing', 'processing', 'ready']
  const s = await server({
    events: (req, res) =>
      json(res, 429, { error: { code: 'rate_limited', message: 'at most 4 streams' } }),
    upload: (req, res, n) =>
      n === 1
        ? json(res, 503, { error: { code: 'timeout', message: 'busy' } }, { 'retry-after': '7' })
        : json(res, 200, states[n] === 'ready' ? READY : view(states[n])),
  })
  try {
    const { waits, sleep, now } = quickSleep()
    const { views, done } = follow(s.baseUrl, { sleep, now, pollMs: 1000, pollMaxMs: 30000 })
    const upload = await done
    assert.equal(upload.state, 'ready')
    assert.deepEqual(views, ['processing', 'ready'])
    // The stream was tried again on its own backoff, and each try was refused.
    // pollMs first; the server's Retry-After (7 s) over the 2 s backoff; then 4 s and 8 s,
    // with the stream tried (and refused) before each look.
    assert.deepEqual(waits, [1000, 7000, 4000, 8000])
    assert.equal(s.seen.events, 5)
  } finally {
    s.close()
  }
})

test('polling waits double up to pollMaxMs while nothing changes', async () => {
  let n = 0
  const s = await server({
    events: (req, res) => json(res, 500, { error: { code: 'internal', message: 'oops' } }),
    upload: (req, res) => json(res, 200, ++n >= 9 ? READY : view('processing')),
  })
  try {
    const { waits, sleep, now } = quickSleep()
    const { done } = follow(s.baseUrl, { sleep, now, pollMs: 1000, pollMaxMs: 8000 })
    assert.equal((await done).state, 'ready')
    assert.deepEqual(waits, [1000, 2000, 4000, 8000, 8000, 8000, 8000, 8000])
    // The stream is tried again before each look, on the same backoff.
    assert.equal(s.seen.events, 9)
  } finally {
    s.close()
  }
})

test("the stream's Retry-After is waited out before the upload is looked at", async () => {
  const s = await server({
    events: (req, res) =>
      json(res, 503, { error: { code: 'timeout', message: 'busy' } }, { 'retry-after': '5' }),
    upload: (req, res) => json(res, 200, READY),
  })
  try {
    const { waits, sleep, now } = quickSleep()
    const { done } = follow(s.baseUrl, { sleep, now })
    assert.equal((await done).state, 'ready')
    assert.deepEqual(waits, [5000])
    assert.deepEqual(s.seen.requests, ['GET /v1/uploads/u1/events', 'GET /v1/uploads/u1'])
  } finally {
    s.close()
  }
})

test('a listener that throws does not stop following', async () => {
  const s = await server({
    events: (req, res) => {
      sse(res)
      send(res, view('processing'))
      setTimeout(() => (send(res, READY), res.end()), 20)
    },
    upload: (req, res) => json(res, 500, {}),
  })
  // What a browser has: the error goes to the page's console and `onerror`.
  const thrown = []
  globalThis.reportError = (e) => thrown.push(e.message)
  try {
    const seen = []
    const { done } = follow(s.baseUrl, {
      onView: (v) => {
        seen.push(v.state)
        throw new Error(`listener broke on ${v.state}`)
      },
    })
    assert.equal((await done).state, 'ready')
    assert.deepEqual(seen, ['processing', 'ready'])
    assert.deepEqual(thrown, ['listener broke on processing', 'listener broke on ready'])
    assert.equal(s.seen.events, 1)
  } finally {
    delete globalThis.reportError
    s.close()
  }
})

test('a stream that drops midway: the upload is looked at, the stream opened again', async () => {
  const s = await server({
    events: (req, res, n) => {
      sse(res)
      if (n === 0) {
        send(res, view('uploaded'))
        send(res, view('processing'))
        // Cut without a final state, as a proxy or a restart would.
        setTimeout(() => res.socket.destroy(), 20)
      } else {
        send(res, view('processing'))
        setTimeout(() => (send(res, READY), res.end()), 20)
      }
    },
    upload: (req, res) => json(res, 200, view('processing')),
  })
  try {
    const { sleep, now } = quickSleep()
    const { views, done } = follow(s.baseUrl, { sleep, now })
    const upload = await done
    assert.equal(upload.state, 'ready')
    assert.deepEqual(views, ['uploaded', 'processing', 'ready'])
    assert.equal(s.seen.events, 2)
    assert.equal(s.seen.upload, 1, 'one look between the two streams')
  } finally {
    s.close()
  }
})

test('a stream that ends cleanly before a final state counts as dropped', async () => {
  const s = await server({
    events: (req, res, n) => {
      sse(res)
      send(res, n === 0 ? view('processing') : view('failed', { state_reason: 'output_missing' }))
      res.end()
    },
    upload: (req, res) => json(res, 200, view('processing')),
  })
  try {
    const { sleep, now } = quickSleep()
    const { views, done } = follow(s.baseUrl, { sleep, now })
    const upload = await done
    assert.equal(upload.state, 'failed')
    assert.deepEqual(views, ['processing', 'failed'])
  } finally {
    s.close()
  }
})

test('a network error on the stream falls back to polling', async () => {
  const s = await server({
    events: (req, res) => res.socket.destroy(),
    upload: (req, res, n) => json(res, 200, n < 2 ? view('processing') : view('triggered')),
  })
  try {
    const { sleep, now } = quickSleep()
    const { views, done } = follow(s.baseUrl, { sleep, now })
    assert.equal((await done).state, 'triggered')
    assert.deepEqual(views, ['processing', 'triggered'])
  } finally {
    s.close()
  }
})

test('without a streaming body the upload is only polled', async () => {
  const s = await server({
    events: (req, res) => assert.fail('no stream without a ReadableStream'),
    upload: (req, res, n) => json(res, 200, n < 2 ? view('processing') : READY),
  })
  try {
    const { sleep, now } = quickSleep()
    let streams = 0
    // A fetch whose answers have no readable body, like a browser without ReadableStream.
    const bodiless = async (url, init) => {
      if (url.endsWith('/events')) {
        streams++
        return { ok: true, status: 200, headers: new Headers({ 'content-type': 'text/event-stream' }), body: null }
      }
      return fetch(url, init)
    }
    const { done } = follow(s.baseUrl, { sleep, now, fetch: bodiless })
    assert.equal((await done).state, 'ready')
    assert.equal(streams, 1, 'the stream is not tried again')
  } finally {
    s.close()
  }
})

test('401, 403 and 404 end following with the answer', async () => {
  for (const [status, code] of [
    [401, 'unauthorized'],
    [403, 'user_suspended'],
    [404, 'not_found'],
  ]) {
    const s = await server({
      events: (req, res) => json(res, 429, {}),
      upload: (req, res) => json(res, status, { error: { code, message: 'no' } }),
    })
    try {
      const { sleep, now } = quickSleep()
      const { done } = follow(s.baseUrl, { sleep, now })
      await assert.rejects(done, (e) => e instanceof FollowError && e.status === status && e.code === code)
      assert.equal(s.seen.upload, 1, 'asked once')
    } finally {
      s.close()
    }
  }
  // From the stream itself too.
  const s = await server({
    events: (req, res) => json(res, 404, { error: { code: 'not_found', message: 'no' } }),
    upload: (req, res) => assert.fail('not polled after a 404'),
  })
  try {
    await assert.rejects(follow(s.baseUrl).done, (e) => e.status === 404)
  } finally {
    s.close()
  }
})

test('aborting stops following: the stream is closed and nothing more is asked', async () => {
  let closed
  const streamClosed = new Promise((r) => (closed = r))
  const s = await server({
    events: (req, res) => {
      sse(res)
      send(res, view('processing'))
      res.on('close', closed)
    },
    upload: (req, res) => json(res, 200, view('processing')),
  })
  try {
    const stop = new AbortController()
    const { views, done } = follow(s.baseUrl, {
      signal: stop.signal,
      onView: (v) => (views.push(v.state), stop.abort()),
    })
    await assert.rejects(done, { name: 'AbortError' })
    await streamClosed
    await new Promise((r) => setTimeout(r, 50))
    assert.deepEqual(s.seen.requests, ['GET /v1/uploads/u1/events'])
    assert.deepEqual(views, ['processing'])
  } finally {
    s.close()
  }
})

test('aborting while polling ends the wait at once', async () => {
  const s = await server({
    events: (req, res) => json(res, 429, {}),
    upload: (req, res) => json(res, 200, view('processing')),
  })
  try {
    const stop = new AbortController()
    const { done } = follow(s.baseUrl, { signal: stop.signal, pollMs: 60000 })
    setTimeout(() => stop.abort(), 50)
    const started = Date.now()
    await assert.rejects(done, { name: 'AbortError' })
    assert.ok(Date.now() - started < 1000)
    assert.equal(s.seen.upload, 1)
  } finally {
    s.close()
  }
})

test('a stream that goes quiet past idleMs is given up for polling', async () => {
  const s = await server({
    events: (req, res) => sse(res), // headers, then nothing at all
    upload: (req, res) => json(res, 200, READY),
  })
  try {
    const { done } = follow(s.baseUrl, { idleMs: 100 })
    assert.equal((await done).state, 'ready')
  } finally {
    s.close()
  }
})

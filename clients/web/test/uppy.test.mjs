// The plugin's events on a real Uppy instance (no browser: the file's bytes are taken as
// uploaded), against the `node:http` stand-in. `node --test` (scripts/web.sh test).
import assert from 'node:assert/strict'
import { test } from 'node:test'

import Uppy from '@uppy/core'

import { mediagateUppy } from '../src/index.js'
import { READY, TOKEN, json, send, server, sse, view } from './standin.mjs'

const EVENTS = ['mediagate:state', 'mediagate:ready', 'mediagate:failed', 'mediagate:error']

/** An Uppy wired to `baseUrl` with one file whose upload is `u1`; what it emits. */
function uploaded(baseUrl) {
  const uppy = new Uppy()
  mediagateUppy(uppy, { baseUrl, getToken: async () => TOKEN, storage: null })
  const heard = []
  const settled = new Promise((resolve) => {
    for (const name of EVENTS) {
      uppy.on(name, (file, ...rest) => {
        // Uppy's emitter passes a fixed number of arguments, unused ones undefined.
        while (rest.length && rest.at(-1) === undefined) rest.pop()
        heard.push([name, file.name, ...rest.map((r) => r?.state ?? r?.status ?? r)])
        if (name !== 'mediagate:state' || rest[0].state === 'triggered') resolve()
      })
    }
  })
  const id = uppy.addFile({
    name: 'clip.mp4',
    type: 'video/mp4',
    data: new Blob(['not really a clip']),
    meta: { mediagateUploadId: 'u1', mediagateKey: 'uploads/alice/u1/clip.mp4' },
  })
  uppy.emit('upload-success', uppy.getFile(id), { status: 200 })
  return { uppy, id, heard, settled }
}

test('ready: each state, then mediagate:ready with the outputs', async () => {
  const s = await server({
    events: (req, res) => {
      sse(res)
      send(res, view('uploaded'))
      send(res, view('processing', { triggers: [{ processing: 'pending' }] }))
      // A change of the view that is no change of state: no event.
      send(res, view('processing', { triggers: [{ processing: 'running' }] }))
      send(res, READY)
      res.end()
    },
    upload: (req, res) => json(res, 500, {}),
  })
  try {
    const { uppy, id, heard, settled } = uploaded(s.baseUrl)
    await settled
    assert.deepEqual(heard.slice(0, 3), [
      ['mediagate:state', 'clip.mp4', 'uploaded'],
      ['mediagate:state', 'clip.mp4', 'processing'],
      ['mediagate:state', 'clip.mp4', 'ready'],
    ])
    const [name, file, upload, outputs] = heard[3]
    assert.deepEqual([name, file, upload], ['mediagate:ready', 'clip.mp4', 'ready'])
    assert.deepEqual(outputs, READY.outputs)
    assert.equal(heard.length, 4)
    assert.equal(uppy.getFile(id).meta.mediagateState, 'ready')
  } finally {
    s.close()
  }
})

test('failed, rejected, expired and skipped: mediagate:failed with the upload', async () => {
  for (const state of ['failed', 'rejected', 'expired', 'skipped']) {
    const s = await server({
      events: (req, res) => {
        sse(res)
        send(res, view(state, { state_reason: 'processing_failed' }))
        res.end()
      },
      upload: (req, res) => json(res, 500, {}),
    })
    try {
      const { heard, settled } = uploaded(s.baseUrl)
      await settled
      assert.deepEqual(heard, [
        ['mediagate:state', 'clip.mp4', state],
        ['mediagate:failed', 'clip.mp4', state],
      ])
    } finally {
      s.close()
    }
  }
})

test('triggered (nothing reports back): mediagate:state alone, then following ends', async () => {
  const s = await server({
    events: (req, res) => {
      sse(res)
      send(res, view('triggered'))
      res.end()
    },
    upload: (req, res) => json(res, 500, {}),
  })
  try {
    const { heard, settled } = uploaded(s.baseUrl)
    await settled
    await new Promise((r) => setTimeout(r, 50))
    assert.deepEqual(heard, [['mediagate:state', 'clip.mp4', 'triggered']])
    assert.deepEqual(s.seen.requests, ['GET /v1/uploads/u1/events'])
  } finally {
    s.close()
  }
})

test('an upload mediagate does not know: mediagate:error with its status', async () => {
  const s = await server({
    events: (req, res) => json(res, 404, { error: { code: 'not_found', message: 'no such upload' } }),
    upload: (req, res) => json(res, 404, {}),
  })
  try {
    const { heard, settled } = uploaded(s.baseUrl)
    await settled
    assert.deepEqual(heard, [['mediagate:error', 'clip.mp4', 404]])
  } finally {
    s.close()
  }
})

for (const [how, stop] of [
  ['the file is removed', (uppy, id) => uppy.removeFile(id)],
  ['Uppy is closed', (uppy) => uppy.destroy()],
]) {
  test(`following stops when ${how}`, async () => {
    let closed
    const streamClosed = new Promise((r) => (closed = r))
    let opened
    const streamOpened = new Promise((r) => (opened = r))
    const s = await server({
      events: (req, res) => {
        sse(res)
        send(res, view('processing'))
        res.on('close', closed)
        opened()
      },
      upload: (req, res) => json(res, 200, view('processing')),
    })
    try {
      const { uppy, id, heard } = uploaded(s.baseUrl)
      await streamOpened
      await new Promise((r) => setTimeout(r, 20))
      stop(uppy, id)
      await streamClosed
      await new Promise((r) => setTimeout(r, 50))
      assert.deepEqual(heard, [['mediagate:state', 'clip.mp4', 'processing']])
      assert.deepEqual(s.seen.requests, ['GET /v1/uploads/u1/events'])
    } finally {
      s.close()
    }
  })
}

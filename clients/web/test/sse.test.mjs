// The Server-Sent Events parser: `node --test` (scripts/web.sh test).
import assert from 'node:assert/strict'
import { test } from 'node:test'

import { createSseParser } from '../src/follow.js'

const parse = (chunks) => {
  const events = []
  const parser = createSseParser((e) => events.push(e))
  for (const chunk of chunks) parser.push(chunk)
  return events
}

// What mediagate sends: a keep-alive, two views, and the CRLF and lone-CR forms of it.
const STREAM =
  ': keep-alive\n\n' +
  'event: upload\ndata: {"state":"processing"}\n\n' +
  ': keep-alive\n\n' +
  'event: upload\ndata: {"state":"ready","outputs":[{"kind":"video"}]}\n\n'
const EXPECTED = [
  { event: 'upload', data: '{"state":"processing"}', id: '' },
  { event: 'upload', data: '{"state":"ready","outputs":[{"kind":"video"}]}', id: '' },
]

test('events are separated by blank lines; comments are skipped', () => {
  assert.deepEqual(parse([STREAM]), EXPECTED)
})

test('CRLF and lone CR end lines as LF does', () => {
  assert.deepEqual(parse([STREAM.replaceAll('\n', '\r\n')]), EXPECTED)
  assert.deepEqual(parse([STREAM.replaceAll('\n', '\r')]), EXPECTED)
})

test('a chunk may end anywhere, even between CR and LF', () => {
  for (const stream of [STREAM, STREAM.replaceAll('\n', '\r\n'), STREAM.replaceAll('\n', '\r')]) {
    for (let i = 0; i <= stream.length; i++) {
      for (const j of [i, Math.min(stream.length, i + 1), Math.min(stream.length, i + 7)]) {
        const chunks = [stream.slice(0, i), stream.slice(i, j), stream.slice(j)]
        assert.deepEqual(parse(chunks), EXPECTED, JSON.stringify(chunks))
      }
    }
    assert.deepEqual(parse([...stream]), EXPECTED, 'one character at a time')
  }
})

test('data lines are joined with LF; one space after the colon is dropped', () => {
  const events = parse([
    'event: upload\r\ndata: {"a":\r\ndata:1,\ndata:  "b": 2}\rid: 7\n\n',
    'data\n\n',
    'data:\ndata:\n\n',
  ])
  assert.deepEqual(events, [
    { event: 'upload', data: '{"a":\n1,\n "b": 2}', id: '7' },
    { event: 'message', data: '', id: '7' },
    { event: 'message', data: '\n', id: '7' },
  ])
})

test('an event without data, unknown fields and a cut-off last event are not dispatched', () => {
  const events = parse([
    '\uFEFFevent: upload\nretry: 10\nfoo: bar\n\n',
    'event: upload\ndata: {"state":"uploaded"}\n\n',
    'event: upload\ndata: {"state":"ready"}\n',
  ])
  assert.deepEqual(events, [{ event: 'upload', data: '{"state":"uploaded"}', id: '' }])
})

test('the event type does not carry over to the next event', () => {
  const events = parse(['event: upload\ndata: 1\n\ndata: 2\n\n'])
  assert.deepEqual(
    events.map((e) => e.event),
    ['upload', 'message'],
  )
})

test('multi-byte characters split across chunks survive a streaming decoder', () => {
  const bytes = new TextEncoder().encode('event: upload\ndata: {"file_name":"Trip 海滩.mp4"}\n\n')
  const decoder = new TextDecoder()
  const events = []
  const parser = createSseParser((e) => events.push(e))
  for (const b of bytes) parser.push(decoder.decode(new Uint8Array([b]), { stream: true }))
  assert.deepEqual(JSON.parse(events[0].data), { file_name: 'Trip 海滩.mp4' })
})

// A small `node:http` stand-in for mediagate's upload routes, for the unit tests.
import { once } from 'node:events'
import { createServer } from 'node:http'

export const TOKEN = 'app-token'
export const view = (state, extra = {}) => ({ upload_id: 'u1', object_key: 'k', state, outputs: [], ...extra })
export const READY = view('ready', {
  outputs: [{ kind: 'video', name: 'video.mp4', url: 'http://store/v?sig=1' }],
})

/**
 * A mediagate stand-in: `routes.events(req, res, n)` and `routes.upload(req, res, n)` answer
 * the n-th (from 0) request to the stream and to the upload. Records every request.
 */
export async function server(routes) {
  const seen = { events: 0, upload: 0, requests: [] }
  const srv = createServer((req, res) => {
    seen.requests.push(`${req.method} ${req.url}`)
    if (req.headers.authorization !== `Bearer ${TOKEN}`) {
      res.writeHead(401, { 'content-type': 'application/json' })
      return res.end('{"error":{"code":"unauthorized","message":"no token"}}')
    }
    if (req.url === '/v1/uploads/u1/events') return routes.events(req, res, seen.events++)
    if (req.url === '/v1/uploads/u1') return routes.upload(req, res, seen.upload++)
    res.writeHead(404, { 'content-type': 'application/json' })
    res.end('{"error":{"code":"not_found","message":"no such upload"}}')
  })
  srv.listen(0, '127.0.0.1')
  await once(srv, 'listening')
  const { port } = srv.address()
  return {
    seen,
    baseUrl: `http://127.0.0.1:${port}/`,
    close: () => {
      srv.closeAllConnections()
      srv.close()
    },
  }
}

export const json = (res, status, body, headers = {}) => {
  res.writeHead(status, { 'content-type': 'application/json', ...headers })
  res.end(JSON.stringify(body))
}
export const sse = (res) => {
  res.writeHead(200, { 'content-type': 'text/event-stream' })
  res.flushHeaders()
}
export const send = (res, v) => res.write(`event: upload\ndata: ${JSON.stringify(v)}\n\n`)

// A fault-injecting HTTP proxy for the S3 stand-in: the gateway's [storage] endpoint points here and
// every request is forwarded to moto, answered 503, or left hanging, depending on the mode.
// Loopback only; it never opens a connection anywhere but the upstream given to start().
import http from 'node:http'
import { freePort } from './net.js'

/** @typedef {'pass' | '5xx' | 'hang'} FaultMode */
const MODES = ['pass', '5xx', 'hang']

const xmlEscape = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

export class FaultProxy {
  /**
   * @param {string} upstream e.g. moto's endpoint, `http://127.0.0.1:PORT`
   * @param {{ methods?: string[] | null, mode?: FaultMode }} [o] `methods`: the requests the faults
   *   apply to (e.g. ['PUT', 'POST'], what storing an object takes); null: every request. Others pass.
   */
  static async start (upstream, { methods = null, mode = 'pass' } = {}) {
    const u = new URL(upstream)
    if (u.protocol !== 'http:' || u.hostname !== '127.0.0.1') throw new Error(`FaultProxy: refusing non-loopback upstream ${upstream}`)
    const p = new FaultProxy(u, methods, mode)
    await p._listen()
    return p
  }

  constructor (upstream, methods, mode) {
    this.upstream = upstream
    this.methods = methods ? new Set(methods.map((m) => m.toUpperCase())) : null
    if (!MODES.includes(mode)) throw new Error(`FaultProxy: unknown mode ${mode}`)
    /** @type {FaultMode} */
    this.mode = mode
    this.seq = 0
    /** Every request seen: { n, at, method, url, mode, action: 'forwarded'|'503'|'hung'|'upstream-error', status? } */
    this.requests = []
    /** Requests held open in 'hang' mode: { req, res, entry }. */
    this.hung = new Set()
    /** Every client socket (closed at close()). */
    this.sockets = new Set()
    // Keep-alive towards moto, but only for our own requests.
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 64 })
    this.server = http.createServer((req, res) => this._handle(req, res))
    // A hanging request must hang until we let it go: no server-side request/headers timeouts.
    this.server.requestTimeout = 0
    this.server.headersTimeout = 0
    this.server.keepAliveTimeout = 5000
    this.server.on('connection', (sock) => {
      this.sockets.add(sock)
      sock.on('close', () => this.sockets.delete(sock))
    })
    this.closed = false
  }

  async _listen () {
    for (let attempt = 1; ; attempt++) {
      const port = await freePort()
      try {
        await new Promise((resolve, reject) => {
          this.server.once('error', reject)
          this.server.listen(port, '127.0.0.1', () => {
            this.server.off('error', reject)
            resolve()
          })
        })
        this.port = port
        this.endpoint = `http://127.0.0.1:${port}`
        return
      } catch (e) {
        if (e.code !== 'EADDRINUSE' || attempt >= 10) throw e
      }
    }
  }

  /**
   * Switches the mode for requests that arrive from now on. Leaving 'hang' releases (destroys the
   * connections of) every hung request unless `release` is false, which leaves them to the client's
   * own timeout; close() releases them in any case.
   * @param {FaultMode} mode
   */
  setMode (mode, { release = true } = {}) {
    if (!MODES.includes(mode)) throw new Error(`FaultProxy: unknown mode ${mode}`)
    this.mode = mode
    if (mode !== 'hang' && release) this.releaseHung()
  }

  /** Destroys the connections of every hung request (the client sees the connection drop). */
  releaseHung () {
    for (const h of this.hung) {
      h.entry.released = Date.now()
      h.req.socket.destroy()
    }
    this.hung.clear()
  }

  /** Requests matching `filter` (e.g. { method: 'PUT', action: '503' }). */
  count (filter = {}) {
    return this.requests.filter((r) => Object.entries(filter).every(([k, v]) => r[k] === v)).length
  }

  /** Short summary for messages: per action and method. */
  summary () {
    const out = {}
    for (const r of this.requests) {
      const k = `${r.action} ${r.method}`
      out[k] = (out[k] || 0) + 1
    }
    return out
  }

  _faulted (method) {
    return this.mode !== 'pass' && (!this.methods || this.methods.has(method))
  }

  _handle (req, res) {
    const entry = { n: ++this.seq, at: Date.now(), method: req.method, url: req.url, mode: this.mode, action: null }
    this.requests.push(entry)
    if (this.requests.length > 10000) this.requests.splice(0, this.requests.length - 10000)
    req.on('error', () => {})
    res.on('error', () => {})
    if (!this._faulted(req.method)) return this._forward(req, res, entry)
    if (this.mode === '5xx') {
      entry.action = '503'
      // Read the whole body first, as a server would, so the client is not cut off mid-upload.
      req.resume()
      req.on('end', () => {
        const key = req.url.split('?')[0]
        const body = '<?xml version="1.0" encoding="UTF-8"?>\n' +
          `<Error><Code>ServiceUnavailable</Code><Message>Please reduce your request rate. (fault injected by the interop FaultProxy)</Message><Resource>${xmlEscape(key)}</Resource><RequestId>faultproxy-${entry.n}</RequestId></Error>`
        res.writeHead(503, 'Service Unavailable', {
          'content-type': 'application/xml',
          'content-length': Buffer.byteLength(body),
          'x-amz-request-id': `faultproxy-${entry.n}`
        })
        res.end(body)
      })
      return
    }
    // 'hang': take the request (body included) and never answer; the socket stays open.
    entry.action = 'hung'
    req.resume()
    this.hung.add({ req, res, entry })
  }

  _forward (req, res, entry) {
    entry.action = 'forwarded'
    const up = http.request({
      host: '127.0.0.1',
      port: Number(this.upstream.port),
      method: req.method,
      path: req.url,
      headers: req.headers, // verbatim (host included: moto does not check signatures)
      agent: this.agent
    }, (ur) => {
      entry.status = ur.statusCode
      res.writeHead(ur.statusCode, ur.statusMessage, ur.rawHeaders)
      ur.pipe(res)
      ur.on('error', () => res.destroy())
    })
    up.setTimeout(60000, () => up.destroy(new Error('upstream timeout')))
    up.on('error', (e) => {
      entry.action = 'upstream-error'
      entry.error = e.message
      if (!res.headersSent) {
        res.writeHead(502, { 'content-type': 'text/plain' })
        res.end(`FaultProxy: upstream error: ${e.message}`)
      } else {
        res.destroy()
      }
    })
    req.pipe(up)
  }

  /** Stops accepting, releases hung requests and closes every connection (bounded). */
  async close () {
    if (this.closed) return
    this.closed = true
    this.setMode('pass')
    const done = new Promise((resolve) => this.server.close(() => resolve()))
    this.server.closeAllConnections()
    for (const s of this.sockets) s.destroy()
    this.agent.destroy()
    await Promise.race([done, new Promise((resolve) => setTimeout(resolve, 5000))])
  }
}

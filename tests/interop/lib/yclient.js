// Real Yjs clients (y-websocket's WebsocketProvider over `ws`), raw WebSocket probes and convergence checks.
import assert from 'node:assert/strict'
import WebSocket from 'ws'
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import { waitFor, withTimeout } from './wait.js'

// Every WebsocketProvider adds a process 'exit' listener; many clients per file are expected.
process.setMaxListeners(200)

let clientSeq = 0

export class YClient {
  constructor ({ label, doc, provider, room, gateway }) {
    this.label = label
    this.doc = doc
    this.provider = provider
    this.room = room
    this.gateway = gateway
    /** connection-close events (a healthy idle client has none). */
    this.closes = []
    this.errors = []
    this.statuses = []
    provider.on('connection-close', (ev) => this.closes.push({ at: Date.now(), code: ev ? ev.code : null, reason: ev ? String(ev.reason || '') : 'no-message timeout' }))
    provider.on('connection-error', (ev) => this.errors.push({ at: Date.now(), message: ev && ev.message }))
    provider.on('status', (ev) => this.statuses.push({ at: Date.now(), status: ev.status }))
    this.destroyed = false
  }

  get map () {
    return this.doc.getMap('map')
  }

  get awareness () {
    return this.provider.awareness
  }

  async synced (timeout = 20000) {
    await waitFor(() => this.provider.synced, {
      timeout,
      what: () => `${this.label} (room ${this.room}) to sync; wsconnected=${this.provider.wsconnected} closes=${JSON.stringify(this.closes.slice(-3))} errors=${this.errors.length}`
    })
    return this
  }

  /** Stops the provider (no reconnect) and the doc (and so its awareness timer). */
  destroy () {
    if (this.destroyed) return
    this.destroyed = true
    try { this.provider.destroy() } catch {}
    try { this.doc.destroy() } catch {}
  }
}

/**
 * Connects a y-websocket client to `gateway`.
 * @param {object} o
 * @param {import('./gateway.js').Gateway} o.gateway
 * @param {string} o.room the room as given to the provider (it is not URL-encoded by y-websocket)
 * @param {Promise<string>|string} [o.token] defaults to a fresh token for `user` on the chosen route
 * @param {string} [o.user]
 * @param {'yjs'|'std'} [o.route]
 * @param {'protocol'|'query'} [o.via] how a yredis token travels
 * @param {Y.Doc} [o.doc]
 * @param {object} [o.auth] YredisAuth (for default yjs tokens)
 * @param {(user:string) => string} [o.stdToken] for default std tokens
 * @param {any[]} [o.registry] clients are pushed here for cleanup
 */
export const connectClient = async (o) => {
  const route = o.route || 'yjs'
  const user = o.user || 'alice'
  const doc = o.doc || new Y.Doc()
  let token = o.token
  if (token === undefined) {
    token = route === 'yjs' ? await o.auth.token(user) : o.stdToken(user)
  }
  token = await token
  const opts = { WebSocketPolyfill: WebSocket, disableBc: true }
  if (route === 'yjs') {
    if ((o.via || 'protocol') === 'protocol') opts.protocols = ['yauth-' + token]
    else opts.params = { yauth: token }
  } else {
    opts.params = { token }
  }
  const provider = new WebsocketProvider(o.gateway.wsBase(route), o.room, doc, opts)
  const c = new YClient({ label: o.label || `client${++clientSeq}(${user})`, doc, provider, room: o.room, gateway: o.gateway })
  if (o.registry) o.registry.push(c)
  return c
}

const svOf = (doc) => Buffer.from(Y.encodeStateVector(doc))
const v2Of = (doc) => Buffer.from(Y.encodeStateAsUpdateV2(doc))

/** Compact description of a doc for failure messages. */
export const describeDoc = (doc) => {
  const sv = Object.fromEntries(Y.decodeStateVector(Y.encodeStateVector(doc)))
  const map = doc.getMap('map').toJSON()
  const short = JSON.stringify(map)
  return `sv=${JSON.stringify(sv)} map=${short.length > 300 ? short.slice(0, 300) + '...' : short} array.length=${doc.getArray('items').length}`
}

/**
 * Waits until every doc has the same state (Y.encodeStateAsUpdateV2 byte-equal: the y-redis tests' criterion).
 * State vectors are compared first because they are cheap (matters for the 20 MB doc).
 * @param {Array<YClient|Y.Doc>} docs
 */
export const waitConverged = async (docs, { timeout = 20000, interval = 50 } = {}) => {
  const ds = docs.map((d) => (d instanceof Y.Doc ? d : d.doc))
  const labels = docs.map((d, i) => (d instanceof Y.Doc ? `doc${i}` : d.label))
  await waitFor(() => {
    const sv0 = svOf(ds[0])
    if (!ds.every((d) => svOf(d).equals(sv0))) return false
    const v0 = v2Of(ds[0])
    return ds.every((d) => v2Of(d).equals(v0))
  }, {
    timeout,
    interval,
    what: () => 'convergence (encodeStateAsUpdateV2 equality): ' + ds.map((d, i) => `${labels[i]}: ${describeDoc(d)}`).join(' | ')
  })
}

/** Asserts a.doc and b.doc are byte-equal (v2 state) right now. */
export const assertSameState = (a, b, msg) => {
  const da = a instanceof Y.Doc ? a : a.doc
  const db = b instanceof Y.Doc ? b : b.doc
  assert.ok(v2Of(da).equals(v2Of(db)), `${msg || 'states differ'}: ${describeDoc(da)} vs ${describeDoc(db)}`)
}

/** A fresh doc holding a stored object (Yjs update v2). */
export const docFromV2 = (bytes) => {
  const d = new Y.Doc()
  Y.applyUpdateV2(d, bytes)
  return d
}

/**
 * Opens a raw WebSocket. Resolves { ws, frames, closed } once open; frames collects every binary
 * message as a Uint8Array. Rejects with err.status set when the upgrade is answered with a non-101.
 */
export const rawConnect = (url, { protocols, timeout = 10000 } = {}) => new Promise((resolve, reject) => {
  const ws = new WebSocket(url, protocols, { handshakeTimeout: timeout })
  const frames = []
  const conn = { ws, frames, closeEvent: null }
  conn.closed = new Promise((res) => ws.on('close', (code, reason) => {
    conn.closeEvent = { code, reason: reason.toString() }
    res(conn.closeEvent)
  }))
  ws.on('message', (data, isBinary) => frames.push(isBinary ? new Uint8Array(data) : { text: data.toString() }))
  ws.once('open', () => resolve(conn))
  ws.once('unexpected-response', (_req, res) => {
    const err = new Error(`upgrade refused: HTTP ${res.statusCode}`)
    err.status = res.statusCode
    res.resume()
    ws.terminate()
    reject(err)
  })
  ws.once('error', (err) => reject(err))
})

/** Asserts that the upgrade at `url` is refused with HTTP `status`. */
export const expectRefused = async (url, status, { protocols } = {}) => {
  let conn
  try {
    conn = await withTimeout(rawConnect(url, { protocols }), 15000, `upgrade answer for ${url}`)
  } catch (e) {
    if (e.status === undefined) throw e
    assert.equal(e.status, status, `upgrade of ${url} answered HTTP ${e.status}, expected ${status}`)
    return
  }
  conn.ws.terminate()
  assert.fail(`upgrade of ${redact(url)} succeeded (subprotocol "${redact(conn.ws.protocol)}"), expected HTTP ${status}`)
}

const redact = (s) => String(s).replace(/(yauth[-=]|token=)[^&,]+/g, '$1<token>')

/** Closes a raw connection (bounded). */
export const rawClose = async (conn) => {
  if (conn.ws.readyState === WebSocket.OPEN || conn.ws.readyState === WebSocket.CONNECTING) conn.ws.close()
  try {
    await withTimeout(conn.closed, 3000, 'raw websocket close')
  } catch {
    conn.ws.terminate()
  }
}

export { Y }

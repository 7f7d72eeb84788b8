#!/usr/bin/env node
// Yjs load generator: speaks the y-websocket protocol (and Hocuspocus' framing) with raw frames.
//
//   node load.mjs --target gateway|y-websocket|hocuspocus|y-sweet --port P [scenario options]
//
// Scenarios:
//   rate > 0   every writer sends RATE small updates/s for WARMUP + DURATION s (latency test)
//   rate = 0   every writer keeps WINDOW updates in flight (not yet echoed back) and sends as fast
//              as the server echoes (throughput test)
//   --idle-rooms N   N rooms, one client each that syncs, makes one edit and sits idle; reads the
//              server's VmRSS (--server-pid) before and after and prints KiB per idle room
//
// Output: one JSON line on stdout, then a one-line human summary. Progress goes to stderr.
// Every phase is bounded: --timeout (whole run), connect/sync timeouts, --drain, --max-updates.
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads'
import { performance } from 'node:perf_hooks'
import { readFileSync } from 'node:fs'
import * as Y from 'yjs'
import * as encoding from 'lib0/encoding'
import * as decoding from 'lib0/decoding'
import WebSocket from 'ws'

// ---------------------------------------------------------------- options

const TARGETS = ['gateway', 'y-websocket', 'hocuspocus', 'y-sweet']
const DEFAULTS = {
  target: '', host: '127.0.0.1', port: 0, 'path-prefix': '/yjs/',
  rooms: 10, clients: 10, writers: -1, rate: 10, window: 16, duration: 10, warmup: 1, drain: 5,
  threads: 2, timeout: 120, 'connect-concurrency': 50, 'max-updates': 1000000,
  'idle-rooms': 0, 'server-pid': '', settle: 2, 'room-prefix': '', quiet: false
}

function usage () {
  return `usage: node load.mjs --target ${TARGETS.join('|')} --port P [options]
  --host H               server address (127.0.0.1; only loopback is accepted)
  --path-prefix /yjs/    gateway route prefix (gateway target only)
  --rooms R              rooms (${DEFAULTS.rooms})
  --clients C            clients per room (${DEFAULTS.clients})
  --writers W            writing clients per room (default: all C)
  --rate U               updates/s per writer; 0 = max throughput with --window in flight (${DEFAULTS.rate})
  --window N             rate 0: un-echoed updates in flight per writer (${DEFAULTS.window})
  --duration S           measured seconds (${DEFAULTS.duration})
  --warmup S             seconds of sending before the measurement starts (${DEFAULTS.warmup})
  --drain S              max seconds to wait for in-flight deliveries after sending stops (${DEFAULTS.drain})
  --threads T            worker threads for the clients, rooms split between them (${DEFAULTS.threads})
  --timeout S            hard limit for the whole run (${DEFAULTS.timeout})
  --connect-concurrency  connections being opened at once per thread (${DEFAULTS['connect-concurrency']})
  --max-updates N        per-writer cap on updates sent (${DEFAULTS['max-updates']})
  --idle-rooms N         idle-room memory scenario instead of the load scenario
  --settle S             idle: seconds to wait before reading RSS (${DEFAULTS.settle})
  --server-pid P[,P2]    read CPU and RSS of these processes (/proc) around the measurement
  --room-prefix STR      room name prefix (default: random per run)
  --quiet                no progress on stderr`
}

function parseArgs (argv) {
  const o = { ...DEFAULTS }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '-h' || a === '--help') { console.log(usage()); process.exit(0) }
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`)
    const k = a.slice(2)
    if (!(k in DEFAULTS)) throw new Error(`unknown option ${a}`)
    if (typeof DEFAULTS[k] === 'boolean') { o[k] = true; continue }
    const v = argv[++i]
    if (v === undefined) throw new Error(`${a} needs a value`)
    o[k] = typeof DEFAULTS[k] === 'number' ? Number(v) : v
    if (typeof DEFAULTS[k] === 'number' && !Number.isFinite(o[k])) throw new Error(`${a}: not a number: ${v}`)
  }
  if (!TARGETS.includes(o.target)) throw new Error(`--target must be one of ${TARGETS.join(', ')}`)
  if (!(o.port > 0 && o.port < 65536)) throw new Error('--port is required')
  if (!/^(127\.\d+\.\d+\.\d+|localhost|::1|\[::1\])$/.test(o.host)) throw new Error('--host must be a loopback address')
  if (o.writers < 0 || o.writers > o.clients) o.writers = o.clients
  if (!o['room-prefix']) o['room-prefix'] = 'b' + Math.random().toString(36).slice(2, 8)
  if (!/^[A-Za-z0-9_-]+$/.test(o['room-prefix'])) throw new Error('--room-prefix: use [A-Za-z0-9_-] only (y-sweet doc ids)')
  o.threads = Math.max(1, Math.min(o.threads, o['idle-rooms'] > 0 ? 1 : o.rooms))
  return o
}

// ---------------------------------------------------------------- shared helpers

const hrUs = () => { const [s, ns] = process.hrtime(); return s * 1e6 + ns / 1e3 }
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

// Log-linear latency histogram: 1 % buckets from 1 µs to ~100 s.
const HBUCKETS = 2000
const HLOG = Math.log(1.01)
const hIndex = us => Math.min(HBUCKETS - 1, Math.max(0, Math.floor(Math.log(us + 1) / HLOG)))
const hValue = i => Math.exp((i + 0.5) * HLOG) - 1
function hQuantile (h, q) {
  let total = 0
  for (let i = 0; i < h.length; i++) total += h[i]
  if (total === 0) return null
  const want = Math.max(1, Math.ceil(q * total))
  let acc = 0
  for (let i = 0; i < h.length; i++) { acc += h[i]; if (acc >= want) return hValue(i) }
  return hValue(h.length - 1)
}

function roomUrl (o, room) {
  const base = `ws://${o.host.includes(':') && !o.host.startsWith('[') ? `[${o.host}]` : o.host}:${o.port}`
  switch (o.target) {
    case 'gateway': return `${base}${o['path-prefix']}${room}`
    case 'y-websocket': return `${base}/${room}`
    case 'y-sweet': return `${base}/d/${room}/ws/${room}`
    case 'hocuspocus': return `${base}/`
  }
}

// y-sweet serves a doc only after it exists: create it explicitly (POST /doc/new {docId}), as an
// application backend would. (Without an auth key y-sweet would also create it on connect.)
async function prepareRoom (o, room) {
  if (o.target !== 'y-sweet') return
  const host = o.host.includes(':') && !o.host.startsWith('[') ? `[${o.host}]` : o.host
  const res = await fetch(`http://${host}:${o.port}/doc/new`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ docId: room }),
    signal: AbortSignal.timeout(10000)
  })
  if (!res.ok) throw new Error(`y-sweet POST /doc/new ${room}: HTTP ${res.status} ${await res.text()}`)
  await res.arrayBuffer().catch(() => {})
}

function readProc (pid) {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    const kb = name => { const m = status.match(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm')); return m ? Number(m[1]) : null }
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return { pid, rssKb: kb('VmRSS'), hwmKb: kb('VmHWM'), cpuTicks: Number(f[11]) + Number(f[12]) }
  } catch (e) {
    return { pid, error: `cannot read /proc/${pid}: ${e.code || e.message}` }
  }
}
const CLK_TCK = 100 // sysconf(_SC_CLK_TCK) on Linux x86-64
// Busy CPU ticks of the whole machine (all cores), to tell how much else was running (noise).
function machineBusyTicks () {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1, 9).map(Number)
    return f.reduce((a, b) => a + b, 0) - f[3] - f[4] // minus idle and iowait
  } catch { return null }
}
const readProcs = pids => pids.map(readProc)

// ---------------------------------------------------------------- y-websocket protocol

const MSG_SYNC = 0
const MSG_AWARENESS = 1
const MSG_AUTH = 2
const SYNC_STEP1 = 0
const SYNC_STEP2 = 1
const SYNC_UPDATE = 2
// Hocuspocus: every frame starts with varString documentName; type 2 (Auth) sub-types:
const HP_AUTH_TOKEN = 0
const HP_AUTH_PERMISSION_DENIED = 1

function frame (hpName, write) {
  const e = encoding.createEncoder()
  if (hpName !== null) encoding.writeVarString(e, hpName)
  write(e)
  return encoding.toUint8Array(e)
}
const syncFrame = (hpName, sub, payload) => frame(hpName, e => {
  encoding.writeVarUint(e, MSG_SYNC); encoding.writeVarUint(e, sub); encoding.writeVarUint8Array(e, payload)
})

// The update of one push to the root Y.Array 'a' by `client` at `clock` (one ContentAny item holding
// the send time), encoded directly (Yjs update v1 layout): 1 client, 1 struct, client, clock, info
// byte (content ref 8 = Any, 0x80 = has left origin), left origin = own previous item (or, for the
// first item, parent info "root type 'a'"), content, empty delete set. This is what a Y.Doc that
// only holds this client's pushes emits; checkHandEncoding() compares the two at start-up, and the
// harness falls back to real Y.Docs if they differ. It saves a Yjs transaction per update.
const EMPTY_UPDATE = new Uint8Array([0, 0])
function encodePushUpdate (client, clock, value) {
  const e = encoding.createEncoder()
  encoding.writeVarUint(e, 1)
  encoding.writeVarUint(e, 1)
  encoding.writeVarUint(e, client)
  encoding.writeVarUint(e, clock)
  if (clock === 0) {
    encoding.writeUint8(e, 8)
    encoding.writeVarUint(e, 1)
    encoding.writeVarString(e, 'a')
  } else {
    encoding.writeUint8(e, 0x88)
    encoding.writeVarUint(e, client)
    encoding.writeVarUint(e, clock - 1)
  }
  encoding.writeVarUint(e, 1)
  encoding.writeAny(e, value)
  encoding.writeVarUint(e, 0)
  return encoding.toUint8Array(e)
}
function checkHandEncoding () {
  const doc = new Y.Doc()
  doc.clientID = 3000000001
  const arr = doc.getArray('a')
  let last = null
  doc.on('update', u => { last = u })
  const values = [0, 1, 127, 128, 65535, 2 ** 31 - 1, 123456789, 5]
  for (let i = 0; i < values.length; i++) {
    arr.push([values[i]])
    const mine = encodePushUpdate(doc.clientID, i, values[i])
    if (Buffer.compare(Buffer.from(mine), Buffer.from(last)) !== 0) return false
  }
  return true
}
const HAND_ENCODING = process.env.YJS_BENCH_YDOC !== '1' && checkHandEncoding()

// Decoded updates are cached per frame content: every client of a room gets the same bytes, and
// all clients of a room live in one thread, so each broadcast is decoded once per thread.
// A record is [client, clock, timestamps[]]; timestamps are the µs send times the writers put in
// their items (ContentAny), one per clock.
const decodeCache = new Map()
let decodeCalls = 0
let decodeErrors = 0
function decodeUpdateRecords (u8) {
  const key = Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength).toString('latin1')
  let recs = decodeCache.get(key)
  if (recs !== undefined) return recs
  decodeCalls++
  recs = []
  try {
    const { structs } = Y.decodeUpdate(u8)
    for (const s of structs) {
      if (s instanceof Y.Item && s.content instanceof Y.ContentAny) {
        recs.push([s.id.client, s.id.clock, s.content.arr])
      } else if (!(s instanceof Y.Skip)) {
        // GC'd or foreign content: count the clocks, without send times
        recs.push([s.id.client, s.id.clock, new Array(s.length).fill(null)])
      }
    }
  } catch (e) {
    decodeErrors++
  }
  if (decodeCache.size > 20000) decodeCache.clear()
  decodeCache.set(key, recs)
  return recs
}

// Which (client, clock) pairs a receiver has seen from one sender: a contiguous prefix plus a set
// for out-of-order arrivals.
class Tracker {
  constructor () { this.hi = 0; this.ahead = null }
  add (clk) {
    if (clk < this.hi) return false
    if (clk === this.hi) {
      this.hi++
      if (this.ahead !== null) while (this.ahead.delete(this.hi)) this.hi++
      return true
    }
    if (this.ahead === null) this.ahead = new Set()
    if (this.ahead.has(clk)) return false
    this.ahead.add(clk)
    return true
  }

  get count () { return this.hi + (this.ahead === null ? 0 : this.ahead.size) }
}

class Client {
  constructor (ctx, room, clientID, writer) {
    this.ctx = ctx // shared stats + timing for the thread
    this.room = room
    this.clientID = clientID
    this.writer = writer
    this.hpName = ctx.o.target === 'hocuspocus' ? room.name : null
    this.ws = null
    this.synced = false
    this.closed = false
    this.sent = 0 // updates sent = next clock
    this.echo = new Tracker()
    this.peers = new Map() // sender clientID -> Tracker
    this.doc = null
    this.arr = null
    this.lastUpdate = null
    this.nextDueUs = 0
    if (writer && !HAND_ENCODING) {
      this.doc = new Y.Doc()
      this.doc.clientID = clientID
      this.arr = this.doc.getArray('a')
      this.doc.on('update', u => { this.lastUpdate = u })
    }
  }

  connect (timeoutMs) {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => { fail(new Error('sync timeout')) }, timeoutMs)
      let settled = false
      const fail = err => {
        if (settled) return
        settled = true; clearTimeout(t)
        try { this.ws?.terminate() } catch {}
        reject(err)
      }
      this.onSynced = () => { if (!settled) { settled = true; clearTimeout(t); resolve() } }
      const ws = new WebSocket(roomUrl(this.ctx.o, this.room.name), { perMessageDeflate: false, handshakeTimeout: timeoutMs })
      this.ws = ws
      ws.binaryType = 'nodebuffer'
      ws.on('open', () => {
        if (this.hpName !== null) {
          // Hocuspocus: authenticate the document first (any token: no onAuthenticate hook)
          ws.send(frame(this.hpName, e => {
            encoding.writeVarUint(e, MSG_AUTH); encoding.writeVarUint(e, HP_AUTH_TOKEN); encoding.writeVarString(e, 'bench')
          }))
        }
        // like a y-websocket provider: our state vector, asking for the server's state
        ws.send(syncFrame(this.hpName, SYNC_STEP1, this.stateVector()))
      })
      ws.on('message', data => this.onMessage(data))
      ws.on('error', err => { this.ctx.stats.errors++; this.ctx.lastError = String(err.message || err); fail(err) })
      ws.on('close', (code) => {
        this.closed = true
        if (!this.ctx.closing) { this.ctx.stats.closes++; this.ctx.lastError = `closed by server (${code})` }
        fail(new Error(`closed (${code}) before sync`))
      })
    })
  }

  onMessage (buf) {
    const nowUs = hrUs() - this.ctx.epochUs
    const d = decoding.createDecoder(buf)
    try {
      if (this.hpName !== null) decoding.readVarString(d)
      while (decoding.hasContent(d)) {
        const type = decoding.readVarUint(d)
        if (type === MSG_SYNC) {
          const sub = decoding.readVarUint(d)
          const payload = decoding.readVarUint8Array(d)
          if (sub === SYNC_STEP1) {
            // answer the server's state vector with what it is missing from us
            this.send(syncFrame(this.hpName, SYNC_STEP2, this.diffSince(payload)))
          } else if (sub === SYNC_STEP2) {
            if (!this.synced) { this.synced = true; this.onSynced?.() }
          } else if (sub === SYNC_UPDATE) {
            this.onUpdate(payload, nowUs)
          }
        } else if (type === MSG_AWARENESS) {
          decoding.readVarUint8Array(d)
        } else if (type === MSG_AUTH && this.hpName !== null) {
          const sub = decoding.readVarUint(d)
          if (sub === HP_AUTH_PERMISSION_DENIED) { this.ctx.lastError = 'hocuspocus: permission denied'; this.ctx.stats.errors++ }
          break
        } else {
          break // Hocuspocus SyncStatus / Close, y-sweet custom messages, ...: nothing to count
        }
      }
    } catch (e) {
      this.ctx.stats.parseErrors++
    }
  }

  onUpdate (u8, nowUs) {
    const ctx = this.ctx
    const st = ctx.stats
    const recs = decodeUpdateRecords(u8)
    const inWin = nowUs >= ctx.winStartUs && nowUs < ctx.winEndUs
    for (let r = 0; r < recs.length; r++) {
      const [client, clock, ts] = recs[r]
      if (client === this.clientID) {
        for (let k = 0; k < ts.length; k++) {
          if (!this.echo.add(clock + k)) { st.echoDups++; continue }
          st.echoes++
          const t = ts[k]
          if (typeof t === 'number' && t >= ctx.winStartUs && t < ctx.winEndUs) {
            const lat = nowUs - t
            ctx.histEcho[hIndex(lat)]++
            if (lat > st.echoMaxUs) st.echoMaxUs = lat
          }
        }
        if (ctx.o.rate === 0) ctx.pump(this)
        continue
      }
      let tr = this.peers.get(client)
      if (tr === undefined) {
        if (!this.room.writerIds.has(client)) { st.foreign += ts.length; continue }
        tr = new Tracker(); this.peers.set(client, tr)
      }
      for (let k = 0; k < ts.length; k++) {
        if (!tr.add(clock + k)) { st.dups++; continue }
        st.delivered++
        if (inWin) st.deliveredInWin++
        const t = ts[k]
        if (typeof t === 'number' && t >= ctx.winStartUs && t < ctx.winEndUs) {
          const lat = nowUs - t
          ctx.histPeer[hIndex(lat)]++
          if (lat > st.maxUs) st.maxUs = lat
        }
      }
    }
  }

  // The client's own document is its pushes 0..sent-1 (the harness never applies what it receives).
  stateVector () {
    if (this.doc !== null) return Y.encodeStateVector(this.doc)
    if (this.sent === 0) return new Uint8Array([0])
    return frame(null, e => { encoding.writeVarUint(e, 1); encoding.writeVarUint(e, this.clientID); encoding.writeVarUint(e, this.sent) })
  }

  diffSince (sv) {
    if (this.doc !== null) return Y.encodeStateAsUpdate(this.doc, sv)
    if (this.sent === 0) return EMPTY_UPDATE
    // Only happens when a server asks again after edits (no server here does during a run):
    // rebuild the document once, with the send times lost (0).
    const doc = new Y.Doc()
    doc.clientID = this.clientID
    const arr = doc.getArray('a')
    for (let i = 0; i < this.sent; i++) arr.push([0])
    return Y.encodeStateAsUpdate(doc, sv)
  }

  send (u8) {
    if (this.ws.readyState !== WebSocket.OPEN) return false
    this.ws.send(u8)
    return true
  }

  // one small edit: push the send time (µs since the run's epoch) to the shared Y.Array
  sendUpdate () {
    const t = Math.round(hrUs() - this.ctx.epochUs)
    let u
    if (HAND_ENCODING) {
      u = encodePushUpdate(this.clientID, this.sent, t)
    } else {
      this.arr.push([t])
      u = this.lastUpdate
      this.lastUpdate = null
    }
    if (!this.send(syncFrame(this.hpName, SYNC_UPDATE, u))) return false
    this.sent++
    this.ctx.stats.sent++
    if (t >= this.ctx.winStartUs && t < this.ctx.winEndUs) this.ctx.stats.sentInWin++
    return true
  }
}

// Run `fn` over items with at most `limit` in flight.
async function pool (items, limit, fn) {
  let next = 0
  const errors = []
  const run = async () => {
    while (next < items.length) {
      const item = items[next++]
      try { await fn(item) } catch (e) { errors.push(e) }
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, run))
  return errors
}

function newStats () {
  return {
    clients: 0, synced: 0, connectFailed: 0, sent: 0, sentInWin: 0, delivered: 0, deliveredInWin: 0,
    echoes: 0, dups: 0, echoDups: 0, foreign: 0, lost: 0, echoLost: 0, closes: 0, errors: 0, parseErrors: 0,
    maxUs: 0, echoMaxUs: 0, elu: null, stalledWriters: 0
  }
}

// ---------------------------------------------------------------- worker thread: load scenario

async function workerMain () {
  const { o, roomNames, clientIdBase, epochUs, firstClientIndex, totalWriters } = workerData
  const ctx = {
    o, epochUs, stats: newStats(), histPeer: new Float64Array(HBUCKETS), histEcho: new Float64Array(HBUCKETS),
    winStartUs: Infinity, winEndUs: Infinity, sendEndUs: 0, sending: false, closing: false, lastError: null,
    pump: null
  }
  const rooms = roomNames.map(name => ({ name, clients: [], writerIds: new Set() }))
  let idx = firstClientIndex
  const all = []
  const writers = []
  for (const room of rooms) {
    for (let c = 0; c < o.clients; c++) {
      const writer = c < o.writers
      const cl = new Client(ctx, room, clientIdBase + idx, writer)
      cl.globalIndex = idx++
      room.clients.push(cl)
      all.push(cl)
      if (writer) { room.writerIds.add(cl.clientID); writers.push(cl) }
    }
  }
  ctx.stats.clients = all.length
  const post = (type, body) => parentPort.postMessage({ type, ...body })

  const waitFor = type => new Promise(resolve => {
    const h = m => { if (m.type === type) { parentPort.off('message', h); resolve(m) } }
    parentPort.on('message', h)
  })
  const startMsgP = waitFor('start')

  // connect + sync, room by room (y-sweet: create the doc first)
  const connectErrors = await pool(rooms, Math.max(1, Math.ceil(o['connect-concurrency'] / Math.max(1, o.clients))), async room => {
    await prepareRoom(o, room.name)
    const errs = await pool(room.clients, o.clients, cl => cl.connect(15000))
    if (errs.length) throw errs[0]
  })
  for (const cl of all) if (cl.synced) ctx.stats.synced++
  ctx.stats.connectFailed = all.length - ctx.stats.synced
  post('ready', { synced: ctx.stats.synced, clients: all.length, error: connectErrors.length ? String(connectErrors[0].message) : null })

  const { winStartUs, winEndUs } = await startMsgP
  ctx.winStartUs = winStartUs
  ctx.winEndUs = winEndUs
  ctx.sendEndUs = winEndUs
  const live = writers.filter(w => w.synced)
  const nowRel = () => hrUs() - epochUs

  const sendStartUs = winStartUs - o.warmup * 1e6
  while (nowRel() < sendStartUs) await sleep(Math.max(1, Math.min(50, (sendStartUs - nowRel()) / 1000)))
  const elu0 = performance.eventLoopUtilization()
  ctx.sending = true

  if (o.rate > 0) {
    const periodUs = 1e6 / o.rate
    for (const w of live) w.nextDueUs = sendStartUs + periodUs * (w.globalIndex % totalWriters) / totalWriters
    await new Promise(resolve => {
      const tick = () => {
        const now = nowRel()
        if (now >= ctx.sendEndUs) { resolve(); return }
        for (let i = 0; i < live.length; i++) {
          const w = live[i]
          let n = 0
          while (w.nextDueUs <= now && n < 1000 && w.sent < o['max-updates']) {
            if (!w.sendUpdate()) break
            w.nextDueUs += periodUs
            n++
          }
        }
        setTimeout(tick, 1)
      }
      tick()
    })
  } else {
    ctx.pump = w => {
      if (!ctx.sending) return
      if (nowRel() >= ctx.sendEndUs) { ctx.sending = false; return }
      // one echo often frees several slots: write those frames with one system call
      const sock = w.ws._socket
      const cork = sock && w.sent - w.echo.count < o.window - 1
      if (cork) sock.cork()
      while (w.sent - w.echo.count < o.window && w.sent < o['max-updates']) {
        if (!w.sendUpdate()) break
      }
      if (cork) sock.uncork()
    }
    for (const w of live) ctx.pump(w)
    await new Promise(resolve => {
      const check = () => { if (nowRel() >= ctx.sendEndUs) resolve(); else setTimeout(check, 20) }
      check()
    })
  }
  ctx.sending = false
  const elu = performance.eventLoopUtilization(elu0)
  ctx.stats.elu = elu.utilization

  // drain: wait until every peer has every update (and every echo arrived), bounded by --drain
  const complete = () => {
    for (const room of rooms) {
      for (const cl of room.clients) {
        if (!cl.synced || cl.closed) continue
        for (const w of room.clients) {
          if (!w.writer || !w.synced) continue
          const got = w === cl ? cl.echo.count : (cl.peers.get(w.clientID)?.count ?? 0)
          if (got < w.sent) return false
        }
      }
    }
    return true
  }
  const drainEnd = Date.now() + o.drain * 1000
  while (!complete() && Date.now() < drainEnd) await sleep(20)

  for (const room of rooms) {
    for (const cl of room.clients) {
      if (!cl.synced) continue
      for (const w of room.clients) {
        if (!w.writer || !w.synced) continue
        if (w === cl) ctx.stats.echoLost += w.sent - cl.echo.count
        else ctx.stats.lost += w.sent - (cl.peers.get(w.clientID)?.count ?? 0)
      }
    }
    for (const w of room.clients) if (w.writer && w.synced && w.sent - w.echo.count > 0) ctx.stats.stalledWriters++
  }
  ctx.stats.decodeCalls = decodeCalls
  ctx.stats.decodeErrors = decodeErrors
  post('done', { stats: ctx.stats, histPeer: ctx.histPeer, histEcho: ctx.histEcho, lastError: ctx.lastError })
  await waitFor('close')
  ctx.closing = true
  for (const cl of all) try { cl.ws?.close() } catch {}
  await sleep(200)
  for (const cl of all) try { cl.ws?.terminate() } catch {}
  post('closed', {})
}

// ---------------------------------------------------------------- main thread

function log (o, ...a) { if (!o.quiet) console.error('[load]', ...a) }

function summarizeProcs (before, after, seconds) {
  return after.map((a, i) => {
    const b = before[i]
    if (a.error || b.error) return { pid: a.pid, error: a.error || b.error }
    return {
      pid: a.pid,
      cpu_cores: +((a.cpuTicks - b.cpuTicks) / CLK_TCK / seconds).toFixed(3),
      rss_kb_before: b.rssKb,
      rss_kb_after: a.rssKb,
      rss_kb_peak: a.hwmKb
    }
  })
}

async function loadMain (o) {
  const pids = o['server-pid'] ? String(o['server-pid']).split(',').filter(Boolean).map(Number) : []
  const epochUs = hrUs()
  const clientIdBase = 1 + Math.floor(Math.random() * 1e9)
  const roomNames = Array.from({ length: o.rooms }, (_, i) => `${o['room-prefix']}-r${i}`)
  const perThread = Array.from({ length: o.threads }, () => [])
  roomNames.forEach((r, i) => perThread[i % o.threads].push(r))
  const workers = []
  let first = 0
  for (const rn of perThread) {
    const w = new Worker(new URL(import.meta.url), {
      workerData: { o, roomNames: rn, clientIdBase, epochUs, firstClientIndex: first, totalWriters: o.rooms * o.writers }
    })
    first += rn.length * o.clients
    w.on('error', e => { console.error('[load] worker error:', e); process.exit(3) })
    w.on('message', m => { if (m.type === 'fatal') { console.error('[load] worker failed:', m.error); process.exit(3) } })
    workers.push(w)
  }
  const collect = type => Promise.all(workers.map(w => new Promise(resolve => {
    const h = m => { if (m.type === type) { w.off('message', h); resolve(m) } }
    w.on('message', h)
  })))

  log(o, `${o.target} port ${o.port}: ${o.rooms} rooms x ${o.clients} clients (${o.writers} writing), ${o.threads} threads, connecting...`)
  const t0 = Date.now()
  const ready = await collect('ready')
  const synced = ready.reduce((a, m) => a + m.synced, 0)
  const total = ready.reduce((a, m) => a + m.clients, 0)
  const connectErr = ready.find(m => m.error)?.error ?? null
  log(o, `synced ${synced}/${total} in ${((Date.now() - t0) / 1000).toFixed(1)} s${connectErr ? ` (first error: ${connectErr})` : ''}`)
  if (synced === 0) {
    return { test: 'load', error: `no client synced: ${connectErr}`, params: o }
  }

  const lead = 200e3 // µs until sending starts, so every thread starts together
  const winStartUs = hrUs() - epochUs + lead + o.warmup * 1e6
  const winEndUs = winStartUs + o.duration * 1e6
  const doneP = collect('done')
  for (const w of workers) w.postMessage({ type: 'start', winStartUs, winEndUs })
  // CPU of this process (all threads) and of the servers over the measured window
  await sleep((winStartUs - (hrUs() - epochUs)) / 1000)
  const cpu0 = process.cpuUsage()
  const p0 = readProcs(pids)
  const m0 = machineBusyTicks()
  const wall0 = hrUs()
  await sleep(Math.max(0, (winEndUs - (hrUs() - epochUs)) / 1000))
  const cpu1 = process.cpuUsage(cpu0)
  const p1 = readProcs(pids)
  const m1 = machineBusyTicks()
  const winS = (hrUs() - wall0) / 1e6
  log(o, 'sending stopped, draining...')
  const done = await doneP
  const closedP = collect('closed')
  for (const w of workers) w.postMessage({ type: 'close' })
  await Promise.race([closedP, sleep(3000)])
  for (const w of workers) w.terminate()

  const s = newStats()
  const histPeer = new Float64Array(HBUCKETS)
  const histEcho = new Float64Array(HBUCKETS)
  const elus = []
  let lastError = connectErr
  let decodeCallsSum = 0
  let decodeErrorsSum = 0
  for (const m of done) {
    for (const k of Object.keys(s)) {
      if (k === 'maxUs' || k === 'echoMaxUs') s[k] = Math.max(s[k], m.stats[k])
      else if (k === 'elu') elus.push(+m.stats.elu.toFixed(3))
      else s[k] += m.stats[k]
    }
    decodeCallsSum += m.stats.decodeCalls
    decodeErrorsSum += m.stats.decodeErrors
    for (let i = 0; i < HBUCKETS; i++) { histPeer[i] += m.histPeer[i]; histEcho[i] += m.histEcho[i] }
    lastError = lastError ?? m.lastError
  }
  const ms = us => us === null ? null : +(us / 1000).toFixed(2)
  const expectedDeliveries = s.delivered + s.lost
  const results = {
    clients: total,
    synced,
    connect_failed: total - synced,
    window_s: +winS.toFixed(2),
    updates_sent: s.sent,
    updates_sent_per_s: Math.round(s.sentInWin / o.duration),
    deliveries_per_s: Math.round(s.deliveredInWin / o.duration),
    delivered: s.delivered,
    lost: s.lost,
    delivery_ratio: expectedDeliveries ? +(s.delivered / expectedDeliveries).toFixed(6) : null,
    latency_ms: { p50: ms(hQuantile(histPeer, 0.5)), p99: ms(hQuantile(histPeer, 0.99)), max: ms(s.maxUs || null) },
    echoes: s.echoes,
    echo_lost: s.echoLost,
    echo_latency_ms: { p50: ms(hQuantile(histEcho, 0.5)), p99: ms(hQuantile(histEcho, 0.99)), max: ms(s.echoMaxUs || null) },
    duplicates: s.dups + s.echoDups,
    foreign_items: s.foreign,
    stalled_writers: s.stalledWriters,
    closes: s.closes,
    errors: s.errors + s.parseErrors,
    decode_errors: decodeErrorsSum,
    frames_decoded: decodeCallsSum,
    client_cpu_cores: +((cpu1.user + cpu1.system) / 1e6 / winS).toFixed(3),
    client_event_loop_utilization: elus,
    update_encoding: HAND_ENCODING ? 'direct' : 'ydoc',
    server: summarizeProcs(p0, p1, winS),
    // CPU used by everything else on the machine during the window (other builds, tests): noise
    other_cpu_cores: null,
    last_error: lastError
  }
  if (m0 !== null && m1 !== null) {
    const serverCores = results.server.reduce((a, x) => a + (x.cpu_cores ?? 0), 0)
    results.machine_cpu_cores = +((m1 - m0) / CLK_TCK / winS).toFixed(3)
    results.other_cpu_cores = +Math.max(0, results.machine_cpu_cores - serverCores - results.client_cpu_cores).toFixed(3)
  }
  return { test: o.rate === 0 ? 'throughput' : 'latency', target: o.target, params: o, results }
}

async function idleMain (o) {
  const pids = o['server-pid'] ? String(o['server-pid']).split(',').filter(Boolean).map(Number) : []
  const epochUs = hrUs()
  const ctx = {
    o, epochUs, stats: newStats(), histPeer: new Float64Array(HBUCKETS), histEcho: new Float64Array(HBUCKETS),
    winStartUs: 0, winEndUs: Infinity, closing: false, lastError: null, pump: null
  }
  const clientIdBase = 1 + Math.floor(Math.random() * 1e9)
  let n = 0
  const mkRooms = (count, tag) => Array.from({ length: count }, () => {
    const room = { name: `${o['room-prefix']}-${tag}${n}`, clients: [], writerIds: new Set() }
    const cl = new Client(ctx, room, clientIdBase + n++, true)
    room.clients.push(cl); room.writerIds.add(cl.clientID)
    return cl
  })
  const open = async cls => pool(cls, o['connect-concurrency'], async cl => {
    await prepareRoom(o, cl.room.name)
    await cl.connect(15000)
    cl.sendUpdate()
    const end = Date.now() + 10000
    while (cl.echo.count < 1 && Date.now() < end && !cl.closed) await sleep(5)
    if (cl.echo.count < 1) throw new Error('edit not echoed within 10 s')
  })
  // warm-up rooms (kept open, not counted): first-use allocations of the server
  const warm = mkRooms(10, 'w')
  const warmErr = await open(warm)
  if (warmErr.length) log(o, `warm-up: ${warmErr.length} failed: ${warmErr[0].message}`)
  await sleep(o.settle * 1000)
  const before = readProcs(pids)
  const rssClient0 = process.memoryUsage().rss
  const t0 = Date.now()
  const idle = mkRooms(o['idle-rooms'], 'i')
  log(o, `${o.target} port ${o.port}: opening ${idle.length} idle rooms...`)
  const errs = await open(idle)
  const openS = (Date.now() - t0) / 1000
  const ok = idle.filter(c => c.echo.count >= 1 && !c.closed).length
  log(o, `${ok}/${idle.length} rooms edited in ${openS.toFixed(1)} s; settling ${o.settle} s`)
  await sleep(o.settle * 1000)
  const after = readProcs(pids)
  const stillOpen = idle.filter(c => !c.closed).length
  const rssClient1 = process.memoryUsage().rss
  ctx.closing = true
  for (const c of [...warm, ...idle]) try { c.ws?.close() } catch {}
  await sleep(300)
  for (const c of [...warm, ...idle]) try { c.ws?.terminate() } catch {}
  const server = after.map((a, i) => {
    const b = before[i]
    if (a.error || b.error) return { pid: a.pid, error: a.error || b.error }
    return { pid: a.pid, rss_kb_before: b.rssKb, rss_kb_after: a.rssKb, kb_per_room: +((a.rssKb - b.rssKb) / Math.max(1, ok)).toFixed(2) }
  })
  const sumKb = server.every(s => !s.error) && server.length
    ? +(server.reduce((a, s) => a + s.rss_kb_after - s.rss_kb_before, 0) / Math.max(1, ok)).toFixed(2)
    : null
  return {
    test: 'idle',
    target: o.target,
    params: o,
    results: {
      rooms: idle.length,
      rooms_ok: ok,
      still_open_after_settle: stillOpen,
      open_s: +openS.toFixed(2),
      server_kb_per_room: sumKb,
      server,
      client_kb_per_room: +((rssClient1 - rssClient0) / 1024 / Math.max(1, ok)).toFixed(2),
      errors: errs.length,
      last_error: errs.length ? String(errs[0].message) : ctx.lastError
    }
  }
}

function human (r) {
  if (r.error) return `${r.test}: ERROR ${r.error}`
  const x = r.results
  if (r.test === 'idle') {
    return `idle ${r.target}: ${x.rooms_ok}/${x.rooms} rooms, server ${x.server_kb_per_room ?? '?'} KiB/room (RSS ${x.server.map(s => `${s.rss_kb_before}->${s.rss_kb_after} kB`).join(', ')}), client ${x.client_kb_per_room} KiB/room, errors ${x.errors}`
  }
  const srv = x.server.map(s => s.error ? s.error : `server cpu ${s.cpu_cores} cores, rss ${s.rss_kb_after} kB`).join('; ')
  return `${r.test} ${r.target}: sent ${x.updates_sent_per_s}/s, delivered ${x.deliveries_per_s}/s, ratio ${x.delivery_ratio}, lost ${x.lost}, ` +
    `latency p50 ${x.latency_ms.p50} p99 ${x.latency_ms.p99} max ${x.latency_ms.max} ms, echo p50 ${x.echo_latency_ms.p50} p99 ${x.echo_latency_ms.p99} ms, ` +
    `client cpu ${x.client_cpu_cores} cores (ELU ${x.client_event_loop_utilization.join('/')})${srv ? `, ${srv}` : ''}, other cpu ${x.other_cpu_cores} cores, closes ${x.closes}, errors ${x.errors}` +
    (x.synced < x.clients ? `, only ${x.synced}/${x.clients} synced` : '')
}

if (isMainThread) {
  let o
  try { o = parseArgs(process.argv.slice(2)) } catch (e) { console.error(`load.mjs: ${e.message}\n${usage()}`); process.exit(2) }
  const hard = setTimeout(() => {
    console.log(JSON.stringify({ test: o['idle-rooms'] > 0 ? 'idle' : 'load', target: o.target, params: o, timed_out: true, error: `timed out after ${o.timeout} s` }))
    console.log(`TIMEOUT after ${o.timeout} s`)
    process.exit(4)
  }, o.timeout * 1000)
  hard.unref()
  const run = o['idle-rooms'] > 0 ? idleMain(o) : loadMain(o)
  run.then(r => {
    r.timed_out = false
    console.log(JSON.stringify(r))
    console.log(human(r))
    process.exit(r.error ? 1 : 0)
  }, e => {
    console.error('[load] failed:', e)
    process.exit(1)
  })
} else {
  workerMain().catch(e => { parentPort.postMessage({ type: 'fatal', error: String(e.stack || e) }); process.exit(1) })
}

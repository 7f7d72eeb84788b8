// Redis fault drills (issue 12) against two real gateways on one real redis-server, under load:
//  1. redis-server SIGKILLed and restarted empty 2 s later while y-websocket writers and chat
//     clients on both gateways keep going; no gateway is restarted.
//  2. CLIENT PAUSE 5000 (ALL) under Yjs and chat load.
//  3. FLUSHALL while gateways (and their compaction workers) run.
// Every Yjs writer sets numbered keys (`${label}:${i}` = i) in its room's map. Expectations: every
// key ever set is in every client of its room and in fresh clients on each gateway (0 lost), no
// plugin is disabled, and (3) the worker's consumer group comes back so compaction completes.
// Each drill prints one `DRILL <name>:` line with its figures.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe } from 'node:test'
import { ChatClient, chatToml } from '../lib/chat.js'
import { itest, useEnv } from '../lib/fixture.js'
import { parseFrame } from '../lib/frames.js'
import { http } from '../lib/net.js'
import { rawBuffers } from '../lib/redis.js'
import { sleep, waitFor } from '../lib/wait.js'
import { waitConverged, Y } from '../lib/yclient.js'

// ---- helpers -------------------------------------------------------------------------------------

/** Resident set of a process in MiB (VmRSS of /proc/<pid>/status), or null. */
const rssMb = (gw) => {
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(fs.readFileSync(`/proc/${gw.proc.pid}/status`, 'utf8'))
    return m ? Math.round(Number(m[1]) / 102.4) / 10 : null
  } catch {
    return null
  }
}

/** GET /metrics parsed into { 'name{labels}': value }. */
const metricsOf = async (gw) => {
  const res = await http(`${gw.httpBase}/metrics`, { timeout: 10000 })
  assert.equal(res.status, 200, `${gw.name} /metrics: HTTP ${res.status}`)
  const out = {}
  for (const line of res.body.toString('utf8').split('\n')) {
    if (!line || line.startsWith('#')) continue
    const i = line.lastIndexOf(' ')
    out[line.slice(0, i)] = Number(line.slice(i + 1))
  }
  return out
}

const pluginMetric = (m, family, plugin) => m[`${family}{plugin="${plugin}"}`] ?? 0

/** /health of every gateway: status "ok" and every plugin "running". Returns the plugin states. */
const assertHealthy = async (env) => {
  const states = []
  for (const gw of env.gateways) {
    const h = await waitFor(() => gw.health(), { timeout: 15000, what: `${gw.name} /health` })
    const plugins = Object.entries(h.plugins || {})
    assert.ok(plugins.length >= 2, `${gw.name} /health lists plugins ${JSON.stringify(h.plugins)}`)
    for (const [name, p] of plugins) {
      assert.equal(p.state, 'running', `${gw.name}: plugin ${name} is ${p.state} (last_error ${JSON.stringify(p.last_error)})`)
    }
    assert.equal(h.status, 'ok', `${gw.name} /health status ${h.status}: ${JSON.stringify(h.plugins)}`)
    states.push(plugins.map(([n, p]) => `${n}:${p.state}`).join(','))
  }
  return states
}

/** Asserts the gateways were never restarted (same process, still running). */
const assertNotRestarted = (env, pids) => {
  env.gateways.forEach((gw, i) => {
    assert.ok(gw.running, `${gw.name} is not running: ${gw.tail(30)}`)
    assert.equal(gw.proc.pid, pids[i], `${gw.name} was restarted`)
  })
}

const ms = (v) => (v == null ? 'n/a' : String(Math.round(v)))

/**
 * y-websocket clients spread over the gateways, several per room, each writing numbered map keys
 * every minMs..maxMs ms. Records when and through which gateway each key was written and every
 * remote arrival of a key at a client (so cross-gateway delivery times can be measured).
 */
class YjsLoad {
  constructor (env, { name, perRoom = 4, minMs = 20, maxMs = 50, maxWrites = 1500, maxRunMs = 60000 }) {
    this.env = env
    this.name = name
    this.perRoom = perRoom
    this.minMs = minMs
    this.maxMs = maxMs
    this.maxWrites = maxWrites
    this.maxRunMs = maxRunMs
    /** room -> clients */
    this.rooms = new Map()
    /** room -> keys written there */
    this.written = new Map()
    /** key -> { at, gw, room, value } */
    this.keyInfo = new Map()
    /** remote arrivals: { at, writtenAt, cross } */
    this.arrivals = []
    this.writers = []
    this.running = false
    this.stopping = false
    this.seq = 0
  }

  get clients () {
    return [...this.rooms.values()].flat()
  }

  /** Opens a room with `perRoom` synced clients alternating between the gateways. */
  async addRoom (label = 'room', { perRoom = this.perRoom, timeout = 20000 } = {}) {
    const env = this.env
    const room = env.room(`${this.name}-${label}`)
    const r = this.rooms.size
    const clients = await Promise.all(Array.from({ length: perRoom }, (_, j) => {
      const gw = j % env.gateways.length
      return env.synced({ room, gateway: env.gateways[gw], user: `u${r}x${j}`, label: `${this.name}-r${r}-c${j}-g${gw + 1}` }, timeout)
        .then((c) => this._track(c, gw))
    }))
    this.rooms.set(room, clients)
    this.written.set(room, [])
    if (this.running) for (const c of clients) this.writers.push(this._writer(c))
    return room
  }

  _track (c, gw) {
    c.gwIndex = gw
    c.map.observe((ev) => {
      if (ev.transaction.local) return
      const at = Date.now()
      for (const k of ev.keysChanged) {
        const info = this.keyInfo.get(k)
        if (info) this.arrivals.push({ at, writtenAt: info.at, cross: info.gw !== gw })
      }
    })
    return c
  }

  async _writer (c) {
    const deadline = Date.now() + this.maxRunMs
    for (let i = 0; i < this.maxWrites && !this.stopping && Date.now() < deadline; i++) {
      const key = `${c.label}:${i}`
      this.keyInfo.set(key, { at: Date.now(), gw: c.gwIndex, room: c.room, value: i })
      c.map.set(key, i)
      this.written.get(c.room).push(key)
      await sleep(this.minMs + Math.random() * (this.maxMs - this.minMs))
    }
  }

  start () {
    this.running = true
    for (const c of this.clients) this.writers.push(this._writer(c))
  }

  async stop () {
    this.stopping = true
    await Promise.all(this.writers)
    this.running = false
    this.stoppedAt = Date.now()
  }

  get keysWritten () {
    return this.keyInfo.size
  }

  /** Every room's clients converge (encodeStateAsUpdateV2 byte-equal). */
  async converge (timeout = 30000) {
    await Promise.all([...this.rooms.values()].map((cs) => waitConverged(cs, { timeout, interval: 100 })))
  }

  /** Keys of `room` missing (or with a wrong value) in `client`. */
  missing (room, client) {
    const map = client.map
    return this.written.get(room).filter((k) => map.get(k) !== this.keyInfo.get(k).value)
  }

  /** Per room, the keys missing in any of `clients` (default: the room's own clients). */
  lost (clientsOf = (room) => this.rooms.get(room)) {
    const lost = new Set()
    for (const room of this.rooms.keys()) {
      for (const c of clientsOf(room)) for (const k of this.missing(room, c)) lost.add(k)
    }
    return [...lost]
  }

  /** Why keys are missing: when they were written relative to `t0`, and who wrote them. */
  describeLost (keys, t0, what = 't0') {
    return keys.slice(0, 15).map((k) => {
      const i = this.keyInfo.get(k)
      return `${k}@${what}${i.at - t0 >= 0 ? '+' : ''}${i.at - t0}ms`
    }).join(', ') + (keys.length > 15 ? ` ... (${keys.length} in all)` : '')
  }

  /**
   * For each room, one fresh synced client on every gateway; resolves once each holds every key
   * (or after `timeout`, leaving the check to the caller). Returns room -> fresh clients.
   */
  async freshClients (label, timeout = 15000) {
    const env = this.env
    const out = new Map()
    for (const room of this.rooms.keys()) {
      const cs = await Promise.all(env.gateways.map((gw, g) =>
        env.synced({ room, gateway: gw, user: `fresh${g}`, label: `${label}-g${g + 1}` }, 20000)))
      out.set(room, cs)
    }
    try {
      await waitFor(() => [...out].every(([room, cs]) => cs.every((c) => this.missing(room, c).length === 0)), { timeout, interval: 100 })
    } catch {}
    return out
  }

  /** Close events of the Yjs clients: total, with code 1013, and reconnects (extra 'connected'). */
  closeStats (since = 0) {
    let closes = 0
    let c1013 = 0
    let reconnects = 0
    const codes = {}
    for (const c of this.clients) {
      for (const e of c.closes) {
        if (e.at < since) continue
        closes++
        codes[e.code] = (codes[e.code] || 0) + 1
        if (e.code === 1013) c1013++
      }
      // A client's first connection is not a reconnect (clients may join after `since`).
      reconnects += c.statuses.filter((s) => s.status === 'connected').slice(1).filter((s) => s.at >= since).length
    }
    return { closes, c1013, reconnects, codes }
  }

  /** First remote arrival matching `pred`. */
  first (pred) {
    let best = null
    for (const a of this.arrivals) if (pred(a) && (best === null || a.at < best.at)) best = a
    return best
  }

  /** Longest time without any remote arrival between `from` and `to`. */
  longestGap (from, to) {
    const ts = this.arrivals.map((a) => a.at).filter((t) => t >= from && t <= to).sort((a, b) => a - b)
    let gap = 0
    let prev = from
    for (const t of [...ts, to]) {
      gap = Math.max(gap, t - prev)
      prev = t
    }
    return gap
  }

  destroyRoom (room) {
    for (const c of this.rooms.get(room)) c.destroy()
  }
}

/** Chat clients alternating over the gateways, plus a bounded background sender. */
class ChatLoad {
  constructor (env, { name, count = 4, everyMs = 100, maxRounds = 600 }) {
    this.clients = Array.from({ length: count }, (_, i) => {
      const gw = i % env.gateways.length
      return new ChatClient(env.gateways[gw], { user: `${name}-chat${i}`, label: `${name}-chat${i}`, gw })
    })
    this.everyMs = everyMs
    this.maxRounds = maxRounds
    this.stopping = false
  }

  async open () {
    for (const c of this.clients) c.start()
    await Promise.all(this.clients.map((c) => c.waitOpen(20000)))
  }

  start () {
    this.loop = (async () => {
      for (let n = 0; n < this.maxRounds && !this.stopping; n++) {
        for (const c of this.clients) c.send('load')
        await sleep(this.everyMs)
      }
    })()
  }

  async stop () {
    this.stopping = true
    await this.loop
    this.stoppedAt = Date.now()
  }

  /** First cross-gateway arrival of a message sent at or after `t` (ms after t), or null. */
  firstCross (t) {
    let best = null
    for (const c of this.clients) {
      for (const r of c.received) {
        if (r.gw !== c.gw && r.sentAt >= t && (best === null || r.at < best)) best = r.at
      }
    }
    return best === null ? null : best - t
  }

  /** Load messages sent in [from, to) that some client on another gateway never got. */
  undeliveredCross (from, to) {
    let sent = 0
    let missing = 0
    for (const s of this.clients) {
      for (const m of s.sent) {
        if (m.phase !== 'load' || m.sentAt < from || m.sentAt >= to) continue
        for (const r of this.clients) {
          if (r.gw === s.gw) continue
          sent++
          if (!r.received.some((x) => x.from === s.label && x.seq === m.seq)) missing++
        }
      }
    }
    return { deliveries: sent, missing }
  }

  /**
   * Every client sends `n` messages (phase `final`) once all are connected; asserts that every
   * client, on either gateway, receives every one of them within `timeout`. Returns the time taken.
   */
  async finalBurst (n = 5, timeout = 15000) {
    await Promise.all(this.clients.map((c) => c.waitOpen(20000)))
    const t0 = Date.now()
    const expected = []
    for (let i = 0; i < n; i++) {
      for (const c of this.clients) {
        const seq = c.seq
        assert.ok(c.send('final'), `chat client ${c.label} could not send`)
        expected.push(`${c.label}#${seq}`)
      }
      await sleep(50)
    }
    const missingOf = (c) => {
      const got = new Set(c.received.filter((r) => r.phase === 'final').map((r) => `${r.from}#${r.seq}`))
      return expected.filter((k) => !got.has(k))
    }
    await waitFor(() => this.clients.every((c) => missingOf(c).length === 0), {
      timeout,
      what: () => 'chat final messages on every client: missing ' + this.clients.map((c) => `${c.label}(gw${c.gw + 1}): [${missingOf(c).join(' ')}]`).join('; ')
    })
    return Date.now() - t0
  }

  get reconnects () {
    return this.clients.reduce((n, c) => n + Math.max(0, c.connects - 1), 0)
  }

  closeAll () {
    for (const c of this.clients) c.stop()
  }
}

/**
 * Failure diagnostics for lost keys: what the server side holds for each room, rebuilt in JS from
 * the stored objects (v2) plus the room stream (XRANGE, y-redis `m` frames, v1 updates), and whether
 * that doc or the fresh clients have pending structs (updates whose dependencies never arrived).
 */
const diagnose = async (env, load, lost, fresh) => {
  const out = []
  for (const room of load.rooms.keys()) {
    const lostHere = lost.filter((k) => load.keyInfo.get(k).room === room)
    if (!lostHere.length) continue
    const doc = new Y.Doc()
    const objects = await env.listObjects(room).catch(() => [])
    for (const name of objects) {
      try { Y.applyUpdateV2(doc, await env.readObject(name)) } catch (e) { out.push(`object ${name} unreadable: ${e.message}`) }
    }
    let entries = 0
    let updates = 0
    try {
      const reply = await rawBuffers(env.r, ['XRANGE', env.streamKey(room), '-', '+'])
      for (const [, fields] of reply) {
        entries++
        const m = fields[1]
        // y-redis framing: the entry is a y-protocols frame (sync update / step 2, or awareness).
        let f
        try { f = parseFrame(new Uint8Array(m)) } catch { continue }
        if (f.type === 'sync' && f.sub !== 0) {
          updates++
          Y.applyUpdate(doc, f.payload)
        }
      }
    } catch (e) {
      out.push(`stream unreadable: ${e.message}`)
    }
    const map = doc.getMap('map')
    const inServer = lostHere.filter((k) => map.get(k) === load.keyInfo.get(k).value).length
    const fr = (fresh && fresh.get(room)) || []
    out.push(`room ${room}: lost ${lostHere.length}; server side (${objects.length} objects + ${entries} stream entries, ${updates} updates) rebuilt in JS has ${inServer} of them, ` +
      `${map.size} keys, pending structs in rebuilt doc: ${Boolean(doc.store.pendingStructs)} (missing sv ${JSON.stringify(doc.store.pendingStructs ? Object.fromEntries(doc.store.pendingStructs.missing) : {})}); ` +
      `fresh clients: ${fr.map((c) => `${c.label} keys=${c.map.size} pending=${Boolean(c.doc.store.pendingStructs)}`).join(', ')}; ` +
      `writers' sv: ${load.rooms.get(room).map((c) => JSON.stringify(Object.fromEntries(Y.decodeStateVector(Y.encodeStateVector(c.doc))))).slice(0, 1)}; ` +
      `clientIDs: ${load.rooms.get(room).map((c) => `${c.label}=${c.doc.clientID} closes=${JSON.stringify(c.closes.map((e) => e.code))}`).join(' ')}`)
  }
  return out.join('\n')
}

const lostMessage = (load, lost, t0, what) => `${lost.length} of ${load.keysWritten} keys lost: ${load.describeLost(lost, t0, what)}`

/** Runs `fn`, returning [value, error] (so figures can be printed before assertions fail). */
const attempt = async (fn) => {
  try {
    return [await fn(), null]
  } catch (e) {
    return [null, e]
  }
}

/** Saves every room's stream (XRANGE, base64 `m`) and object names into the env's temp dir. */
const saveEvidence = async (env, load, tag) => {
  const dir = path.join(env.tmp, 'drill-evidence')
  fs.mkdirSync(dir, { recursive: true })
  for (const room of load.rooms.keys()) {
    const [reply] = await attempt(() => rawBuffers(env.r, ['XRANGE', env.streamKey(room), '-', '+']))
    const entries = (reply || []).map(([id, fields]) => ({ id: id.toString(), m: Buffer.from(fields[1]).toString('base64') }))
    const objects = await env.listObjects(room).catch(() => [])
    fs.writeFileSync(path.join(dir, `${tag}-${room}.json`), JSON.stringify({ room, at: Date.now(), objects, entries }))
  }
}

// ---- drill 1 -------------------------------------------------------------------------------------

describe('drill: redis SIGKILL + restart under yjs and chat load', () => {
  const env = useEnv({ name: 'drill-sigkill', mode: 'redis', gateways: 2, extraToml: chatToml() })

  itest(env, 'no acknowledged update is lost, chat crosses gateways again, no gateway restarted', async (env) => {
    const pids = env.gateways.map((g) => g.proc.pid)
    const load = new YjsLoad(env, { name: 'kill' })
    for (let r = 0; r < 3; r++) await load.addRoom(`room${r}`)
    const chat = new ChatLoad(env, { name: 'kill', count: 4 })
    await chat.open()

    load.start()
    chat.start()
    try {
      await sleep(3000)
      const rssBefore = env.gateways.map(rssMb)
      const killAt = Date.now()
      await env.redis.crashAndRestart({ downMs: 2000 })
      const back = Date.now()
      env.r = await env.redis.shared()
      await sleep(5000)
      await load.stop()
      await chat.stop()

      // Every Yjs client converges and holds every key its room ever got; fresh clients on each
      // gateway load everything too.
      const [, convergeErr] = await attempt(() => load.converge(30000))
      const convergedAt = convergeErr ? null : Date.now()
      await saveEvidence(env, load, 'after-convergence')
      const lostInClients = load.lost()
      const fresh = await load.freshClients('kill-fresh')
      const lostFresh = load.lost((room) => fresh.get(room))
      const lost = [...new Set([...lostInClients, ...lostFresh])]
      const phase = (k) => { const t = load.keyInfo.get(k).at; return t < killAt ? 'before_kill' : t < back ? 'outage' : 'after_back' }
      const lostByPhase = lost.reduce((o, k) => ({ ...o, [phase(k)]: (o[phase(k)] || 0) + 1 }), {})
      const writtenAfterBack = [...load.keyInfo.values()].filter((i) => i.at >= back).length
      const firstCross = load.first((a) => a.cross && a.writtenAt >= back)

      // Chat: cross-gateway delivery resumes, and everything sent now reaches both gateways.
      const chatFirstCross = chat.firstCross(back)
      const inWindow = chat.undeliveredCross(back, chat.stoppedAt)
      const [chatFinalMs, chatErr] = await attempt(() => chat.finalBurst(5, 15000))
      const [health, healthErr] = await attempt(() => assertHealthy(env))
      const rssAfter = env.gateways.map(rssMb)
      const cs = load.closeStats(killAt)
      console.log(`DRILL redis-sigkill: down=${back - killAt}ms first_cross_gw_yjs_update=${firstCross ? ms(firstCross.at - back) : 'none'}ms_after_redis_back ` +
        `full_convergence=${convergedAt ? ms(convergedAt - back) : 'FAILED'}ms_after_redis_back (${convergedAt ? ms(convergedAt - load.stoppedAt) : '-'}ms after writers stopped) ` +
        `keys_written=${load.keysWritten} (after_back=${writtenAfterBack}) keys_lost=${lost.length} (in_connected_clients=${lostInClients.length} in_fresh_clients=${lostFresh.length} by_phase=${JSON.stringify(lostByPhase)}) ` +
        `yjs_clients=${load.clients.length} yjs_reconnects=${cs.reconnects} yjs_closes=${cs.closes} closes_1013=${cs.c1013} close_codes=${JSON.stringify(cs.codes)} ` +
        `chat_first_cross_gw=${ms(chatFirstCross)}ms_after_redis_back chat_cross_deliveries_after_back=${inWindow.deliveries} chat_lost_in_reconnect_window=${inWindow.missing} ` +
        `chat_final_burst_all_delivered_in=${chatFinalMs === null ? 'FAILED' : chatFinalMs + 'ms'} chat_reconnects=${chat.reconnects} ` +
        `rss_mb_before=[${rssBefore.join(',')}] rss_mb_after=[${rssAfter.join(',')}] health=[${(health || []).join(' | ')}]`)

      if (convergeErr) throw convergeErr
      assert.deepEqual(lostInClients, [], 'keys missing in connected clients: ' + lostMessage(load, lostInClients, back, 'back'))
      if (lostFresh.length) assert.fail('keys missing in fresh clients: ' + lostMessage(load, lostFresh, back, 'back') + '\n' + await diagnose(env, load, lostFresh, fresh))
      assert.ok(firstCross, `no Yjs update written after redis came back crossed gateways (${load.arrivals.length} arrivals, ${writtenAfterBack} keys written after back)`)
      assert.ok(chatFirstCross !== null && chatFirstCross < 15000, `chat: first cross-gateway message after redis came back: ${chatFirstCross} ms`)
      if (chatErr) throw chatErr
      if (healthErr) throw healthErr
      assertNotRestarted(env, pids)
    } finally {
      load.stopping = true
      chat.stopping = true
      chat.closeAll()
    }
  }, { timeout: 100000 })
})

// ---- drill 2 -------------------------------------------------------------------------------------

describe('drill: redis CLIENT PAUSE 5000 under yjs and chat load', () => {
  const env = useEnv({ name: 'drill-pause', mode: 'redis', gateways: 2, extraToml: chatToml() })

  itest(env, 'clients wait or reconnect, nothing is lost, no plugin disabled or timed out', async (env) => {
    const pids = env.gateways.map((g) => g.proc.pid)
    const load = new YjsLoad(env, { name: 'pause' })
    for (let r = 0; r < 2; r++) await load.addRoom(`room${r}`)
    const chat = new ChatLoad(env, { name: 'pause', count: 2 })
    await chat.open()
    const before = await Promise.all(env.gateways.map(metricsOf))

    load.start()
    chat.start()
    let lateChat = null
    try {
      await sleep(2000)
      // CLIENT PAUSE on a connection of its own (a paused connection waits too).
      const pauser = await env.redis.client()
      const pauseAt = Date.now()
      const reply = await pauser.sendCommand(['CLIENT', 'PAUSE', '5000', 'ALL'])
      assert.equal(reply, 'OK', `CLIENT PAUSE answered ${reply}`)
      const pauseEnd = Date.now() + 5000
      // Newcomers during the pause: a Yjs client on gw2 and a chat client on gw1.
      await sleep(1000)
      const lateRoom = [...load.rooms.keys()][0]
      const lateY = env.synced({ room: lateRoom, gateway: env.gateways[1], user: 'late', label: 'pause-late-yjs-g2' }, 25000)
        .then((c) => ({ c, at: Date.now() }), (e) => ({ e }))
      lateChat = new ChatClient(env.gateways[0], { user: 'pause-late-chat', label: 'pause-late-chat', gw: 0 }).start()
      await sleep(pauseEnd - Date.now() + 2500)
      await load.stop()
      await chat.stop()

      const lateRes = await lateY
      if (lateRes.c) load.rooms.get(lateRoom).push(load._track(lateRes.c, 1))
      const [, convergeErr] = await attempt(() => load.converge(30000))
      const convergedAt = convergeErr ? null : Date.now()
      const lostInClients = load.lost()
      const fresh = await load.freshClients('pause-fresh')
      const lostFresh = load.lost((room) => fresh.get(room))
      const lost = [...new Set([...lostInClients, ...lostFresh])]

      // The pause really stopped delivery, and delivery resumed after it.
      const gap = load.longestGap(pauseAt - 500, pauseEnd + 2000)
      const resumed = load.first((a) => a.cross && a.at >= pauseAt + 1000)
      const [, lateChatErr] = await attempt(() => lateChat.waitOpen(15000))
      const [chatFinalMs, chatErr] = await attempt(() => chat.finalBurst(5, 15000))

      // No plugin disabled; no plugin call ran into its deadline.
      const [health, healthErr] = await attempt(() => assertHealthy(env))
      const after = await Promise.all(env.gateways.map(metricsOf))
      const delta = (i, fam, p) => pluginMetric(after[i], fam, p) - pluginMetric(before[i], fam, p)
      const timeouts = env.gateways.map((_, i) => ({
        yjs: delta(i, 'gateway_plugin_timeouts_total', 'yjs'),
        chat: delta(i, 'gateway_plugin_timeouts_total', 'chat'),
        traps: delta(i, 'gateway_plugin_traps_total', 'yjs') + delta(i, 'gateway_plugin_traps_total', 'chat')
      }))
      const cs = load.closeStats(pauseAt)
      console.log(`DRILL redis-pause: pause=5000ms longest_yjs_delivery_gap=${gap}ms recovery=${resumed ? ms(resumed.at - pauseEnd) : 'none'}ms_after_pause_end (first cross-gw Yjs delivery) ` +
        `full_convergence=${convergedAt ? ms(convergedAt - pauseEnd) : 'FAILED'}ms_after_pause_end keys_written=${load.keysWritten} keys_lost=${lost.length} ` +
        `closes_1013=${cs.c1013} yjs_closes=${cs.closes} yjs_reconnects=${cs.reconnects} close_codes=${JSON.stringify(cs.codes)} ` +
        `late_yjs_client_synced=${lateRes.c ? ms(lateRes.at - pauseEnd) + 'ms_after_pause_end' : 'FAILED'} late_chat_connects=${lateChat.connects} late_chat_attempts=${lateChat.attempts} ` +
        `chat_final_burst_all_delivered_in=${chatFinalMs === null ? 'FAILED' : chatFinalMs + 'ms'} chat_reconnects=${chat.reconnects} ` +
        `plugin_timeouts_delta=${JSON.stringify(timeouts)} health=[${(health || []).join(' | ')}]`)

      if (lateRes.e) throw lateRes.e
      if (convergeErr) throw convergeErr
      assert.deepEqual(lostInClients, [], 'keys missing in connected clients: ' + lostMessage(load, lostInClients, pauseEnd, 'pause_end'))
      if (lostFresh.length) assert.fail('keys missing in fresh clients: ' + lostMessage(load, lostFresh, pauseEnd, 'pause_end') + '\n' + await diagnose(env, load, lostFresh, fresh))
      assert.ok(gap >= 3000, `the pause did not stop Yjs delivery (longest gap ${gap} ms)`)
      assert.ok(resumed, 'no cross-gateway Yjs delivery after the pause')
      if (healthErr) throw healthErr
      for (const [i, t] of timeouts.entries()) {
        assert.equal(t.yjs, 0, `${env.gateways[i].name}: gateway_plugin_timeouts_total{plugin="yjs"} rose by ${t.yjs}`)
        assert.equal(t.chat, 0, `${env.gateways[i].name}: gateway_plugin_timeouts_total{plugin="chat"} rose by ${t.chat}`)
        assert.equal(t.traps, 0, `${env.gateways[i].name}: gateway_plugin_traps_total rose by ${t.traps}`)
      }
      if (lateChatErr) throw lateChatErr
      if (chatErr) throw chatErr
      assertNotRestarted(env, pids)
    } finally {
      load.stopping = true
      chat.stopping = true
      chat.closeAll()
      if (lateChat) lateChat.stop()
    }
  }, { timeout: 100000 })
})

// ---- drill 3 -------------------------------------------------------------------------------------

describe('drill: redis FLUSHALL while the gateways run', () => {
  const env = useEnv({ name: 'drill-flushall', mode: 'redis', gateways: 2, extraToml: chatToml() })

  itest(env, 'clients re-send, the worker group comes back, compaction and fresh clients see everything', async (env) => {
    const pids = env.gateways.map((g) => g.proc.pid)
    const load = new YjsLoad(env, { name: 'flush' })
    const roomA = await load.addRoom('old')
    const chat = new ChatLoad(env, { name: 'flush', count: 2 })
    await chat.open()

    load.start()
    try {
      await sleep(2500)
      const flushAt = Date.now()
      assert.equal(await env.r.flushAll(), 'OK')
      // A new room, opened right after the flush, on both gateways; its writers join the load.
      const roomB = await load.addRoom('new', { perRoom: 2 })
      const roomBSynced = Date.now()
      await sleep(3000)
      await load.stop()

      const [, convergeErr] = await attempt(() => load.converge(30000))
      const convergedAt = convergeErr ? null : Date.now()
      const lostInClients = load.lost()
      const firstCross = load.first((a) => a.cross && a.writtenAt >= flushAt)

      // The worker queue's consumer group exists again.
      const [groups, groupErr] = await attempt(() => waitFor(async () => {
        const g = await env.r.sendCommand(['XINFO', 'GROUPS', 'y:worker'])
        return g.some((x) => x[1] === 'y:worker') && g
      }, { timeout: 10000, what: 'consumer group y:worker on y:worker after FLUSHALL' }))

      // Compaction of both rooms completes once their clients left; fresh clients on each gateway
      // then load every key from storage.
      const cs = load.closeStats(flushAt)
      const leftAt = Date.now()
      load.destroyRoom(roomA)
      load.destroyRoom(roomB)
      const [, compactErr] = await attempt(async () => {
        await env.waitCompacted(roomB, 30000)
        await env.waitCompacted(roomA, 30000)
      })
      const compactedMs = compactErr ? null : Date.now() - leftAt
      const objectsA = await env.listObjects(roomA)
      const objectsB = await env.listObjects(roomB)
      const fresh = await load.freshClients('flush-fresh')
      const lostFresh = load.lost((room) => fresh.get(room))
      const lost = [...new Set([...lostInClients, ...lostFresh])]
      const [chatFinalMs, chatErr] = await attempt(() => chat.finalBurst(5, 15000))
      const [health, healthErr] = await attempt(() => assertHealthy(env))
      console.log(`DRILL redis-flushall: first_cross_gw_yjs_update=${firstCross ? ms(firstCross.at - flushAt) : 'none'}ms_after_flush new_room_synced=${roomBSynced - flushAt}ms_after_flush ` +
        `full_convergence=${convergedAt ? ms(convergedAt - flushAt) : 'FAILED'}ms_after_flush (${convergedAt ? ms(convergedAt - load.stoppedAt) : '-'}ms after writers stopped) ` +
        `keys_written=${load.keysWritten} keys_lost=${lost.length} (in_connected_clients=${lostInClients.length} in_fresh_clients=${lostFresh.length}) ` +
        `closes_1013=${cs.c1013} yjs_closes=${cs.closes} yjs_reconnects=${cs.reconnects} ` +
        `worker_group_recreated=${Boolean(groups)} compaction_of_both_rooms=${compactedMs === null ? 'FAILED' : compactedMs + 'ms'}_after_clients_left ` +
        `objects=${objectsA.length}+${objectsB.length} chat_final_burst_all_delivered_in=${chatFinalMs === null ? 'FAILED' : chatFinalMs + 'ms'} health=[${(health || []).join(' | ')}]`)

      if (convergeErr) throw convergeErr
      assert.deepEqual(lostInClients, [], 'keys missing in connected clients: ' + lostMessage(load, lostInClients, flushAt, 'flush'))
      assert.ok(firstCross, 'no cross-gateway Yjs delivery after FLUSHALL')
      if (groupErr) throw groupErr
      if (compactErr) throw compactErr
      assert.ok(objectsB.length >= 1, `no stored object for ${roomB} after FLUSHALL`)
      assert.ok(objectsA.length >= 1, `no stored object for ${roomA}`)
      if (lostFresh.length) assert.fail('keys missing in fresh clients (loaded from storage after compaction): ' + lostMessage(load, lostFresh, flushAt, 'flush') + '\n' + await diagnose(env, load, lostFresh, fresh))
      if (chatErr) throw chatErr
      if (healthErr) throw healthErr
      assertNotRestarted(env, pids)
    } finally {
      load.stopping = true
      chat.closeAll()
    }
  }, { timeout: 100000 })
})

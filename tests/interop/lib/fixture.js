// One test environment: temp dir, auth keys, permission server, optional redis-server / moto_server,
// one or more gateways, the clients made against them, storage/stream inspection and teardown.
import assert from 'node:assert/strict'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, test } from 'node:test'
import { keepTmp, verbose } from './env.js'
import { Gateway } from './gateway.js'
import { MotoServer } from './moto.js'
import { PermServer } from './perm.js'
import { RedisServer, roomStreamKey } from './redis.js'
import { stdToken, YredisAuth } from './tokens.js'
import { connectClient, docFromV2 } from './yclient.js'
import { waitFor } from './wait.js'
import { WorkerProcess } from './worker.js'

export const BUCKET = 'ydocs-test'
export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/**
 * The room as the gateway sees it: the raw (undecoded) path segment after /yjs/ that `ws` puts on the
 * wire for the string handed to WebsocketProvider (WHATWG URL serialisation; e.g. `ü` -> `%C3%BC`).
 */
export const rawSegment = (room) => new URL('ws://127.0.0.1/yjs/' + room).pathname.slice('/yjs/'.length)

/** Storage object prefix y-redis v0.1.6 uses for a room: `${encodeURIComponent(room)}/index/`. */
export const objectPrefix = (room) => `${encodeURIComponent(rawSegment(room))}/index/`

export class InteropEnv {
  /**
   * @param {object} [o]
   * @param {string} [o.name]
   * @param {'embedded'|'redis'} [o.mode]
   * @param {'fs'|'s3'|'memory'} [o.storage]
   * @param {object} [o.worker] overrides of [worker]
   * @param {number} [o.gateways] how many gateways to start (they share redis and storage)
   * @param {(motoEndpoint: string) => string | Promise<string>} [o.s3Endpoint] s3 only: the
   *   `[storage] endpoint` the gateways get, given moto's (e.g. a proxy in front of it); default
   *   moto's own. Inspection (listObjects, readObject) always goes to moto directly.
   */
  static async create (o = {}) {
    const env = new InteropEnv(o)
    try {
      await env._init()
    } catch (e) {
      env.failed = true
      await env.cleanup()
      throw e
    }
    return env
  }

  constructor ({ name = 'env', mode = 'embedded', storage = 'fs', worker = {}, gateways = 1, wasm, extraToml, serverToml, s3Endpoint } = {}) {
    this.name = name
    /** s3 only: maps moto's endpoint to the one written into the gateways' [storage]. */
    this.s3EndpointFn = s3Endpoint
    /** s3 only: the endpoint the gateways use (moto's, unless s3Endpoint chose another). */
    this.s3Endpoint = null
    /** Appended to every gateway's config (more plugins and routes). */
    this.extraToml = extraToml
    /** More `[server]` keys for every gateway (e.g. `demo = true`). */
    this.serverToml = serverToml
    /** The plugin file the gateways load (default: dist/plugins/yjs_sync.wasm). */
    this.wasm = wasm
    this.mode = mode
    this.storageKind = storage
    this.worker = worker
    this.gatewayCount = gateways
    this.tmp = fs.mkdtempSync(path.join(os.tmpdir(), `interop-${name.replace(/[^a-z0-9-]/gi, '_')}-`))
    this.gateways = []
    /** Standalone `gateway worker` processes (see addWorker). */
    this.workers = []
    this.clients = []
    this.failed = false
    this.dumped = false
    this.redis = null
    this.moto = null
    this.perm = null
    this.storagePath = path.join(this.tmp, 'storage')
  }

  async _init () {
    fs.mkdirSync(this.storagePath, { recursive: true })
    this.auth = await YredisAuth.create(this.tmp)
    this.perm = await PermServer.start()
    if (this.mode === 'redis') {
      this.redis = await RedisServer.start(this.tmp)
      this.r = await this.redis.shared()
    }
    if (this.storageKind === 's3') {
      this.moto = await MotoServer.start(this.tmp)
      await this.moto.createBucket(BUCKET)
      this.s3Endpoint = this.s3EndpointFn ? await this.s3EndpointFn(this.moto.endpoint) : this.moto.endpoint
    }
    for (let i = 0; i < this.gatewayCount; i++) await this.addGateway()
  }

  /** Starts another gateway on the same redis/storage (its own port, stream dir and log). */
  async addGateway ({ start = true } = {}) {
    const i = this.gateways.length + 1
    const dir = path.join(this.tmp, `gw${i}`)
    fs.mkdirSync(dir, { recursive: true })
    const storage = this.storageKind === 'fs'
      ? { kind: 'fs', path: this.storagePath }
      : this.storageKind === 's3'
        ? { kind: 's3', bucket: BUCKET, endpoint: this.s3Endpoint || this.moto.endpoint }
        : { kind: 'memory' }
    const gw = new Gateway(dir, {
      name: `${this.name}-${this.mode}-gw${i}`,
      storage,
      streamsDir: path.join(dir, 'streams'),
      redisUrl: this.redis ? this.redis.url : undefined,
      worker: this.worker,
      wasm: this.wasm,
      extraToml: this.extraToml,
      serverToml: this.serverToml,
      jwkFile: this.auth.jwkFile,
      permUrl: this.perm.url
    })
    this.gateways.push(gw)
    if (start) await gw.start()
    return gw
  }

  /**
   * Starts a standalone `gateway worker` with the config of `gw` (default: the first gateway), i.e. the
   * same [redis], [storage] and [worker]. Its log is dumped with the gateways' and it stops at cleanup.
   */
  async addWorker ({ gw = this.gw } = {}) {
    const i = this.workers.length + 1
    const dir = path.join(this.tmp, `worker${i}`)
    fs.mkdirSync(dir, { recursive: true })
    const w = new WorkerProcess(dir, { configFile: gw.configFile, name: `${this.name}-${this.mode}-worker${i}` })
    this.workers.push(w)
    await w.start()
    return w
  }

  get gw () {
    return this.gateways[0]
  }

  /** A unique room name (safe characters). */
  room (label = 'room') {
    return `${label}-${crypto.randomBytes(4).toString('hex')}`
  }

  /** A y-websocket client (see connectClient); defaults to the first gateway and user alice. */
  client (opts) {
    return connectClient({
      gateway: this.gw,
      auth: this.auth,
      stdToken: (user) => stdToken(user),
      registry: this.clients,
      ...opts
    })
  }

  /** A client that is synced before it is returned. */
  async synced (opts, timeout) {
    const c = await this.client(opts)
    await c.synced(timeout)
    return c
  }

  // ---- streams -------------------------------------------------------------------------------

  streamKey (room) {
    return roomStreamKey(rawSegment(room))
  }

  /** Whether the room's stream currently exists (Redis: EXISTS; embedded: only "some stream is live"). */
  async streamExists (room) {
    if (this.r) return (await this.r.exists(this.streamKey(room))) === 1
    return (await this.gw.streamsHealth()).streams > 0
  }

  /** Current stream/queue state for messages. */
  async streamState (room) {
    if (this.r) {
      const key = this.streamKey(room)
      return { key, exists: await this.r.exists(key), xlen: await this.r.xLen(key), worker_queue: await this.r.xLen('y:worker') }
    }
    return this.gw.streamsHealth()
  }

  /**
   * Waits until compaction is complete: the room stream is gone and the worker queue is empty.
   * Redis: EXISTS key == 0 && XLEN y:worker == 0. Embedded: /health streams.streams == 0 &&
   * streams.worker_queue == 0 (so the gateway must be dedicated to the test).
   */
  async waitCompacted (room, timeout = 20000) {
    await waitFor(async () => {
      if (this.r) {
        const key = this.streamKey(room)
        return (await this.r.exists(key)) === 0 && (await this.r.xLen('y:worker')) === 0
      }
      const s = await this.gw.streamsHealth()
      return s.streams === 0 && s.worker_queue === 0
    }, { timeout, interval: 100, what: async () => `compaction of room ${room}: ${JSON.stringify(await this.streamState(room))}` })
  }

  // ---- storage -------------------------------------------------------------------------------

  /** Object names (relative to the storage root / bucket) stored for `room`. */
  async listObjects (room) {
    const prefix = objectPrefix(room)
    if (this.storageKind === 'fs') {
      const dir = path.join(this.storagePath, ...prefix.split('/').filter(Boolean))
      let names = []
      try {
        names = fs.readdirSync(dir)
      } catch (e) {
        if (e.code !== 'ENOENT') throw e
      }
      return names.sort().map((n) => prefix + n)
    }
    if (this.storageKind === 's3') return this.moto.list(BUCKET, prefix)
    throw new Error('memory storage cannot be inspected from outside')
  }

  /** fs storage only: the entries at the storage root (one directory per encoded room). */
  listRoot () {
    if (this.storageKind !== 'fs') return []
    try {
      return fs.readdirSync(this.storagePath).sort()
    } catch {
      return []
    }
  }

  async readObject (name) {
    if (this.storageKind === 'fs') return new Uint8Array(fs.readFileSync(path.join(this.storagePath, ...name.split('/'))))
    if (this.storageKind === 's3') return this.moto.get(BUCKET, name)
    throw new Error('memory storage cannot be inspected from outside')
  }

  /**
   * Asserts the room has exactly one stored object named `<enc(room)>/index/<uuid>` and returns
   * { name, doc } with the object decoded by Y.applyUpdateV2 into a fresh doc.
   */
  async singleObject (room) {
    const names = await this.listObjects(room)
    assert.equal(names.length, 1, `expected exactly one stored object for room ${room}, found ${JSON.stringify(names)}`)
    const name = names[0]
    const prefix = objectPrefix(room)
    assert.ok(name.startsWith(prefix), `object ${name} is not under ${prefix}`)
    assert.match(name.slice(prefix.length), UUID_RE, `object name ${name} does not end in a uuid`)
    const bytes = await this.readObject(name)
    let doc
    try {
      doc = docFromV2(bytes)
    } catch (e) {
      throw new Error(`stored object ${name} (${bytes.length} bytes) is not a Yjs v2 update: ${e.message}`)
    }
    return { name, doc, bytes }
  }

  // ---- teardown / reporting ------------------------------------------------------------------

  destroyClients () {
    for (const c of this.clients) c.destroy()
    this.clients = []
  }

  /** Prints every gateway's log tail (and where the full logs are). */
  dumpLogs (why, lines = 150) {
    this.dumped = true
    const out = [`\n===== ${this.name} (${this.mode}): ${why}; temp dir ${this.tmp} =====`]
    for (const gw of this.gateways) {
      out.push(`----- ${gw.name} (port ${gw.port}, full log ${gw.logFile}) last ${lines} lines -----`)
      out.push(gw.tail(lines) || '(no output)')
    }
    for (const w of this.workers) {
      out.push(`----- ${w.name} (gateway worker, full log ${w.logFile}) last ${lines} lines -----`)
      out.push(w.tail(lines) || '(no output)')
    }
    if (this.redis && this.redis.proc.exitCode !== undefined) out.push(`redis-server exited:\n${this.redis.proc.tail(20)}`)
    out.push(`===== end ${this.name} =====\n`)
    process.stderr.write(out.join('\n') + '\n')
  }

  async cleanup () {
    this.destroyClients()
    const stops = [...this.gateways, ...this.workers].map((p) => p.stop().catch(() => {}))
    await Promise.all(stops)
    if ((this.failed && !this.dumped) || verbose) this.dumpLogs(this.failed ? 'FAILED (logs up to shutdown)' : 'logs')
    if (this.redis) await this.redis.stop().catch(() => {})
    if (this.moto) await this.moto.stop().catch(() => {})
    if (this.perm) await this.perm.stop().catch(() => {})
    if (!this.failed && !keepTmp) fs.rmSync(this.tmp, { recursive: true, force: true })
    else process.stderr.write(`[interop] kept ${this.tmp}\n`)
  }
}

/**
 * Registers before/after hooks that create and tear down an InteropEnv in the current suite.
 * Returns a getter (the env exists only once `before` ran).
 */
export const useEnv = (opts, { startTimeout = 240000 } = {}) => {
  let env = null
  before(async () => {
    env = await InteropEnv.create(opts)
  }, { timeout: startTimeout })
  after(async () => {
    if (env) await env.cleanup()
  }, { timeout: 60000 })
  return () => {
    if (!env) throw new Error('environment was not created (see the before hook error)')
    return env
  }
}

/**
 * A test whose failure (including its own timeout) prints the gateway logs of `getEnv()`.
 * The body gets (env, t). It is raced against `timeout`, and node:test's own timeout is 10 s longer,
 * so a hang is reported (with logs) by the harness rather than silently cancelled.
 */
export const itest = (getEnv, name, fn, { timeout = 60000, skip } = {}) =>
  test(name, { timeout: timeout + 10000, skip }, async (t) => {
    const env = getEnv()
    let timer
    const guard = new Promise((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`test body did not finish within ${timeout} ms`)), timeout)
    })
    try {
      await Promise.race([fn(env, t), guard])
    } catch (e) {
      env.failed = true
      env.dumpLogs(`test "${name}" failed: ${e && e.message ? e.message.split('\n')[0] : e}`)
      throw e
    } finally {
      clearTimeout(timer)
    }
  })

/** Both stream modes, for describe() loops. */
export const MODES = /** @type {const} */ (['embedded', 'redis'])

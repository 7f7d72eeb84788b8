// Starting, stopping and crashing the gateway under test.
import fs from 'node:fs'
import path from 'node:path'
import { assertBuilt, cacheDir, gatewayBin, pluginWasm, startTimeoutMs } from './env.js'
import { freePort, http } from './net.js'
import { ManagedProcess } from './proc.js'
import { fatal, sleep, waitFor } from './wait.js'

const q = (s) => JSON.stringify(String(s)) // TOML basic strings accept JSON string escapes

const LIMITS = '{ max_frame_bytes = 104857600, max_message_bytes = 104857600, queue_max_bytes = 209715200 }'

/**
 * The gateway config (TOML) for one instance. All paths absolute.
 * @param {object} o
 * @param {number} o.port
 * @param {{kind:'fs', path:string} | {kind:'s3', bucket:string, endpoint:string} | {kind:'memory'}} o.storage
 * @param {string} o.streamsDir
 * @param {string} [o.redisUrl] Redis mode when set, embedded stream log otherwise
 * @param {{enabled?: boolean, task_debounce_ms?: number, min_message_lifetime_ms?: number}} [o.worker]
 * @param {string} [o.wasm] plugin file (default: dist/plugins/yjs_sync.wasm)
 * @param {string} o.jwkFile
 * @param {string} o.permUrl
 * @param {string} [o.extraToml] appended to the config (more plugins and routes)
 * @param {string} [o.serverToml] more `[server]` keys (e.g. `demo = true`)
 */
export const gatewayConfig = (o) => {
  const w = { enabled: true, task_debounce_ms: 500, min_message_lifetime_ms: 800, ...(o.worker || {}) }
  const lines = [
    '# written by tests/interop/lib/gateway.js',
    '[server]',
    `listen = [${q(`127.0.0.1:${o.port}`)}]`,
    `cache_dir = ${q(cacheDir)}`,
    ...(o.serverToml ? [o.serverToml] : []),
    '',
    '[storage]',
    `kind = ${q(o.storage.kind)}`
  ]
  if (o.storage.kind === 'fs') lines.push(`path = ${q(o.storage.path)}`)
  if (o.storage.kind === 's3') {
    lines.push(
      `bucket = ${q(o.storage.bucket)}`,
      `endpoint = ${q(o.storage.endpoint)}`,
      'region = "us-east-1"',
      'access_key_id = "test"',
      'secret_access_key = "test"',
      'allow_http = true'
    )
  }
  lines.push('', '[streams]', `data_dir = ${q(o.streamsDir)}`)
  if (o.redisUrl) lines.push('', '[redis]', `url = ${q(o.redisUrl)}`)
  lines.push(
    '',
    '[worker]',
    `enabled = ${w.enabled ? 'true' : 'false'}`,
    // The brief's example says `prefix = "y"`; gateway/src/config/backends.rs (WorkerConfig) takes a list.
    'prefix = ["y"]',
    `task_debounce_ms = ${w.task_debounce_ms}`,
    `min_message_lifetime_ms = ${w.min_message_lifetime_ms}`,
    '',
    '[auth.yredis]',
    'algorithms = ["ES384"]',
    `jwk_file = ${q(o.jwkFile)}`,
    'exp_unit = "milliseconds"',
    'required_claims = ["yuserid"]',
    'token_from = ["subprotocol:yauth-", "query:yauth"]',
    `permission_callback = ${q(o.permUrl)}`,
    '',
    '[auth.std]',
    'algorithms = ["HS256"]',
    'secret = "interop-secret"',
    'required_claims = ["sub", "exp"]',
    'token_from = ["query:token", "subprotocol:yauth-"]',
    '',
    '[plugins.yjs]',
    `wasm = ${q(o.wasm || pluginWasm)}`,
    'memory_limit_mb = 1024',
    'call_timeout_ms = 30000',
    'max_instances = 8',
    'stream_prefixes = ["y:"]',
    'storage_root = ""',
    '[plugins.yjs.config]',
    'prefix = "y"',
    '',
    '[[routes]]',
    'path = "/yjs/*"',
    'kind = "websocket"',
    'plugin = "yjs"',
    'auth = "yredis"',
    `limits = ${LIMITS}`,
    '',
    '[[routes]]',
    'path = "/std/*"',
    'kind = "websocket"',
    'plugin = "yjs"',
    'auth = "std"',
    `limits = ${LIMITS}`,
    ''
  )
  if (o.extraToml) lines.push(o.extraToml)
  return lines.join('\n')
}

let seq = 0

export class Gateway {
  /**
   * @param {string} dir a directory of its own (config, log)
   * @param {Omit<Parameters<typeof gatewayConfig>[0], 'port'> & { port?: number, name?: string }} opts
   */
  constructor (dir, opts) {
    this.dir = dir
    this.opts = opts
    this.name = opts.name || `gateway-${++seq}`
    this.port = opts.port
    this.proc = null
    this.starts = 0
    /** Log lines of earlier runs of this instance (kept across restarts for failure reports). */
    this.history = []
    this.configFile = path.join(dir, `${this.name}.toml`)
    this.logFile = path.join(dir, `${this.name}.log`)
  }

  get httpBase () {
    return `http://127.0.0.1:${this.port}`
  }

  /** Base URL for WebsocketProvider (the provider appends `/<room>`). */
  wsBase (route = 'yjs') {
    return `ws://127.0.0.1:${this.port}/${route}`
  }

  /** Writes the config and starts the process; resolves once GET /health answers 200. */
  async start () {
    assertBuilt()
    if (this.port == null) this.port = await freePort()
    fs.writeFileSync(this.configFile, gatewayConfig({ ...this.opts, port: this.port }))
    // A restart on the same port can race the old socket's release: retry a few times.
    for (let attempt = 1; ; attempt++) {
      this.starts++
      if (this.proc) this.history.push(...this.proc.lines)
      this.proc = new ManagedProcess(`${this.name}#${this.starts}`, gatewayBin, ['serve', '--config', this.configFile], {
        cwd: this.dir,
        logFile: this.logFile,
        env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info', RUST_BACKTRACE: '1' }
      })
      try {
        await waitFor(async () => {
          if (!this.proc.running) throw fatal(`gateway exited before becoming healthy (code=${this.proc.exitCode} signal=${this.proc.signal})`)
          const res = await http(`${this.httpBase}/health`, { timeout: 2000 })
          return res.status === 200
        }, { timeout: startTimeoutMs, interval: 100, what: `${this.name} GET /health == 200 on port ${this.port}` })
        this.everStarted = true
        return this
      } catch (e) {
        const exited = !this.proc.running
        const inUse = /address already in use|AddrInUse|os error 98/i.test(this.proc.tail(50))
        await this.proc.stop('SIGKILL')
        if (exited && inUse && attempt < 10) {
          // A port picked by freePort() can be taken by an outgoing connection's ephemeral port
          // before the gateway binds it: on a first start, move to another free port (a
          // restart must keep its port, so it only waits for the old socket to go).
          if (!this.everStarted && this.opts.port == null) {
            this.port = await freePort()
            fs.writeFileSync(this.configFile, gatewayConfig({ ...this.opts, port: this.port }))
          }
          await sleep(500)
          continue
        }
        throw new Error(`${this.name} failed to start: ${e.message}\n--- ${this.name} log tail ---\n${this.proc.tail(80)}`)
      }
    }
  }

  /** Graceful stop (SIGTERM). */
  async stop () {
    if (this.proc) await this.proc.stop('SIGTERM', 15000)
  }

  /** Crash (SIGKILL). */
  async kill () {
    if (this.proc) await this.proc.kill()
  }

  /** Start again with the same port, config and data dirs. */
  async restart () {
    await this.stop()
    return this.start()
  }

  get running () {
    return Boolean(this.proc && this.proc.running)
  }

  /** GET /health as parsed JSON (throws on non-200). */
  async health () {
    const res = await http(`${this.httpBase}/health`, { timeout: 5000 })
    if (res.status !== 200) throw new Error(`/health: HTTP ${res.status}`)
    return JSON.parse(res.body.toString('utf8'))
  }

  /** `streams` object of /health: { backend, streams, worker_queue }. */
  async streamsHealth () {
    const h = await this.health()
    if (!h.streams || typeof h.streams !== 'object') throw new Error(`/health has no "streams" object: ${JSON.stringify(h)}`)
    return h.streams
  }

  tail (n = 150) {
    const lines = [...this.history, ...(this.proc ? this.proc.lines : [])]
    return lines.slice(-n).join('\n')
  }
}

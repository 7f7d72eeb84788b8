// A throwaway redis-server on a free loopback port, plus plain node-redis v4 access.
import net from 'node:net'
import path from 'node:path'
import { createClient, commandOptions } from 'redis'
import { redisServer, which } from './env.js'
import { freePort } from './net.js'
import { ManagedProcess } from './proc.js'
import { fatal, waitFor } from './wait.js'

/** Sends one inline command on a fresh socket and resolves the first reply line (or null). */
const rawCommand = (port, line, timeout = 1000) => new Promise((resolve) => {
  const sock = net.connect({ host: '127.0.0.1', port })
  let buf = ''
  const done = (v) => {
    clearTimeout(timer)
    sock.destroy()
    resolve(v)
  }
  const timer = setTimeout(() => done(null), timeout)
  sock.on('connect', () => sock.write(line + '\r\n'))
  sock.on('data', (d) => {
    buf += d.toString()
    if (buf.includes('\r\n')) done(buf.split('\r\n')[0])
  })
  sock.on('error', () => done(null))
})

export class RedisServer {
  /**
   * @param {string} dir working dir for the server (it persists nothing)
   * @param {number} [port] a fixed port (a restart reuses the old one); default a free one
   */
  static async start (dir, port) {
    const bin = which(redisServer)
    if (!bin) throw new Error(`${redisServer} not found on PATH (install: apt-get install -y redis-server)`)
    port = port || await freePort()
    const proc = new ManagedProcess(`redis-server:${port}`, bin, [
      '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
      '--dir', dir, '--protected-mode', 'no'
    ], { logFile: path.join(dir, `redis-${port}-${Date.now()}.log`) })
    const r = new RedisServer(port, proc)
    r.dir = dir
    try {
      await waitFor(async () => {
        if (!proc.running) throw fatal(`redis-server exited:\n${proc.tail(30)}`)
        return (await rawCommand(port, 'PING')) === '+PONG'
      }, { timeout: 15000, what: `redis-server on port ${port} to answer PING` })
    } catch (e) {
      await proc.stop('SIGKILL')
      throw e
    }
    return r
  }

  constructor (port, proc) {
    this.port = port
    this.proc = proc
    this.url = `redis://127.0.0.1:${port}`
    this.clients = []
  }

  /** A connected node-redis v4 client (closed by stop()). */
  async client () {
    const c = createClient({ url: this.url, socket: { connectTimeout: 5000, reconnectStrategy: false } })
    c.on('error', () => {}) // surfaced through the failing command instead
    await c.connect()
    this.clients.push(c)
    return c
  }

  /** Shared client for assertions. */
  async shared () {
    if (!this._shared) this._shared = await this.client()
    return this._shared
  }

  /**
   * Kills the server (SIGKILL: no shutdown, all data lost) and after `downMs` starts an empty one
   * on the same port, as a crashed and restarted Redis looks to its clients. Resolves when the new
   * server answers PING.
   */
  async crashAndRestart ({ downMs = 2000 } = {}) {
    await this.dropClients()
    await this.proc.stop('SIGKILL')
    await new Promise((resolve) => setTimeout(resolve, downMs))
    const next = await RedisServer.start(this.dir, this.port)
    this.proc = next.proc
  }

  async dropClients () {
    for (const c of this.clients) {
      try { await c.disconnect() } catch {}
    }
    this.clients = []
    this._shared = null
  }

  async stop () {
    for (const c of this.clients) {
      try { await c.disconnect() } catch {}
    }
    this.clients = []
    this._shared = null
    await this.proc.stop('SIGTERM', 5000)
  }
}

/** Raw command whose reply keeps binary data as Buffers (nested arrays for stream replies). */
export const rawBuffers = (client, args) => client.sendCommand(args, commandOptions({ returnBuffers: true }))

/** All keys matching `pattern` (SCAN, bounded). */
export const scanKeys = async (client, pattern) => {
  const keys = []
  let cursor = 0
  for (let i = 0; i < 10000; i++) {
    const res = await client.scan(cursor, { MATCH: pattern, COUNT: 1000 })
    keys.push(...res.keys)
    cursor = res.cursor
    if (cursor === 0) break
  }
  return keys.sort()
}

/** The stream key y-redis v0.1.6 uses for a room given as its raw URL path segment. */
export const roomStreamKey = (rawRoom, prefix = 'y') => `${prefix}:room:${encodeURIComponent(rawRoom)}:index`

/**
 * Keys of the gateway's cluster bus (prefix `gateway`, see `[redis] cluster_prefix`): node
 * heartbeats, the node set, presence and plugin key-value entries. They live beside the y-redis
 * keys, never among them.
 */
export const isClusterKey = (k) => /^gateway:(nodes|node:\d+(:presence)?|presence:.*|kv:.*|sentinel)$/.test(k)

export { commandOptions }

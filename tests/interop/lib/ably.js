// The real `ably` npm client against the gateway's ably-rooms plugin: config, client options that
// keep it on loopback, and small promise helpers around its event API.
import crypto from 'node:crypto'
import net from 'node:net'
import path from 'node:path'
import * as Ably from 'ably'
import { repoDir } from './env.js'
import { waitFor } from './wait.js'

/** API keys the test gateways accept. */
export const KEY = 'testapp.key1:s3cret-one'
export const OTHER_KEY = 'testapp.key2:s3cret-two'

const q = (s) => JSON.stringify(String(s))

/** The plugin file (scripts/build-plugins). */
export const ablyWasm = process.env.INTEROP_ABLY_WASM || path.join(repoDir, 'dist', 'plugins', 'ably_rooms.wasm')

/** Config appended to a test gateway: ably-rooms on `/` with KEY and OTHER_KEY. */
export const ablyToml = () => [
  '[plugins.ably-rooms]',
  `wasm = ${q(ablyWasm)}`,
  'max_instances = 4',
  'stream_prefixes = ["ably:"]',
  '[plugins.ably-rooms.config]',
  `keys = [${q(KEY)}, ${q(OTHER_KEY)}]`,
  // Tokens of the gateway's own `std` profile work too (clientId = sub).
  'token_profile = "std"',
  // KEY may do everything; OTHER_KEY only what this says.
  '[plugins.ably-rooms.config.capabilities]',
  `${q(OTHER_KEY.split(':')[0])} = { "public:*" = ["subscribe"], "chat:*" = ["*"] }`,
  '',
  '[[routes]]',
  'path = "/"',
  'kind = "websocket"',
  'plugin = "ably-rooms"',
  'limits = { max_frame_bytes = 524288, max_message_bytes = 524288 }',
  '',
  '[[routes]]',
  'path = "/time"',
  'kind = "http"',
  'plugin = "ably-rooms"',
  '',
  '[[routes]]',
  'path = "/channels/*"',
  'kind = "http"',
  'plugin = "ably-rooms"',
  ''
].join('\n')

/**
 * Client options for a gateway: the safe loopback set (no fallback hosts, no internet checks).
 * @param {import('./gateway.js').Gateway} gw
 * @param {object} [extra] more client options (clientId, echoMessages, useBinaryProtocol, key/token...)
 */
export const clientOptions = (gw, extra = {}) => ({
  key: KEY,
  endpoint: '127.0.0.1',
  port: gw.port,
  tls: false,
  useBinaryProtocol: false,
  disableConnectivityCheck: true,
  wsConnectivityCheckUrl: `ws://127.0.0.1:${gw.port}/`,
  fallbackHosts: [],
  transports: ['web_socket'],
  logLevel: 0,
  ...extra
})

/**
 * An Ably JWT (HS256 with the key's secret, `kid` = key name).
 * @param {object} o
 * @param {string} [o.key] the signing key (default KEY)
 * @param {string} [o.clientId] x-ably-clientId
 * @param {object} [o.capability] x-ably-capability (default everything)
 * @param {number} [o.ttl] seconds until exp (negative: already expired)
 */
export const ablyJwt = ({ key = KEY, clientId, capability = { '*': ['*'] }, ttl = 3600 } = {}) => {
  const [name, secret] = key.split(':')
  const now = Math.floor(Date.now() / 1000)
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url')
  const claims = { iat: now, exp: now + ttl, 'x-ably-capability': JSON.stringify(capability) }
  if (clientId) claims['x-ably-clientId'] = clientId
  const signed = `${b64({ typ: 'JWT', alg: 'HS256', kid: name })}.${b64(claims)}`
  return `${signed}.${crypto.createHmac('sha256', secret).update(signed).digest('base64url')}`
}

/** Every client made here, closed by closeAll. */
const open = new Set()

/** A Realtime client; resolves once it is `connected` (or rejects with the state change's reason). */
export const connect = async (gw, extra = {}, { expect = 'connected', timeout = 15000 } = {}) => {
  const client = new Ably.Realtime(clientOptions(gw, extra))
  open.add(client)
  const change = await reachState(client, [expect, 'failed', 'connected', 'suspended'], timeout)
  if (change.current !== expect) {
    const why = change.reason ? `${change.reason.code} ${change.reason.message}` : 'no reason'
    throw new Error(`expected ${expect}, got ${change.current} (${why})`)
  }
  return { client, change }
}

/** Resolves with the first connection state change into one of `states`. */
export const reachState = (client, states, timeout = 15000) =>
  new Promise((resolve, reject) => {
    if (states.includes(client.connection.state)) {
      return resolve({ current: client.connection.state, reason: client.connection.errorReason })
    }
    const timer = setTimeout(() => {
      client.connection.off(listener)
      reject(new Error(`connection stayed ${client.connection.state} (wanted ${states.join('|')})`))
    }, timeout)
    const listener = (change) => {
      if (!states.includes(change.current)) return
      clearTimeout(timer)
      client.connection.off(listener)
      resolve(change)
    }
    client.connection.on(listener)
  })

/** Collects a channel's messages (optionally of one name) into an array. */
export const collect = async (channel, name) => {
  const got = []
  if (name) await channel.subscribe(name, (m) => got.push(m))
  else await channel.subscribe((m) => got.push(m))
  return got
}

/** Waits until `array` holds at least `n` items. */
export const atLeast = (array, n, what = 'messages', timeout = 10000) =>
  waitFor(() => array.length >= n, { timeout, interval: 20, what: () => `${n} ${what} (have ${array.length})` })

/** Closes every client made by connect. */
export const closeAll = async () => {
  const all = [...open]
  open.clear()
  await Promise.all(all.map(async (c) => {
    if (['closed', 'failed'].includes(c.connection.state)) return
    c.close()
    await reachState(c, ['closed', 'failed'], 12000).catch(() => {})
  }))
}

export { Ably }

/**
 * A TCP proxy in front of a gateway, to drop a client's socket without a close frame and keep
 * it away for a while (a network cut), while the gateway stays up.
 * @param {number} target the gateway's port
 */
export const startProxy = async (target) => {
  const sockets = new Set()
  let cut = false
  const server = net.createServer((client) => {
    if (cut) return client.destroy()
    const upstream = net.connect(target, '127.0.0.1')
    for (const s of [client, upstream]) {
      sockets.add(s)
      s.on('close', () => sockets.delete(s))
      s.on('error', () => {})
    }
    client.pipe(upstream)
    upstream.pipe(client)
    client.on('close', () => upstream.destroy())
    upstream.on('close', () => client.destroy())
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: server.address().port,
    /** Drops every proxied socket and refuses new ones until restore(). */
    cut () {
      cut = true
      for (const s of sockets) s.destroy()
    },
    restore () {
      cut = false
    },
    close: () => new Promise((resolve) => {
      for (const s of sockets) s.destroy()
      server.close(resolve)
    })
  }
}

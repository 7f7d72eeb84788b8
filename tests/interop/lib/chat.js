// The `chat` plugin (JSON chat, plugins/chat/PROTOCOL.md) on a test gateway, and a raw `ws` chat
// client that reconnects by itself (bounded) and records what it sent and received.
import path from 'node:path'
import WebSocket from 'ws'
import { repoDir } from './env.js'
import { stdToken } from './tokens.js'
import { waitFor } from './wait.js'

const q = (s) => JSON.stringify(String(s))

/** The plugin file (scripts/build-plugins). */
export const chatWasm = process.env.INTEROP_CHAT_WASM || path.join(repoDir, 'dist', 'plugins', 'chat.wasm')

/**
 * Config appended to a test gateway (InteropEnv `extraToml`): the chat plugin on `/ws`, with the
 * fixture's `std` auth profile (HS256 "interop-secret", token in `?token=`), as the shipped
 * plugins.toml has it with its `default` profile.
 */
export const chatToml = ({ callTimeoutMs = 250 } = {}) => [
  '[plugins.chat]',
  `wasm = ${q(chatWasm)}`,
  'max_instances = 4',
  'memory_limit_mb = 64',
  `call_timeout_ms = ${callTimeoutMs}`,
  '',
  '[[routes]]',
  'path = "/ws"',
  'kind = "websocket"',
  'plugin = "chat"',
  'auth = "std"',
  ''
].join('\n')

/**
 * A chat connection to one gateway. Reconnects 250 ms after every close until stop() (at most
 * `maxConnects` attempts). Text messages sent with send() carry { tag, from, gw, seq, phase, sentAt }
 * in `data`; every such text received is kept in `received` with its arrival time.
 */
export class ChatClient {
  /**
   * @param {import('./gateway.js').Gateway} gateway
   * @param {object} o
   * @param {string} o.user the token's `sub`
   * @param {string} o.label
   * @param {number} o.gw index of the gateway (for cross-gateway accounting)
   */
  constructor (gateway, { user, label, gw, maxConnects = 400 }) {
    this.gateway = gateway
    this.user = user
    this.label = label
    this.gw = gw
    this.maxConnects = maxConnects
    this.ws = null
    this.open = false
    this.stopped = false
    this.attempts = 0
    /** Successful opens. */
    this.connects = 0
    this.closes = []
    /** { seq, phase, sentAt } of every message handed to an open socket. */
    this.sent = []
    /** { from, gw, seq, phase, sentAt, at } of every drill text received (own ones included). */
    this.received = []
    this.seq = 0
    this.errors = 0
  }

  start () {
    this._connect()
    return this
  }

  _connect () {
    if (this.stopped || this.attempts >= this.maxConnects) return
    this.attempts++
    const url = `ws://127.0.0.1:${this.gateway.port}/ws?token=${encodeURIComponent(stdToken(this.user))}`
    const ws = new WebSocket(url, { handshakeTimeout: 5000 })
    this.ws = ws
    ws.on('open', () => {
      this.open = true
      this.connects++
    })
    ws.on('message', (data, isBinary) => {
      if (isBinary) return
      let m
      try {
        m = JSON.parse(data.toString())
      } catch {
        return
      }
      const d = m && m.data
      if (m.message_type === 'text' && d && d.tag === 'drill') {
        this.received.push({ from: d.from, gw: d.gw, seq: d.seq, phase: d.phase, sentAt: d.sentAt, at: Date.now() })
      }
    })
    ws.on('error', () => { this.errors++ })
    ws.on('close', (code) => {
      this.open = false
      this.closes.push({ at: Date.now(), code })
      if (this.ws === ws && !this.stopped) setTimeout(() => this._connect(), 250)
    })
  }

  /** Sends one drill text if the socket is open; returns whether it was sent. */
  send (phase = 'load') {
    if (!this.open || this.ws.readyState !== WebSocket.OPEN) return false
    const seq = this.seq++
    const sentAt = Date.now()
    this.ws.send(JSON.stringify({ message_type: 'text', data: { tag: 'drill', from: this.label, gw: this.gw, seq, phase, sentAt } }))
    this.sent.push({ seq, phase, sentAt })
    return true
  }

  async waitOpen (timeout = 15000) {
    await waitFor(() => this.open, { timeout, what: () => `chat client ${this.label} to be connected (attempts ${this.attempts}, closes ${JSON.stringify(this.closes.slice(-3))})` })
    return this
  }

  stop () {
    this.stopped = true
    if (this.ws) {
      try { this.ws.terminate() } catch {}
    }
    this.open = false
  }
}

// Loopback-only networking helpers.
import net from 'node:net'

/** A port that was free a moment ago on 127.0.0.1 (bind port 0, read it, close). */
const tryBind = (port) => new Promise((resolve) => {
  const srv = net.createServer()
  srv.unref()
  srv.on('error', () => resolve(null))
  srv.listen(port, '127.0.0.1', () => {
    const { port: bound } = /** @type {net.AddressInfo} */ (srv.address())
    srv.close(() => resolve(bound))
  })
})

/**
 * A port free to listen on. Picked below Linux's ephemeral range (32768-60999), so the local
 * port of an outgoing connection cannot take it before the gateway binds it; the kernel's
 * choice (port 0) only as a last resort.
 */
export const freePort = async () => {
  for (let i = 0; i < 50; i++) {
    const port = await tryBind(20000 + Math.floor(Math.random() * 12000))
    if (port) return port
  }
  const port = await tryBind(0)
  if (!port) throw new Error('no free port')
  return port
}

/**
 * HTTP request with a hard timeout. Returns { status, headers, body: Buffer }; network errors throw.
 * @param {string} url
 * @param {{ method?: string, body?: any, headers?: Record<string,string>, timeout?: number }} [opts]
 */
export const http = async (url, { method = 'GET', body, headers, timeout = 5000 } = {}) => {
  if (!/^http:\/\/127\.0\.0\.1[:/]/.test(url)) throw new Error(`refusing non-loopback URL ${url}`)
  const res = await fetch(url, { method, body, headers, signal: AbortSignal.timeout(timeout) })
  const buf = Buffer.from(await res.arrayBuffer())
  return { status: res.status, headers: res.headers, body: buf }
}

/** Resolves true when something accepts TCP connections on 127.0.0.1:port. */
export const canConnect = (port, timeout = 1000) => new Promise((resolve) => {
  const sock = net.connect({ host: '127.0.0.1', port })
  const done = (ok) => {
    clearTimeout(timer)
    sock.destroy()
    resolve(ok)
  }
  const timer = setTimeout(() => done(false), timeout)
  sock.once('connect', () => done(true))
  sock.once('error', () => done(false))
})

// Loopback-only networking helpers.
import net from 'node:net'

/** A port that was free a moment ago on 127.0.0.1 (bind port 0, read it, close). */
export const freePort = () => new Promise((resolve, reject) => {
  const srv = net.createServer()
  srv.unref()
  srv.on('error', reject)
  srv.listen(0, '127.0.0.1', () => {
    const { port } = /** @type {net.AddressInfo} */ (srv.address())
    srv.close(() => resolve(port))
  })
})

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

// moto_server as a local S3 stand-in (unsigned requests are accepted).
import path from 'node:path'
import { motoServer, which } from './env.js'
import { freePort, http } from './net.js'
import { ManagedProcess } from './proc.js'
import { fatal, waitFor } from './wait.js'

// moto accepts any signature but refuses some requests (GetObject) that carry no Authorization at all.
const AUTH = { authorization: 'AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0' }

export const motoAvailable = () => Boolean(which(motoServer))

export class MotoServer {
  static async start (dir) {
    const bin = which(motoServer)
    if (!bin) throw new Error(`moto_server not found at ${motoServer} (scripts/test-interop installs moto[server] into tests/interop/.venv)`)
    const port = await freePort()
    const proc = new ManagedProcess(`moto:${port}`, bin, ['-H', '127.0.0.1', '-p', String(port)], {
      cwd: dir,
      logFile: path.join(dir, `moto-${port}.log`),
      env: { ...process.env, AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test', AWS_DEFAULT_REGION: 'us-east-1' }
    })
    const m = new MotoServer(port, proc)
    try {
      await waitFor(async () => {
        if (!proc.running) throw fatal(`moto_server exited:\n${proc.tail(30)}`)
        return (await http(`${m.endpoint}/`, { timeout: 2000 })).status < 500
      }, { timeout: 60000, interval: 200, what: `moto_server on port ${port}` })
    } catch (e) {
      await proc.stop('SIGKILL')
      throw e
    }
    return m
  }

  constructor (port, proc) {
    this.port = port
    this.proc = proc
    this.endpoint = `http://127.0.0.1:${port}`
  }

  async createBucket (bucket) {
    const res = await http(`${this.endpoint}/${bucket}`, { method: 'PUT', headers: AUTH })
    if (res.status !== 200) throw new Error(`create bucket ${bucket}: HTTP ${res.status} ${res.body}`)
  }

  /** Keys (full object names) under `prefix`, via ListObjectsV2. */
  async list (bucket, prefix) {
    const keys = []
    let token = null
    for (let page = 0; page < 100; page++) {
      let url = `${this.endpoint}/${bucket}?list-type=2&prefix=${encodeURIComponent(prefix)}`
      if (token) url += `&continuation-token=${encodeURIComponent(token)}`
      const res = await http(url, { headers: AUTH })
      if (res.status !== 200) throw new Error(`list ${bucket}/${prefix}: HTTP ${res.status} ${res.body}`)
      const xml = res.body.toString('utf8')
      for (const m of xml.matchAll(/<Key>([^<]*)<\/Key>/g)) keys.push(unescapeXml(m[1]))
      const next = xml.match(/<NextContinuationToken>([^<]*)<\/NextContinuationToken>/)
      if (!/<IsTruncated>true<\/IsTruncated>/.test(xml) || !next) break
      token = unescapeXml(next[1])
    }
    return keys.sort()
  }

  async get (bucket, key) {
    const url = `${this.endpoint}/${bucket}/${key.split('/').map(encodeURIComponent).join('/')}`
    const res = await http(url, { timeout: 30000, headers: AUTH })
    if (res.status !== 200) throw new Error(`get ${bucket}/${key}: HTTP ${res.status}`)
    return new Uint8Array(res.body)
  }

  /** Test helper: writes an object (not used against the gateway). */
  async put (bucket, key, body) {
    const url = `${this.endpoint}/${bucket}/${key.split('/').map(encodeURIComponent).join('/')}`
    const res = await http(url, { method: 'PUT', body, headers: { ...AUTH, 'content-type': 'application/octet-stream' } })
    if (res.status !== 200) throw new Error(`put ${bucket}/${key}: HTTP ${res.status} ${res.body}`)
  }

  async stop () {
    await this.proc.stop('SIGTERM', 5000)
  }
}

const unescapeXml = (s) => s
  .replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&apos;/g, "'")
  .replace(/&#(\d+);/g, (_m, d) => String.fromCodePoint(Number(d)))
  .replace(/&amp;/g, '&')

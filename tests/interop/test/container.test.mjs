// The container image: built from the repository's Dockerfile with podman (or reused), run with
// the shipped plugins.toml on a 127.0.0.1 port, then /health, the image's HEALTHCHECK, a chat
// round trip and a Yjs sync against it; compose.yaml is validated when a compose tool is there.
// Knobs: INTEROP_CONTAINER_IMAGE (use this image, build nothing), INTEROP_CONTAINER_CONTEXT
// (build context, default the repository), INTEROP_BUILDER_IMAGE / INTEROP_RUNTIME_IMAGE (bases;
// default: the local bases of scripts/container-bases when this machine can make them, else the
// Dockerfile's public ones), INTEROP_BUILD_LOCK (a file: the build runs under `flock FILE`),
// INTEROP_PODMAN_RUNTIME (default runc when installed: crun fails on some cgroup setups).
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import WebSocket from 'ws'
import { keepTmp, repoDir, which } from '../lib/env.js'
import { freePort, http } from '../lib/net.js'
import { hs256 } from '../lib/tokens.js'
import { waitFor } from '../lib/wait.js'
import { connectClient, waitConverged } from '../lib/yclient.js'

const podman = which('podman')
const skip = podman ? false : 'podman not found: the container test needs it (Debian/Ubuntu: apt-get install -y podman buildah runc debootstrap)'
if (skip) process.stderr.write(`[interop] SKIPPING container tests: ${skip}\n`)

const MIN = 60000
const SECRET = 'container-secret-' + crypto.randomBytes(8).toString('hex')
const LOCAL_BUILDER = 'localhost/gateway-builder-base'
const LOCAL_RUNTIME = 'localhost/gateway-runtime-base'
const TAG = 'localhost/gateway:interop'
const runtime = process.env.INTEROP_PODMAN_RUNTIME || (which('runc') ? 'runc' : '')
// Containers here cannot raise rlimits past the host's; fixed ones are always accepted.
const RUN_OPTS = [...(runtime ? ['--runtime', runtime] : []), '--network', 'host',
  '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024']

/**
 * Runs a command to completion, its whole process group killed after `timeout` ms. Output goes to
 * `log` (a file) when given, else is kept. Resolves { code, out } (out: the last 64 KiB).
 */
const run = (cmd, args, { timeout = MIN, log, env, cwd } = {}) => new Promise((resolve) => {
  const child = spawn(cmd, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: env || process.env, cwd })
  const sink = log ? fs.createWriteStream(log, { flags: 'a' }) : null
  let out = ''
  const onData = (chunk) => {
    if (sink) sink.write(chunk)
    out = (out + chunk.toString('utf8')).slice(-65536)
  }
  child.stdout.on('data', onData)
  child.stderr.on('data', onData)
  let timedOut = false
  const timer = setTimeout(() => {
    timedOut = true
    try { process.kill(-child.pid, 'SIGKILL') } catch {}
  }, timeout)
  child.on('error', (e) => { out += `\n[spawn error] ${e.message}` })
  child.on('close', (code) => {
    clearTimeout(timer)
    if (sink) sink.end()
    resolve({ code: timedOut ? `timeout after ${timeout} ms` : code, out })
  })
})

const must = async (what, cmd, args, opts) => {
  const r = await run(cmd, args, opts)
  if (r.code !== 0) throw new Error(`${what} failed (${r.code}): ${cmd} ${args.join(' ')}\n${r.out}`)
  return r.out
}

const imageExists = async (image) => (await run(podman, ['image', 'exists', image], { timeout: 30000 })).code === 0

/** The bases to build from: env, else local ones (made if this machine can), else the Dockerfile's. */
const pickBases = async (log) => {
  const builder = process.env.INTEROP_BUILDER_IMAGE
  const runtimeBase = process.env.INTEROP_RUNTIME_IMAGE
  if (builder || runtimeBase) return { builder, runtime: runtimeBase }
  if (!(await imageExists(LOCAL_BUILDER)) || !(await imageExists(LOCAL_RUNTIME))) {
    if (!which('debootstrap') || process.getuid?.() !== 0) {
      process.stderr.write('[interop] container: no local bases and no debootstrap (or not root): building from the Dockerfile\'s public base images\n')
      return {}
    }
    await must('scripts/container-bases', path.join(repoDir, 'scripts', 'container-bases'), [], { timeout: 20 * MIN, log })
  }
  return { builder: LOCAL_BUILDER, runtime: LOCAL_RUNTIME }
}

const buildImage = async (log) => {
  const context = process.env.INTEROP_CONTAINER_CONTEXT || repoDir
  const bases = await pickBases(log)
  const args = ['build', ...RUN_OPTS, '--format', 'docker', '-t', TAG, '-f', path.join(context, 'Dockerfile')]
  if (bases.builder) args.push('--build-arg', `BUILDER_IMAGE=${bases.builder}`)
  if (bases.runtime) args.push('--build-arg', `RUNTIME_IMAGE=${bases.runtime}`)
  args.push(context)
  // Niced: the other interop files run meanwhile and must keep their timing.
  let cmd = 'nice'
  let cmdArgs = ['-n', '10', podman, ...args]
  if (process.env.INTEROP_BUILD_LOCK) {
    cmdArgs = [process.env.INTEROP_BUILD_LOCK, cmd, ...cmdArgs]
    cmd = 'flock'
  }
  const t0 = Date.now()
  await must('podman build', cmd, cmdArgs, { timeout: 45 * MIN, log })
  process.stderr.write(`[interop] container: image ${TAG} built in ${((Date.now() - t0) / 1000).toFixed(1)} s (log: ${log})\n`)
  return TAG
}

/** A chat connection that keeps every JSON frame it receives. */
const chatClient = (port, user) => new Promise((resolve, reject) => {
  const token = hs256({ sub: user, username: user, aud: 'gateway', exp: Math.floor(Date.now() / 1000) + 600 }, SECRET)
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws?token=${encodeURIComponent(token)}`, { handshakeTimeout: 10000 })
  const c = { ws, frames: [] }
  ws.on('message', (data) => { try { c.frames.push(JSON.parse(data.toString())) } catch {} })
  ws.once('open', () => resolve(c))
  ws.once('error', reject)
  ws.once('unexpected-response', (_req, res) => reject(new Error(`chat upgrade answered HTTP ${res.statusCode}`)))
})

const frameOf = (c, pred, what) => waitFor(() => c.frames.find(pred), {
  timeout: 15000,
  what: () => `${what}; frames so far: ${JSON.stringify(c.frames).slice(0, 1000)}`
})

describe('container image (podman)', { skip, timeout: 60 * MIN }, () => {
  let tmp
  let name
  let port
  let image
  let failed = false
  const clients = []

  const logs = async () => (await run(podman, ['logs', name], { timeout: 30000 })).out

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'interop-container-'))
    try {
      image = process.env.INTEROP_CONTAINER_IMAGE || await buildImage(path.join(tmp, 'build.log'))
    } catch (e) {
      failed = true
      throw e
    }
    port = await freePort()
    name = `gateway-interop-${process.pid}-${crypto.randomBytes(3).toString('hex')}`
    await must('podman run', podman, ['run', '-d', '--name', name, ...RUN_OPTS,
      '-e', `GATEWAY_LISTEN=127.0.0.1:${port}`, '-e', `GATEWAY_JWT_SECRET=${SECRET}`,
      '-e', 'GATEWAY_ADMIN_KEY=container-admin', '-e', 'GATEWAY_ABLY_KEYS=interop.key:container-ably-secret',
      '-e', 'RUST_LOG=info', image], { timeout: 2 * MIN })
    try {
      await waitFor(async () => {
        const state = await run(podman, ['inspect', '-f', '{{.State.Running}}', name], { timeout: 30000 })
        if (state.out.trim() !== 'true') throw Object.assign(new Error(`container stopped: ${state.out.trim()}`), { fatal: true })
        return (await http(`http://127.0.0.1:${port}/health`, { timeout: 2000 })).status === 200
      }, { timeout: 3 * MIN, interval: 250, what: `the container's GET /health == 200 on 127.0.0.1:${port}` })
    } catch (e) {
      failed = true
      throw new Error(`${e.message}\n--- container log ---\n${await logs()}`)
    }
  }, { timeout: 55 * MIN })

  after(async () => {
    for (const c of clients) {
      try { c.destroy ? c.destroy() : c.ws.terminate() } catch {}
    }
    if (name) {
      if (failed) process.stderr.write(`--- container ${name} log ---\n${await logs()}\n`)
      const rm = await run(podman, ['rm', '-f', '-v', '-t', '3', name], { timeout: 60000 })
      if (rm.code !== 0) process.stderr.write(`[interop] container: podman rm ${name} failed (${rm.code}): ${rm.out}\n`)
    }
    if (tmp && (failed || keepTmp)) process.stderr.write(`[interop] container: kept ${tmp}\n`)
    else if (tmp) fs.rmSync(tmp, { recursive: true, force: true })
  }, { timeout: 2 * MIN })

  const test = (title, fn, timeout = 2 * MIN) => it(title, { timeout }, async () => {
    try {
      await fn()
    } catch (e) {
      failed = true
      throw e
    }
  })

  test('/health answers 200 with JSON: every shipped plugin running, the image\'s plugins.toml', async () => {
    const res = await http(`http://127.0.0.1:${port}/health`)
    assert.equal(res.status, 200)
    assert.match(res.headers.get('content-type') || '', /application\/json/)
    const h = JSON.parse(res.body.toString('utf8'))
    assert.equal(h.status, 'ok')
    assert.equal(h.config.path, '/app/plugins.toml')
    for (const p of ['chat', 'yjs', 'ably-rooms']) assert.equal(h.plugins[p]?.state, 'running', `plugin ${p}: ${JSON.stringify(h.plugins[p])}`)
  })

  test('runs as a non-root user; the HEALTHCHECK passes', async () => {
    assert.equal((await must('podman exec id', podman, ['exec', name, 'id', '-u'], { timeout: 30000 })).trim(), '10001')
    const hc = await run(podman, ['healthcheck', 'run', name], { timeout: 60000 })
    assert.equal(hc.code, 0, `podman healthcheck run: ${hc.out}`)
  })

  test('chat: a text one client sends reaches the other', async () => {
    const alice = await chatClient(port, 'alice')
    clients.push(alice)
    await frameOf(alice, (f) => f.message_type === 'system_message', 'alice\'s welcome')
    const bob = await chatClient(port, 'bob')
    clients.push(bob)
    await frameOf(bob, (f) => f.message_type === 'system_message', 'bob\'s welcome')
    const nonce = crypto.randomBytes(6).toString('hex')
    alice.ws.send(JSON.stringify({ message_type: 'text', data: { text: 'hello from the container test', nonce } }))
    const got = await frameOf(bob, (f) => f.message_type === 'text' && f.data?.nonce === nonce, 'alice\'s text at bob')
    assert.equal(got.from_user_id, 'alice')
    assert.equal(got.data.text, 'hello from the container test')
  })

  test('yjs: two y-websocket clients converge, and the room is logged under /data', async () => {
    const gateway = { wsBase: (route) => `ws://127.0.0.1:${port}/${route}` }
    const token = (sub) => hs256({ sub, aud: 'yjs', exp: Math.floor(Date.now() / 1000) + 600 }, SECRET)
    const room = `container-${crypto.randomBytes(4).toString('hex')}`
    const c1 = await connectClient({ gateway, room, user: 'alice', token: token('alice'), label: 'doc1', registry: clients })
    const c2 = await connectClient({ gateway, room, user: 'bob', token: token('bob'), via: 'query', label: 'doc2', registry: clients })
    await c1.synced()
    await c2.synced()
    c1.map.set('from', 'alice')
    c2.doc.getText('text').insert(0, 'hello')
    await waitConverged([c1, c2])
    assert.equal(c2.map.get('from'), 'alice')
    assert.equal(c1.doc.getText('text').toString(), 'hello')
    const files = await must('podman exec ls', podman, ['exec', name, 'ls', '-A', '/data/streams'], { timeout: 30000 })
    assert.ok(files.trim().length > 0, '/data/streams should hold the stream log')
  })

  test('the image accepts compose.yaml\'s config (gateway check /app/cluster.toml)', async () => {
    const out = await must('gateway check', podman, ['run', '--rm', ...RUN_OPTS,
      '-v', `${path.join(repoDir, 'container', 'cluster.toml')}:/app/cluster.toml:ro`, image, 'check', '/app/cluster.toml'], { timeout: 2 * MIN })
    assert.match(out, /ok/i)
  })
})

// compose.yaml through whichever compose tool is installed (each validates against the schema).
const composeTools = [
  ['docker', ['compose']],
  ['podman', ['compose']],
  ['docker-compose', []]
]
const findCompose = async () => {
  for (const [bin, pre] of composeTools) {
    const p = which(bin)
    if (!p) continue
    // `docker compose` without the plugin answers some --help with docker's own usage: ask twice.
    if ((await run(p, [...pre, 'version'], { timeout: 30000 })).code !== 0) continue
    if ((await run(p, [...pre, 'config', '--help'], { timeout: 30000 })).code === 0) return [p, pre]
  }
  return null
}
const compose = await findCompose()
const composeSkip = compose ? false : 'no compose tool to validate compose.yaml: install the docker compose plugin, podman >= 4.7 with a compose provider, or docker-compose (Debian/Ubuntu: apt-get install -y docker-compose)'
if (composeSkip) process.stderr.write(`[interop] SKIPPING compose.yaml validation: ${composeSkip}\n`)

describe('compose.yaml', { skip: composeSkip }, () => {
  it('validates, with two gateways, a worker, Redis and S3', { timeout: 2 * MIN }, async () => {
    const [bin, pre] = compose
    const env = { ...process.env, GATEWAY_JWT_SECRET: 'validate-only' }
    const cfg = await must('compose config', bin, [...pre, '-f', path.join(repoDir, 'compose.yaml'), 'config'], { timeout: MIN, env, cwd: repoDir })
    for (const s of ['redis:', 's3:', 'gateway-1:', 'gateway-2:', 'worker:']) assert.ok(cfg.includes(s), `service ${s} in:\n${cfg}`)
    const noSecret = { ...process.env }
    delete noSecret.GATEWAY_JWT_SECRET
    const missing = await run(bin, [...pre, '-f', path.join(repoDir, 'compose.yaml'), 'config', '-q'], { timeout: MIN, env: noSecret, cwd: repoDir })
    assert.notEqual(missing.code, 0, 'compose.yaml must refuse to start without GATEWAY_JWT_SECRET')
    assert.match(missing.out, /GATEWAY_JWT_SECRET/)
  })
})

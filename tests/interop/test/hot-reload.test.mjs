// Hot reload of the yjs-sync plugin under live rooms: a new version of the component (same code,
// different bytes) is swapped in while clients are connected; nobody is disconnected, edits keep
// flowing, and state kept by the old version (the connection attachments) still works, e.g. the
// awareness removal when a client leaves.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, describe } from 'node:test'
import { pluginWasm } from '../lib/env.js'
import { itest, useEnv } from '../lib/fixture.js'
import { waitConverged } from '../lib/yclient.js'
import { waitFor } from '../lib/wait.js'

const uleb = (n) => {
  const out = []
  do {
    let b = n & 0x7f
    n >>>= 7
    if (n) b |= 0x80
    out.push(b)
  } while (n)
  return Buffer.from(out)
}

/** The component with a custom section appended: a different file (hash) with the same code. */
const variant = (tag) => {
  const name = Buffer.from('interop-reload')
  const body = Buffer.concat([uleb(name.length), name, Buffer.from(tag)])
  return Buffer.concat([fs.readFileSync(pluginWasm), Buffer.from([0]), uleb(body.length), body])
}

const wasmDir = fs.mkdtempSync(path.join(os.tmpdir(), 'interop-reload-wasm-'))
const wasmCopy = path.join(wasmDir, 'yjs_sync.wasm')
fs.copyFileSync(pluginWasm, wasmCopy)
after(() => fs.rmSync(wasmDir, { recursive: true, force: true }))

describe('hot reload (embedded)', () => {
  // Awareness lives only in the room's stream: a compaction between r1 setting its state and r3
  // joining (a reload under CI load takes seconds) would trim it, and y-protocols clients only
  // re-announce every 15 s. This test is about reload, so entries outlive it.
  const env = useEnv({ name: 'hot-reload', mode: 'embedded', wasm: wasmCopy, worker: { min_message_lifetime_ms: 120000 } })

  itest(env, 'a new plugin version takes over live rooms without dropping anyone', async (env) => {
    const room = env.room('reload')
    const c1 = await env.synced({ room, label: 'r1' })
    const c2 = await env.synced({ room, user: 'bob', label: 'r2' })
    c1.awareness.setLocalState({ user: 'r1' })
    c1.map.set('before', 1)
    await waitConverged([c1, c2])
    await waitFor(() => c2.awareness.getStates().get(c1.doc.clientID)?.user === 'r1', { timeout: 10000, what: 'awareness of r1 at r2' })
    const before = (await env.gw.health()).plugins.yjs

    fs.writeFileSync(wasmCopy + '.tmp', variant(`v2-${Date.now()}`))
    fs.renameSync(wasmCopy + '.tmp', wasmCopy)
    await waitFor(async () => (await env.gw.health()).plugins.yjs.generation > before.generation,
      { timeout: 30000, what: async () => `a new plugin generation: ${JSON.stringify((await env.gw.health()).plugins.yjs)}` })
    const after = (await env.gw.health()).plugins.yjs
    assert.equal(after.last_error, null, `reload error: ${after.last_error}`)
    assert.notEqual(after.version, before.version, 'the new file should be a new version')

    c1.map.set('after', 2)
    c2.map.set('bob', 3)
    await waitConverged([c1, c2])
    assert.equal(c2.map.get('after'), 2)
    assert.deepEqual([...c1.closes, ...c2.closes], [], 'no client was disconnected by the reload')

    // A newcomer is served by the new version; r1 leaving (attachment written by the old
    // version) still removes its awareness for the others.
    const c3 = await env.synced({ room, user: 'carol', label: 'r3' })
    await waitConverged([c1, c2, c3])
    await waitFor(() => c3.awareness.getStates().get(c1.doc.clientID)?.user === 'r1', { timeout: 10000, what: 'awareness of r1 at r3' })
    const r1 = c1.doc.clientID
    c1.destroy()
    await waitFor(() => !c3.awareness.getStates().has(r1) && !c2.awareness.getStates().has(r1),
      { timeout: 10000, what: 'awareness of r1 removed after it left' })
  })
})

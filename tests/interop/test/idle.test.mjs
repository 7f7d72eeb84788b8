// Scenario 8: an idle, synced y-websocket client stays connected for 40 s. y-websocket closes the
// socket after 30 s without an inbound message; it relies on its own 15 s awareness renewal being
// echoed back. Both modes run at the same time (this file is mostly waiting).
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { InteropEnv, MODES } from '../lib/fixture.js'
import { startTimeoutMs } from '../lib/env.js'
import { sleep } from '../lib/wait.js'

const IDLE_MS = 40000

test('idle clients stay connected for 40 s (embedded and redis)', { timeout: IDLE_MS + startTimeoutMs + 90000 }, async () => {
  const envs = []
  try {
    const created = await Promise.allSettled(MODES.map((mode) => InteropEnv.create({ name: 'idle', mode })))
    for (const r of created) if (r.status === 'fulfilled') envs.push(r.value)
    const failed = created.find((r) => r.status === 'rejected')
    if (failed) throw failed.reason

    const clients = []
    for (const env of envs) {
      const room = env.room('idle')
      const c = await env.synced({ room, label: `idle-${env.mode}` })
      c.map.set('hello', env.mode)
      clients.push({ env, c, ws: c.provider.ws })
    }
    const deadline = Date.now() + IDLE_MS
    const drops = []
    while (Date.now() < deadline) {
      await sleep(1000)
      for (const { env, c, ws } of clients) {
        if (!c.provider.wsconnected || c.provider.ws !== ws) {
          drops.push(`${env.mode}: disconnected at +${IDLE_MS - (deadline - Date.now())} ms (closes ${JSON.stringify(c.closes)})`)
        }
      }
      if (drops.length) break
    }
    for (const { env, c, ws } of clients) {
      try {
        assert.deepEqual(drops, [], 'idle client dropped')
        assert.ok(c.provider.wsconnected, `${env.mode}: provider.wsconnected`)
        assert.equal(c.provider.ws, ws, `${env.mode}: the provider reconnected`)
        assert.deepEqual(c.closes, [], `${env.mode}: connection-close fired`)
        assert.ok(c.provider.synced, `${env.mode}: still synced`)
      } catch (e) {
        env.failed = true
        env.dumpLogs(`idle test failed: ${e.message}`)
        throw e
      }
    }
  } finally {
    await Promise.all(envs.map((e) => e.cleanup()))
  }
})

// A crashed Redis (SIGKILL, then an empty server on the same port) heals without restarting the
// gateways: connected clients keep converging across instances, and new y-websocket clients sync on
// both gateways within 15 s of Redis answering again; compaction resumes too.
import assert from 'node:assert/strict'
import { describe } from 'node:test'
import { itest, useEnv } from '../lib/fixture.js'
import { waitConverged } from '../lib/yclient.js'

describe('redis crash and restart', () => {
  const env = useEnv({ name: 'redis-restart', mode: 'redis', gateways: 2 })

  itest(env, 'two gateways recover by themselves', async (env) => {
    const [g1, g2] = env.gateways
    const room = env.room('restart')
    const c1 = await env.synced({ room, gateway: g1, label: 'kept-gw1' })
    const c2 = await env.synced({ room, gateway: g2, user: 'bob', label: 'kept-gw2' })
    c1.map.set('before', 1)
    await waitConverged([c1, c2])

    await env.redis.crashAndRestart({ downMs: 2000 })
    env.r = await env.redis.shared()
    const back = Date.now()

    // New clients on both gateways: each may be refused while the gateway reconnects; y-websocket
    // retries by itself. Both must be synced within 15 s of Redis coming back.
    const fresh = env.room('after-restart')
    const [d1, d2] = await Promise.all([
      env.synced({ room: fresh, gateway: g1, label: 'new-gw1' }, 15000),
      env.synced({ room: fresh, gateway: g2, user: 'carol', label: 'new-gw2' }, 15000)
    ])
    const healedMs = Date.now() - back
    assert.ok(healedMs < 15000, `new clients synced ${healedMs} ms after redis came back`)
    d1.map.set('x', 'from-gw1')
    d2.doc.getText('text').insert(0, 'from-gw2')
    await waitConverged([d1, d2])
    assert.equal(d2.map.get('x'), 'from-gw1')

    // The clients that lived through the outage are served again too: their edits cross gateways.
    c1.map.set('after', 2)
    c2.map.set('after-bob', 3)
    await waitConverged([c1, c2], { timeout: 20000 })
    assert.equal(c2.map.get('after'), 2)
    assert.equal(c1.map.get('before'), 1)

    // The compaction workers (one in each gateway) work again: the new room is persisted, its stream
    // trimmed and deleted, and a newcomer loads it from storage.
    d1.destroy()
    d2.destroy()
    await env.waitCompacted(fresh, 30000)
    assert.ok((await env.listObjects(fresh)).length >= 1, 'no stored object after the restart')
    const d3 = await env.synced({ room: fresh, gateway: g2, user: 'erin', label: 'stored-gw2' }, 15000)
    assert.equal(d3.map.get('x'), 'from-gw1')
  }, { timeout: 120000 })
})

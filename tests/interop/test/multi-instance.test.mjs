// Scenario 9: two gateway instances on one Redis and one fs storage dir.
import assert from 'node:assert/strict'
import { describe } from 'node:test'
import { itest, useEnv } from '../lib/fixture.js'
import { waitConverged } from '../lib/yclient.js'
import { waitFor } from '../lib/wait.js'

describe('two gateways on one redis', () => {
  const env = useEnv({ name: 'multi', mode: 'redis', gateways: 2 })

  itest(env, 'a client on each gateway converges, both directions', async (env) => {
    const [g1, g2] = env.gateways
    assert.notEqual(g1.port, g2.port)
    const room = env.room('multi')
    const c1 = await env.synced({ room, gateway: g1, label: 'on-gw1' })
    const c2 = await env.synced({ room, gateway: g2, user: 'bob', label: 'on-gw2' })
    c1.map.set('from1', 1)
    await waitConverged([c1, c2])
    assert.equal(c2.map.get('from1'), 1)
    c2.map.set('from2', 2)
    c2.doc.getText('text').insert(0, 'gw2')
    await waitConverged([c1, c2])
    assert.equal(c1.map.get('from2'), 2)
    // Awareness crosses instances too.
    c2.awareness.setLocalState({ user: 'on-gw2' })
    await waitFor(() => c1.awareness.getStates().get(c2.doc.clientID)?.user === 'on-gw2', {
      timeout: 10000,
      what: () => `gw1 client to see gw2 client's awareness: ${JSON.stringify([...c1.awareness.getStates()])}`
    })
    // Late joiners on either instance.
    const c3 = await env.synced({ room, gateway: g2, user: 'carol', label: 'late-gw2' })
    const c4 = await env.synced({ room, gateway: g1, user: 'dave', label: 'late-gw1' })
    await waitConverged([c1, c2, c3, c4])
  })

  itest(env, 'after compaction by either worker, both instances serve the stored state', async (env) => {
    const [g1, g2] = env.gateways
    const room = env.room('multi-compact')
    const c1 = await env.synced({ room, gateway: g1, label: 'writer-gw1' })
    c1.map.set('k', 'stored')
    const c2 = await env.synced({ room, gateway: g2, user: 'bob', label: 'reader-gw2' })
    await waitConverged([c1, c2])
    c1.destroy()
    c2.destroy()
    await env.waitCompacted(room)
    // Two workers may both compact a task (y-redis tolerates duplicate objects); at least one exists.
    const names = await env.listObjects(room)
    assert.ok(names.length >= 1, `no stored object for ${room}`)
    const c3 = await env.synced({ room, gateway: g2, user: 'carol', label: 'fresh-gw2' })
    const c4 = await env.synced({ room, gateway: g1, user: 'dave', label: 'fresh-gw1' })
    await waitFor(() => c3.map.get('k') === 'stored' && c4.map.get('k') === 'stored', { timeout: 10000, what: 'fresh clients to load the stored state' })
    await waitConverged([c3, c4])
  })
})

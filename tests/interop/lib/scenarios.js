// Scenarios shared by several test files.
import assert from 'node:assert/strict'
import { waitConverged } from './yclient.js'
import { waitFor } from './wait.js'

/**
 * y-redis ws.tests `testSyncAndCleanup`, restated: sync, late joiner, compaction into exactly one
 * stored object, sync from storage, a second edit replacing the object. The env's gateway must be
 * dedicated to this room in embedded mode (compaction is observed through /health).
 * @param {import('./fixture.js').InteropEnv} env
 */
export const compactionScenario = async (env, room = env.room('compact')) => {
  const c1 = await env.synced({ room, user: 'alice', label: 'doc1' })
  const c2 = await env.synced({ room, user: 'bob', label: 'doc2', via: 'query' })
  c1.map.set('a', 1)
  await waitConverged([c1, c2])
  assert.equal(c2.map.get('a'), 1)

  // The room stream exists before compaction (y-redis asserts this too).
  assert.ok(await env.streamExists(room), `room stream should exist after an edit: ${JSON.stringify(await env.streamState(room))}`)
  const c3 = await env.synced({ room, user: 'carol', label: 'doc3' })
  await waitConverged([c1, c3])

  // Compaction: stream gone, worker queue empty, exactly one stored object with the content.
  await env.waitCompacted(room)
  const first = await env.singleObject(room)
  assert.equal(first.doc.getMap('map').get('a'), 1, `stored object ${first.name} content: ${JSON.stringify(first.doc.getMap('map').toJSON())}`)

  // A new client syncs from storage alone (the stream is gone).
  const c4 = await env.synced({ room, user: 'dave', label: 'doc4' })
  await waitConverged([c1, c4])

  // A second edit: converges, and after compaction there is still exactly one (new) object.
  c1.map.set('a', 2)
  await waitConverged([c1, c2, c3, c4])
  assert.equal(c2.map.get('a'), 2)
  // Disconnect everyone so that no awareness renewal (every 15 s) re-creates the stream while we wait.
  for (const c of [c1, c2, c3, c4]) c.destroy()
  await env.waitCompacted(room)
  // Old references are deleted after the new object is written; poll briefly for the delete.
  await waitFor(async () => (await env.listObjects(room)).length === 1, {
    timeout: 5000,
    what: async () => `exactly one object for ${room}: ${JSON.stringify(await env.listObjects(room))}`
  })
  const second = await env.singleObject(room)
  assert.notEqual(second.name, first.name, 'the second compaction must write a new object (and delete the old one)')
  assert.equal(second.doc.getMap('map').get('a'), 2, `stored object ${second.name} content: ${JSON.stringify(second.doc.getMap('map').toJSON())}`)

  const c5 = await env.synced({ room, user: 'erin', label: 'doc5' })
  await waitFor(() => c5.map.get('a') === 2, { timeout: 10000, what: () => `doc5 a == 2 (got ${c5.map.get('a')})` })
  // Nobody else is connected: what doc5 got is exactly the stored state.
  await waitConverged([c5.doc, second.doc], { timeout: 5000 })
  return { room, first, second }
}

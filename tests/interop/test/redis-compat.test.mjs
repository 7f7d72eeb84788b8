// Scenario 11: what we keep in Redis is readable, and writable, without any y-redis code:
// plain node-redis v4 with returnBuffers, lib0 encoding, and the y-redis addMessage Lua restated.
import assert from 'node:assert/strict'
import { describe } from 'node:test'
import * as decoding from 'lib0/decoding'
import * as Y from 'yjs'
import { itest, useEnv } from '../lib/fixture.js'
import { parseAwarenessUpdate, syncUpdateFrame, hex } from '../lib/frames.js'
import { isClusterKey, rawBuffers, scanKeys } from '../lib/redis.js'
import { waitConverged } from '../lib/yclient.js'
import { waitFor } from '../lib/wait.js'

const KEY_RE = /^y:(worker|room:[^:]+:index)$/

/** The y-redis addMessage script (restated): enqueue a compaction task for a new stream, then XADD. */
const ADD_MESSAGE = `
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('XADD', 'y:worker', '*', 'compact', KEYS[1])
  redis.call('XREADGROUP', 'GROUP', 'y:worker', 'pending', 'STREAMS', 'y:worker', '>')
end
redis.call('XADD', KEYS[1], '*', 'm', ARGV[1])
`

const ensureGroup = async (r) => {
  try {
    await r.sendCommand(['XGROUP', 'CREATE', 'y:worker', 'y:worker', '0', 'MKSTREAM'])
  } catch (e) {
    if (!/BUSYGROUP/.test(e.message)) throw e
  }
}

/** Writes `update` (v1) into the room stream the way a y-redis server does. */
const yredisAddUpdate = async (r, key, update) => {
  await ensureGroup(r)
  await r.eval(ADD_MESSAGE, { keys: [key], arguments: [Buffer.from(syncUpdateFrame(update))] })
}

/** XRANGE key - + with binary values: [{ id, fields: [[name, Buffer], ...] }] */
const xrange = async (r, key) => {
  const reply = await rawBuffers(r, ['XRANGE', key, '-', '+'])
  return reply.map(([id, flat]) => {
    const fields = []
    for (let i = 0; i < flat.length; i += 2) fields.push([flat[i].toString(), flat[i + 1]])
    return { id: id.toString(), fields }
  })
}

describe('redis compatibility (no y-redis code)', () => {
  // A longer lifetime than the suite's 500/800 ms: the first test reads the live stream after
  // two clients converged, which on a loaded 2-core machine can take longer than 1.3 s.
  const env = useEnv({ name: 'redis-compat', mode: 'redis', worker: { task_debounce_ms: 1000, min_message_lifetime_ms: 4000 } })

  itest(env, 'key names, entry fields and m framing', async (env) => {
    const r = env.r
    const room = env.room('compat')
    const key = env.streamKey(room)
    assert.equal(key, `y:room:${encodeURIComponent(room)}:index`)
    const c1 = await env.synced({ room, label: 'c1' })
    const c2 = await env.synced({ room, user: 'bob', label: 'c2' })
    c1.awareness.setLocalState({ user: 'compat' })
    c1.map.set('x', 1)
    c1.doc.getText('text').insert(0, 'abc')
    c1.doc.getText('text').delete(1, 1) // a delete travels in the same framing
    await waitConverged([c1, c2])
    await waitFor(() => c2.awareness.getStates().get(c1.doc.clientID)?.user === 'compat', { timeout: 10000, what: 'awareness' })

    // Read everything at once (the stream is trimmed ~5 s after the last entry).
    const keys = await scanKeys(r, '*')
    const entries = await xrange(r, key)
    const tasks = await xrange(r, 'y:worker')
    const groups = await r.sendCommand(['XINFO', 'GROUPS', 'y:worker'])

    assert.ok(keys.includes(key), `stream key ${key} missing; keys: ${JSON.stringify(keys)}`)
    assert.ok(keys.includes('y:worker'), `y:worker missing; keys: ${JSON.stringify(keys)}`)
    assert.deepEqual(keys.filter((k) => !KEY_RE.test(k) && !isClusterKey(k)), [], 'keys other than y-redis ones (and the cluster bus\'s own)')
    assert.equal(await r.type(key), 'stream')
    assert.equal(await r.type('y:worker'), 'stream')
    const groupNames = groups.map((g) => g[g.indexOf('name') + 1])
    assert.ok(groupNames.includes('y:worker'), `consumer group y:worker missing: ${JSON.stringify(groups)}`)

    assert.ok(entries.length >= 2, `expected sync and awareness entries, got ${entries.length}`)
    const rebuilt = new Y.Doc()
    let syncs = 0
    let awareness = 0
    for (const { id, fields } of entries) {
      assert.deepEqual(fields.map((f) => f[0]), ['m'], `entry ${id} fields`)
      const m = new Uint8Array(fields[0][1])
      const dec = decoding.createDecoder(m)
      const t = decoding.readVarUint(dec)
      if (t === 0) {
        assert.equal(decoding.readVarUint(dec), 2, `entry ${id}: sync entries must be updates (step 2 rewritten to 2): ${hex(m)}`)
        const update = decoding.readVarUint8Array(dec)
        assert.ok(!decoding.hasContent(dec), `entry ${id}: trailing bytes after the update`)
        Y.applyUpdate(rebuilt, update) // v1
        syncs++
      } else if (t === 1) {
        const payload = decoding.readVarUint8Array(dec)
        assert.ok(!decoding.hasContent(dec), `entry ${id}: trailing bytes after the awareness update`)
        parseAwarenessUpdate(payload)
        awareness++
      } else {
        assert.fail(`entry ${id}: m starts with message type ${t}: ${hex(m)}`)
      }
    }
    assert.ok(syncs >= 1 && awareness >= 1, `sync entries ${syncs}, awareness entries ${awareness}`)
    assert.equal(rebuilt.getMap('map').get('x'), 1, 'the stream entries hold the edit (v1 updates)')
    assert.equal(rebuilt.getText('text').toString(), 'ac', 'the stream entries hold the delete')

    for (const { id, fields } of tasks) {
      assert.equal(fields.length, 1, `worker task ${id} fields: ${JSON.stringify(fields.map((f) => f[0]))}`)
      assert.equal(fields[0][0], 'compact', `worker task ${id} field name`)
      assert.match(fields[0][1].toString(), /^y:room:[^:]+:index$/, `worker task ${id} value`)
    }
    assert.ok(tasks.some(({ fields }) => fields[0][1].toString() === key), `no compaction task for ${key}: ${JSON.stringify(tasks.map((t) => t.fields[0][1].toString()))}`)
  })

  itest(env, 'entries written the y-redis way reach clients and are compacted by our worker', async (env) => {
    const r = env.r
    const room = env.room('foreign')
    const key = env.streamKey(room)
    const c1 = await env.synced({ room, label: 'listener' })
    const foreign = new Y.Doc()
    foreign.getMap('map').set('foreign', 'yes')
    foreign.getArray('items').push(['f1'])
    await yredisAddUpdate(r, key, Y.encodeStateAsUpdate(foreign))
    await waitFor(() => c1.map.get('foreign') === 'yes', { timeout: 10000, what: () => `listener to get the foreign update: map=${JSON.stringify(c1.map.toJSON())}` })
    await waitConverged([c1.doc, foreign])
    c1.destroy()
    await env.waitCompacted(room)
    const { doc } = await env.singleObject(room)
    assert.equal(doc.getMap('map').get('foreign'), 'yes', 'stored object holds the foreign update')
    assert.deepEqual(doc.getArray('items').toArray(), ['f1'])
  })

  itest(env, 'a room created only by a y-redis writer is compacted and then served from storage', async (env) => {
    const r = env.r
    const room = env.room('foreign-only')
    const key = env.streamKey(room)
    const foreign = new Y.Doc()
    foreign.getMap('map').set('origin', 'y-redis-writer')
    await yredisAddUpdate(r, key, Y.encodeStateAsUpdate(foreign))
    const sv = Y.encodeStateVector(foreign)
    foreign.getMap('map').set('second', 2)
    await yredisAddUpdate(r, key, Y.encodeStateAsUpdate(foreign, sv)) // a diff, like a live edit
    assert.equal(await r.exists(key), 1)
    await env.waitCompacted(room)
    const { doc } = await env.singleObject(room)
    assert.deepEqual(doc.getMap('map').toJSON(), { origin: 'y-redis-writer', second: 2 })
    const c = await env.synced({ room, label: 'late' })
    await waitConverged([c.doc, foreign])
  })
})

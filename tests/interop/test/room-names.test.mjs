// Scenario 12: the room is the raw (undecoded) path segment and is escaped with encodeURIComponent,
// in the Redis stream key (Redis mode) and in the storage object names (both modes).
import assert from 'node:assert/strict'
import { describe } from 'node:test'
import { itest, MODES, objectPrefix, rawSegment, useEnv } from '../lib/fixture.js'
import { docFromV2, waitConverged } from '../lib/yclient.js'
import { waitFor } from '../lib/wait.js'

// [room handed to y-websocket, raw segment on the wire, y-redis v0.1.6 stream key]
const CASES = [
  ['a%20b', 'a%20b', 'y:room:a%2520b:index'],
  ["x:y!~*'()", "x:y!~*'()", "y:room:x%3Ay!~*'():index"],
  ['semi;colon,comma@at$dollar&amp=eq+plus', 'semi;colon,comma@at$dollar&amp=eq+plus',
    'y:room:semi%3Bcolon%2Ccomma%40at%24dollar%26amp%3Deq%2Bplus:index'],
  // Not ASCII: the URL serialiser sends UTF-8 percent-escapes, and those are escaped again.
  ['ünï', '%C3%BCn%C3%AF', 'y:room:%25C3%25BCn%25C3%25AF:index']
]

for (const mode of MODES) {
  describe(`room names (${mode})`, () => {
    const env = useEnv({ name: 'rooms', mode })

    for (const [room, raw, key] of CASES) {
      itest(env, `room ${JSON.stringify(room)}`, async (env) => {
        assert.equal(rawSegment(room), raw, 'harness: raw segment')
        assert.equal(env.streamKey(room), key, 'harness: key formula')
        const c1 = await env.synced({ room, label: 'n1' })
        const c2 = await env.synced({ room, user: 'bob', label: 'n2' })
        c1.map.set('room', room)
        await waitConverged([c1, c2])
        // Spelled the decoded way, the room would be a different key / object prefix.
        const decoded = decodeURIComponent(raw)
        const wrongKey = `y:room:${encodeURIComponent(decoded)}:index`
        const wrongDir = encodeURIComponent(decoded)
        if (mode === 'redis') {
          const keys = await env.r.keys('y:room:*')
          assert.ok(keys.includes(key), `stream ${key} should exist; keys: ${JSON.stringify(keys)}`)
          if (wrongKey !== key) assert.ok(!keys.includes(wrongKey), `stream key built from the decoded room: ${JSON.stringify(keys)}`)
        }
        // The worker persists about every debounce while the room changes: the object appears under enc(raw)/index/.
        const prefix = objectPrefix(room)
        assert.equal(prefix, `${encodeURIComponent(raw)}/index/`)
        await waitFor(async () => (await env.listObjects(room)).length >= 1, {
          timeout: 15000,
          what: () => `an object under ${prefix}; storage root: ${JSON.stringify(env.listRoot())}`
        })
        if (wrongDir !== encodeURIComponent(raw)) {
          assert.ok(!env.listRoot().includes(wrongDir), `room stored under the decoded name: ${JSON.stringify(env.listRoot())}`)
        }
        const names = await env.listObjects(room)
        const doc = docFromV2(await env.readObject(names[names.length - 1]))
        assert.equal(doc.getMap('map').get('room'), room)
        // A third client with the same spelling is in the same room.
        const c3 = await env.synced({ room, user: 'carol', label: 'n3' })
        await waitConverged([c1, c3])
      })
    }
  })
}

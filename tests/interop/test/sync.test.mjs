// Scenarios 1, 2, 4, 5 (+ handshake details) in embedded and Redis mode.
import assert from 'node:assert/strict'
import { describe } from 'node:test'
import * as Y from 'yjs'
import { itest, MODES, useEnv } from '../lib/fixture.js'
import { parseFrame, SYNC_STEP1, SYNC_STEP2, SYNC_UPDATE, syncStep1Frame, syncUpdateFrame, hex } from '../lib/frames.js'
import { rawClose, rawConnect, waitConverged } from '../lib/yclient.js'
import { waitFor } from '../lib/wait.js'

for (const mode of MODES) {
  describe(`sync (${mode})`, () => {
    const env = useEnv({ name: 'sync', mode })

    itest(env, 'two clients converge, both directions', async (env) => {
      const room = env.room('converge')
      const c1 = await env.synced({ room, user: 'alice', label: 'doc1' })
      const c2 = await env.synced({ room, user: 'bob', label: 'doc2', via: 'query' })
      c1.map.set('a', 1)
      await waitConverged([c1, c2])
      assert.equal(c2.map.get('a'), 1)
      c2.map.set('b', 'two')
      c2.doc.getText('text').insert(0, 'hello')
      await waitConverged([c1, c2])
      assert.equal(c1.map.get('b'), 'two')
      assert.equal(c1.doc.getText('text').toString(), 'hello')
    })

    itest(env, 'late joiner syncs from the stream', async (env) => {
      const room = env.room('late')
      const c1 = await env.synced({ room, label: 'doc1' })
      const c2 = await env.synced({ room, user: 'bob', label: 'doc2' })
      c1.map.set('a', 1)
      c1.doc.getArray('items').push(['x', 'y'])
      await waitConverged([c1, c2])
      if (mode === 'redis') {
        assert.equal(await env.r.exists(env.streamKey(room)), 1, 'room stream should exist right after the edit')
      }
      const c3 = await env.synced({ room, user: 'carol', label: 'doc3' })
      await waitConverged([c1, c2, c3])
      assert.deepEqual(c3.doc.getArray('items').toArray(), ['x', 'y'])
    })

    itest(env, 'offline edits are uploaded on connect', async (env) => {
      const room = env.room('offline')
      const c1 = await env.synced({ room, label: 'online' })
      c1.map.set('before', 'online')
      const doc = new Y.Doc()
      doc.getMap('map').set('offline', 'yes')
      doc.getArray('items').push(['o1', 'o2'])
      // The client only uploads these when the server sends its SyncStep1 (it answers with step 2).
      const c2 = await env.client({ room, user: 'bob', label: 'offline-doc', doc })
      await c2.synced()
      await waitConverged([c1, c2])
      assert.equal(c1.map.get('offline'), 'yes')
      assert.deepEqual(c1.doc.getArray('items').toArray(), ['o1', 'o2'])
      assert.equal(c2.map.get('before'), 'online')
      // And a third client sees it too (it was stored in the stream, not only forwarded).
      const c3 = await env.synced({ room, user: 'carol', label: 'third' })
      await waitConverged([c1, c3])
    })

    itest(env, 'awareness propagates and is removed when the client leaves', async (env) => {
      const room = env.room('awareness')
      const c1 = await env.synced({ room, label: 'aw1' })
      const c2 = await env.synced({ room, user: 'bob', label: 'aw2' })
      c1.awareness.setLocalState({ user: 'x' })
      const id1 = c1.doc.clientID
      await waitFor(() => c2.awareness.getStates().get(id1)?.user === 'x', {
        timeout: 10000,
        what: () => `aw2 to see aw1's state: ${JSON.stringify([...c2.awareness.getStates()])}`
      })
      c1.destroy() // y-websocket sends a null state for itself, then closes
      await waitFor(() => !c2.awareness.getStates().has(id1), {
        timeout: 10000,
        what: () => `aw2 to drop aw1's state: ${JSON.stringify([...c2.awareness.getStates()])}`
      })
    })

    itest(env, 'awareness of a client that vanishes without a goodbye is removed by the server', async (env) => {
      const room = env.room('awareness-drop')
      const c1 = await env.synced({ room, label: 'aw1' })
      const c2 = await env.synced({ room, user: 'bob', label: 'aw2' })
      c1.awareness.setLocalState({ user: 'vanishing' })
      const id1 = c1.doc.clientID
      await waitFor(() => c2.awareness.getStates().get(id1)?.user === 'vanishing', {
        timeout: 10000,
        what: () => `aw2 to see aw1: ${JSON.stringify([...c2.awareness.getStates()])}`
      })
      // Drop the TCP connection: no awareness-null from the client, no close frame, no reconnect.
      const ws = c1.provider.ws
      c1.provider.shouldConnect = false
      ws.terminate()
      // y-websocket would time the state out only after 30 s; the server's removal must come sooner.
      await waitFor(() => !c2.awareness.getStates().has(id1), {
        timeout: 12000,
        what: () => `aw2 to drop the vanished client's state: ${JSON.stringify([...c2.awareness.getStates()])}`
      })
      c1.destroy()
    })

    itest(env, 'handshake: step1 + full step2, one message per frame, subprotocol echoed, sender gets its echo', async (env) => {
      const room = env.room('handshake')
      const c1 = await env.synced({ room, label: 'writer' })
      const c2 = await env.synced({ room, user: 'bob', label: 'observer' })
      c1.map.set('k', 'v')
      await waitFor(() => c2.map.get('k') === 'v', { timeout: 10000, what: 'observer to see k' })
      const token = await env.auth.token('raw')
      const conn = await rawConnect(`${env.gw.wsBase()}/${room}`, { protocols: ['yauth-' + token] })
      try {
        assert.equal(conn.ws.protocol, 'yauth-' + token, 'the accepted subprotocol must be echoed')
        // Like y-websocket, send our step 1 (empty state vector).
        conn.ws.send(syncStep1Frame(Y.encodeStateVector(new Y.Doc())))
        await waitFor(() => {
          const subs = conn.frames.filter((f) => f instanceof Uint8Array && f[0] === 0).map((f) => parseFrame(f).sub)
          return subs.includes(SYNC_STEP1) && subs.includes(SYNC_STEP2)
        }, { timeout: 10000, what: () => `server SyncStep1 and SyncStep2; got ${conn.frames.map((f) => (f instanceof Uint8Array ? hex(f, 8) : 'text')).join(', ')}` })
        for (const f of conn.frames) {
          assert.ok(f instanceof Uint8Array, 'only binary frames are expected')
          parseFrame(f) // throws on trailing bytes: y-websocket reads one message per frame
        }
        // The step 2 carries the room's state.
        const doc = new Y.Doc()
        for (const f of conn.frames) {
          const m = parseFrame(f)
          if (m.type === 'sync' && m.sub !== SYNC_STEP1) Y.applyUpdate(doc, m.payload)
        }
        assert.equal(doc.getMap('map').get('k'), 'v', 'state from the server greeting')
        // An update from the raw connection reaches the provider client and is echoed to the sender.
        const foreign = new Y.Doc()
        foreign.getMap('map').set('raw', 'yes')
        const upd = Y.encodeStateAsUpdate(foreign)
        const before = conn.frames.length
        conn.ws.send(syncUpdateFrame(upd))
        await waitFor(() => c1.map.get('raw') === 'yes', { timeout: 10000, what: 'writer to get the raw update' })
        await waitFor(() => conn.frames.slice(before).some((f) => {
          const m = parseFrame(f)
          if (m.type !== 'sync' || m.sub !== SYNC_UPDATE) return false
          const d = new Y.Doc()
          Y.applyUpdate(d, m.payload)
          return d.getMap('map').get('raw') === 'yes'
        }), { timeout: 10000, what: 'the sender to receive its own update back (y-redis echoes through the stream)' })
        for (const f of conn.frames) parseFrame(f)
      } finally {
        await rawClose(conn)
      }
    })

    itest(env, 'std route (HS256, exp in seconds) syncs', async (env) => {
      const room = env.room('std')
      const c1 = await env.synced({ room, route: 'std', user: 'std-alice', label: 'std1' })
      const c2 = await env.synced({ room, route: 'std', user: 'std-bob', label: 'std2' })
      c1.map.set('std', 1)
      await waitConverged([c1, c2])
      c2.map.set('back', 2)
      await waitConverged([c1, c2])
      assert.equal(c1.map.get('back'), 2)
    })
  })
}

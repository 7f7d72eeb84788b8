// The `ably` client's continuity features against ably-rooms: resume after a dropped socket
// (same connectionId, presence kept, nothing missed), the delayed presence leave of a client
// that does not come back, `rewind`, and the REST API from `Ably.Rest` (publish reaching
// realtime subscribers, history, presence, time); on one embedded gateway and across two
// gateways on one Redis.
import assert from 'node:assert/strict'
import crypto from 'node:crypto'
import { after, describe } from 'node:test'
import { Ably, ablyToml, atLeast, closeAll, collect, connect, KEY, reachState, startProxy } from '../lib/ably.js'
import { itest, useEnv } from '../lib/fixture.js'
import { sleep, waitFor } from '../lib/wait.js'

const unique = (p) => `${p}-${crypto.randomBytes(4).toString('hex')}`

const rest = (gw, extra = {}) => new Ably.Rest({
  key: KEY, endpoint: '127.0.0.1', port: gw.port, tls: false, fallbackHosts: [], logLevel: 0, ...extra
})

for (const mode of ['embedded', 'redis']) {
  describe(`ably continuity and REST (${mode})`, () => {
    const getEnv = useEnv({ name: `ably-history-${mode}`, mode, gateways: mode === 'redis' ? 2 : 1, extraToml: ablyToml() })
    const proxies = []
    after(async () => {
      await closeAll()
      await Promise.all(proxies.map((p) => p.close()))
    })
    const second = (env) => env.gateways[env.gateways.length - 1]

    for (const binary of [true, false]) {
    itest(getEnv, `a dropped socket resumes (${binary ? 'msgpack' : 'json'}): same connectionId, presence kept, every message once`, async (env) => {
      const name = unique('resume')
      const proxy = await startProxy(env.gateways[0].port)
      proxies.push(proxy)
      const { client: alice } = await connect(env.gateways[0], {
        clientId: 'alice', port: proxy.port, disconnectedRetryTimeout: 300, useBinaryProtocol: binary
      })
      const { client: bob } = await connect(second(env), { clientId: 'bob' })
      const got = await collect(alice.channels.get(name))
      await alice.channels.get(name).presence.enter('here')
      const seen = []
      await bob.channels.get(name).presence.subscribe((p) => seen.push(`${p.action}:${p.clientId}`))
      await waitFor(async () => (await bob.channels.get(name).presence.get()).length === 1, { what: 'alice present at bob' })
      const firstId = alice.connection.id
      const pub = bob.channels.get(name)
      await pub.publish('n', '0')
      await atLeast(got, 1)
      proxy.cut()
      await reachState(alice, ['disconnected', 'connecting'])
      for (let i = 1; i <= 10; i++) await pub.publish('n', String(i))
      await sleep(500)
      proxy.restore()
      await reachState(alice, ['connected'])
      for (let i = 11; i <= 15; i++) await pub.publish('n', String(i))
      await waitFor(() => got.length >= 16, { what: () => `16 messages, have ${JSON.stringify(got.map((m) => m.data))}` })
      await sleep(300)
      assert.equal(alice.connection.id, firstId, 'the connection was resumed')
      assert.deepEqual(got.map((m) => m.data), [...Array(16).keys()].map(String), 'every message once, in order')
      const members = await bob.channels.get(name).presence.get()
      assert.deepEqual(members.map((m) => m.clientId), ['alice'])
      assert.ok(!seen.includes('leave:alice'), `no leave was announced: ${seen}`)
      // Alice can still publish and is still herself.
      const bobGot = await collect(bob.channels.get(name), 'after')
      await alice.channels.get(name).publish('after', 'resumed')
      await atLeast(bobGot, 1)
      assert.equal(bobGot[0].connectionId, firstId)
    }, { timeout: 45000 })
    }

    itest(getEnv, 'a client that does not come back leaves presence after about 15 s; CLOSE leaves at once', async (env) => {
      const name = unique('linger')
      const proxy = await startProxy(env.gateways[0].port)
      proxies.push(proxy)
      const { client: gone } = await connect(env.gateways[0], { clientId: 'gone', port: proxy.port })
      const { client: closer } = await connect(second(env), { clientId: 'closer' })
      const { client: watcher } = await connect(second(env), { clientId: 'watcher' })
      await gone.channels.get(name).presence.enter()
      await closer.channels.get(name).presence.enter()
      const left = {}
      await watcher.channels.get(name).presence.subscribe('leave', (p) => { left[p.clientId] = Date.now() })
      await waitFor(async () => (await watcher.channels.get(name).presence.get()).length === 2, { what: 'two members' })
      const cutAt = Date.now()
      proxy.cut()
      gone.close() // it can never reach the gateway again
      closer.close()
      await waitFor(() => left.closer, { timeout: 5000, what: 'closer left at once' })
      assert.ok(left.closer - cutAt < 5000)
      await sleep(8000)
      assert.equal(left.gone, undefined, 'not yet: the member lingers')
      await waitFor(() => left.gone, { timeout: 20000, what: 'gone left after its linger' })
      const waited = left.gone - cutAt
      assert.ok(waited >= 14000 && waited < 30000, `left after ${waited} ms`)
    }, { timeout: 60000 })

    itest(getEnv, 'rewind replays the last messages to a new subscriber', async (env) => {
      const name = unique('rewind')
      const { client: a } = await connect(env.gateways[0])
      for (let i = 0; i < 5; i++) await a.channels.get(name).publish('n', String(i))
      const { client: b } = await connect(second(env))
      const got = await collect(b.channels.get(name, { params: { rewind: '3' } }))
      await atLeast(got, 3)
      await sleep(200)
      assert.deepEqual(got.map((m) => m.data), ['2', '3', '4'])
      const { client: c } = await connect(second(env), { useBinaryProtocol: true })
      const recent = await collect(c.channels.get(name, { params: { rewind: '1m' } }))
      await atLeast(recent, 5)
      assert.deepEqual(recent.map((m) => m.data), ['0', '1', '2', '3', '4'])
    })

    itest(getEnv, 'REST: Ably.Rest publishes to realtime subscribers, reads history, presence and time', async (env) => {
      const name = unique('rest')
      const { client: sub } = await connect(second(env), { clientId: 'listener' })
      const got = await collect(sub.channels.get(name))
      await sub.channels.get(name).presence.enter({ role: 'listener' })
      for (const binary of [true, false]) {
        const r = rest(env.gateways[0], { useBinaryProtocol: binary })
        const ch = r.channels.get(name)
        await ch.publish('text', `hello ${binary}`)
        await ch.publish([{ name: 'json', data: { binary } }, { name: 'bin', data: Buffer.from([1, 2, 3]) }])
        const t = await r.time()
        assert.ok(Math.abs(t - Date.now()) < 5000, `server time ${t}`)
      }
      await atLeast(got, 6)
      assert.deepEqual(got.map((m) => m.name), ['text', 'json', 'bin', 'text', 'json', 'bin'])
      assert.deepEqual(got[1].data, { binary: true })
      assert.deepEqual([...got[5].data], [1, 2, 3])
      const r = rest(second(env))
      const page = await r.channels.get(name).history({ limit: 4 })
      assert.deepEqual(page.items.map((m) => m.name), ['bin', 'json', 'text', 'bin'], 'newest first')
      assert.deepEqual(page.items[1].data, { binary: false })
      const forwards = await r.channels.get(name).history({ direction: 'forwards' })
      assert.equal(forwards.items.length, 6)
      assert.equal(forwards.items[0].data, 'hello true')
      const members = await r.channels.get(name).presence.get()
      assert.deepEqual(members.items.map((m) => [m.clientId, m.data]), [['listener', { role: 'listener' }]])
      // A wrong key is refused.
      const bad = rest(env.gateways[0], { key: 'testapp.key1:wrong' })
      await assert.rejects(bad.channels.get(name).publish('x', 'y'), (e) => e.statusCode === 401 && e.code === 40101)
    })
  })
}

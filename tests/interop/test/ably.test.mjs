// The unmodified `ably` npm client (2.x, JSON and MessagePack) against the ably-rooms plugin at
// `/`: key and JWT auth, capabilities, attach, publish/subscribe of string, JSON and binary data
// with echo on and off, presence with SYNC for a late joiner, ping, close, refusals; on one
// embedded gateway and across two gateways on one Redis.
import assert from 'node:assert/strict'
import crypto from 'node:crypto'
import { after, describe } from 'node:test'
import { ablyJwt, ablyToml, atLeast, closeAll, collect, connect as connectClient, OTHER_KEY } from '../lib/ably.js'
import { itest, useEnv } from '../lib/fixture.js'
import { stdToken } from '../lib/tokens.js'
import { waitFor } from '../lib/wait.js'

const unique = (p) => `${p}-${crypto.randomBytes(4).toString('hex')}`

for (const [mode, binary] of [['embedded', false], ['embedded', true], ['redis', false], ['redis', true]]) {
  const format = binary ? 'msgpack' : 'json'
  describe(`ably client (${mode}, ${format})`, () => {
    const getEnv = useEnv({ name: `ably-${mode}-${format}`, mode, gateways: mode === 'redis' ? 2 : 1, extraToml: ablyToml() })
    // Every client of this suite speaks `format` unless a test says otherwise.
    const connect = (gw, extra = {}, opts) => connectClient(gw, { useBinaryProtocol: binary, ...extra }, opts)
    after(closeAll)
    // The second client's gateway: the other instance with Redis, the same one without.
    const second = (env) => env.gateways[env.gateways.length - 1]

    itest(getEnv, 'connects with a key and gets connection details', async (env) => {
      const { client } = await connect(env.gateways[0], { clientId: 'alice' })
      assert.ok(client.connection.id, 'connection id')
      assert.ok(client.connection.key, 'connection key')
      assert.equal(client.auth.clientId, 'alice')
      const rtt = await client.connection.ping()
      assert.equal(typeof rtt, 'number')
      client.close()
      await waitFor(() => client.connection.state === 'closed', { timeout: 5000, what: 'closed' })
    })

    itest(getEnv, 'a wrong key and an unknown key end in failed', async (env) => {
      const wrong = await connect(env.gateways[0], { key: 'testapp.key1:not-the-secret' }, { expect: 'failed' })
      assert.equal(wrong.change.reason.code, 40101)
      const unknown = await connect(env.gateways[0], { key: 'otherapp.key9:secret' }, { expect: 'failed' })
      assert.equal(unknown.change.reason.code, 40101)
      // The second configured key works.
      await connect(env.gateways[0], { key: OTHER_KEY })
    })

    itest(getEnv, 'string, JSON and binary messages reach a subscriber on the other client', async (env) => {
      const name = unique('data')
      const { client: a } = await connect(env.gateways[0], { clientId: 'a' })
      const { client: b } = await connect(second(env), { clientId: 'b' })
      const got = await collect(b.channels.get(name))
      const pub = a.channels.get(name)
      await pub.publish('text', 'hello')
      await pub.publish('json', { n: 1, list: [1, 2], nested: { ok: true } })
      await pub.publish('bin', Buffer.from([0, 1, 2, 254, 255]))
      await atLeast(got, 3)
      assert.deepEqual(got.map((m) => m.name), ['text', 'json', 'bin'])
      assert.equal(got[0].data, 'hello')
      assert.deepEqual(got[1].data, { n: 1, list: [1, 2], nested: { ok: true } })
      assert.deepEqual([...got[2].data], [0, 1, 2, 254, 255])
      for (const m of got) {
        assert.equal(m.clientId, 'a')
        assert.equal(m.connectionId, a.connection.id)
        assert.ok(m.id && m.timestamp, 'id and timestamp filled in')
      }
    })

    itest(getEnv, 'echo is on by default and off with echoMessages: false; order per publisher holds', async (env) => {
      const name = unique('echo')
      const { client: loud } = await connect(env.gateways[0])
      const { client: quiet } = await connect(second(env), { echoMessages: false })
      const loudGot = await collect(loud.channels.get(name))
      const quietGot = await collect(quiet.channels.get(name))
      for (let i = 0; i < 20; i++) await quiet.channels.get(name).publish('n', String(i))
      await loud.channels.get(name).publish('from-loud', 'x')
      await atLeast(loudGot, 21)
      await atLeast(quietGot, 1)
      assert.deepEqual(loudGot.filter((m) => m.name === 'n').map((m) => m.data), [...Array(20).keys()].map(String))
      assert.ok(loudGot.some((m) => m.name === 'from-loud'), 'loud sees its own message')
      await new Promise((resolve) => setTimeout(resolve, 300))
      assert.deepEqual(quietGot.map((m) => m.name), ['from-loud'], 'quiet never sees its own messages')
    })

    itest(getEnv, 'presence enter, update and leave; a late joiner gets the members by SYNC', async (env) => {
      const name = unique('presence')
      const { client: alice } = await connect(env.gateways[0], { clientId: 'alice' })
      const { client: bob } = await connect(second(env), { clientId: 'bob' })
      const aliceCh = alice.channels.get(name)
      const events = []
      await aliceCh.presence.subscribe((p) => events.push(`${p.action}:${p.clientId}:${JSON.stringify(p.data)}`))
      await aliceCh.presence.enter({ status: 'here' })
      await bob.channels.get(name).presence.enter('bob-data')
      await atLeast(events, 2, 'presence events')
      // A late joiner on either gateway sees both members.
      const { client: carol } = await connect(env.gateways[0], { clientId: 'carol' })
      const members = await carol.channels.get(name).presence.get()
      assert.deepEqual(members.map((m) => m.clientId).sort(), ['alice', 'bob'])
      assert.deepEqual(members.find((m) => m.clientId === 'alice').data, { status: 'here' })
      await aliceCh.presence.update({ status: 'away' })
      await bob.channels.get(name).presence.leave()
      await atLeast(events, 4, 'presence events')
      assert.deepEqual(events, [
        'enter:alice:{"status":"here"}',
        'enter:bob:"bob-data"',
        'update:alice:{"status":"away"}',
        'leave:bob:"bob-data"'
      ])
      // Carol's view follows (her events travel on their own socket).
      const view = async () => (await carol.channels.get(name).presence.get()).map((m) => `${m.clientId}:${JSON.stringify(m.data)}`)
      await waitFor(async () => JSON.stringify(await view()) === JSON.stringify(['alice:{"status":"away"}']),
        { what: async () => `carol's view ${JSON.stringify(await view())}` })
      // A closed connection leaves at once.
      alice.close()
      await waitFor(async () => (await carol.channels.get(name).presence.get()).length === 0,
        { timeout: 10000, what: 'alice gone from presence after close' })
    })

    itest(getEnv, 'presence needs a clientId; a message claiming another clientId is refused', async (env) => {
      const name = unique('clientid')
      const { client: anon } = await connect(env.gateways[0])
      await assert.rejects(anon.channels.get(name).presence.enter('x'), (e) => e.code === 91000 || e.code === 40012)
      const { client: alice } = await connect(env.gateways[0], { clientId: 'alice' })
      await assert.rejects(alice.channels.get(name).publish({ name: 'x', data: 'y', clientId: 'mallory' }),
        (e) => e.code === 40012)
    })

    itest(getEnv, 'detach stops delivery; a message over maxMessageSize is refused with 40009', async (env) => {
      const name = unique('detach')
      const { client: a } = await connect(env.gateways[0])
      const { client: b } = await connect(second(env))
      const ch = b.channels.get(name)
      const got = await collect(ch)
      await a.channels.get(name).publish('one', '1')
      await atLeast(got, 1)
      await ch.detach()
      await a.channels.get(name).publish('two', '2')
      await new Promise((resolve) => setTimeout(resolve, 300))
      assert.deepEqual(got.map((m) => m.name), ['one'])
      await assert.rejects(a.channels.get(name).publish('big', 'x'.repeat(70000)), (e) => e.code === 40009)
    })

    itest(getEnv, 'MessagePack clients (the Node default) and JSON clients share a channel', async (env) => {
      const name = unique('msgpack')
      const { client: packed } = await connect(env.gateways[0], { clientId: 'packed', useBinaryProtocol: true })
      const { client: plain } = await connect(second(env), { clientId: 'plain', useBinaryProtocol: false })
      const packedGot = await collect(packed.channels.get(name))
      const plainGot = await collect(plain.channels.get(name))
      const bytes = Buffer.from([9, 8, 7, 0, 255])
      await packed.channels.get(name).publish('bin', bytes)
      await packed.channels.get(name).publish('json', { a: [1, 'b'] })
      await plain.channels.get(name).publish('text', 'from json')
      await plain.channels.get(name).publish('bin2', Buffer.from([1, 2, 3]))
      await atLeast(packedGot, 4)
      await atLeast(plainGot, 4)
      for (const got of [packedGot, plainGot]) {
        const by = Object.fromEntries(got.map((m) => [m.name, m.data]))
        assert.deepEqual([...by.bin], [...bytes])
        assert.deepEqual(by.json, { a: [1, 'b'] })
        assert.equal(by.text, 'from json')
        assert.deepEqual([...by.bin2], [1, 2, 3])
      }
      await packed.channels.get(name).presence.enter({ via: 'msgpack' })
      const members = await waitFor(async () => {
        const m = await plain.channels.get(name).presence.get()
        return m.length ? m : null
      }, { what: 'the msgpack member at the JSON client' })
      assert.deepEqual(members.map((m) => [m.clientId, m.data]), [['packed', { via: 'msgpack' }]])
      assert.equal(typeof await packed.connection.ping(), 'number')
    })

    itest(getEnv, 'Ably JWTs: clientId from the token, bad signature and expiry end in failed', async (env) => {
      const { client } = await connect(env.gateways[0], { key: undefined, token: ablyJwt({ clientId: 'jwt-user' }) })
      assert.equal(client.auth.clientId, 'jwt-user')
      const name = unique('jwt')
      await client.channels.get(name).presence.enter('hi')
      const members = await client.channels.get(name).presence.get()
      assert.deepEqual(members.map((m) => m.clientId), ['jwt-user'])
      const forged = ablyJwt({ key: 'testapp.key1:wrong-secret' })
      // A literal token cannot be renewed: the client reports 40171 with our 40144 as the cause.
      const bad = await connect(env.gateways[0], { key: undefined, token: forged }, { expect: 'failed' })
      assert.ok([40144, 40171].includes(bad.change.reason.code), `code ${bad.change.reason.code}`)
      const expired = await connect(env.gateways[0], { key: undefined, token: ablyJwt({ ttl: -10 }) }, { expect: 'failed' })
      assert.ok([40142, 40171].includes(expired.change.reason.code), `code ${expired.change.reason.code}`)
      // A token callback (how browsers get tokens) works too, in MessagePack.
      const { client: cb } = await connect(second(env), {
        key: undefined,
        useBinaryProtocol: true,
        authCallback: (_params, done) => done(null, ablyJwt({ clientId: 'cb-user' }))
      })
      assert.equal(cb.auth.clientId, 'cb-user')
    })

    itest(getEnv, "a token of the gateway's own auth profile works; its sub is the clientId", async (env) => {
      const { client } = await connect(env.gateways[0], { key: undefined, token: stdToken('profile-user') })
      assert.equal(client.auth.clientId, 'profile-user')
      const bad = await connect(env.gateways[0], { key: undefined, token: stdToken('x', { secret: 'not-the-secret' }) },
        { expect: 'failed' })
      assert.ok([40144, 40171].includes(bad.change.reason.code), `code ${bad.change.reason.code}`)
    })

    itest(getEnv, 'capabilities: a channel outside them fails with 40160, a subscribe-only one refuses publish', async (env) => {
      const { client } = await connect(env.gateways[0], { key: OTHER_KEY, clientId: 'limited' })
      const secret = client.channels.get(unique('secret'))
      await assert.rejects(secret.attach(), (e) => e.code === 40160)
      assert.equal(secret.state, 'failed')
      const news = client.channels.get(unique('public:news'))
      await news.attach()
      await assert.rejects(news.publish('x', 'y'), (e) => e.code === 40160)
      await assert.rejects(news.presence.enter('x'), (e) => e.code === 40160)
      const chat = client.channels.get(unique('chat:room'))
      const got = await collect(chat)
      await chat.publish('ok', 'allowed')
      await atLeast(got, 1)
      // A token narrows its key: subscribe only on chat:*.
      const { client: narrow } = await connect(env.gateways[0], {
        key: undefined,
        token: ablyJwt({ capability: { 'chat:*': ['subscribe'] } })
      })
      const ch = narrow.channels.get(unique('chat:x'))
      await ch.attach()
      await assert.rejects(ch.publish('x', 'y'), (e) => e.code === 40160)
      await assert.rejects(narrow.channels.get(unique('other')).attach(), (e) => e.code === 40160)
    })

    itest(getEnv, 'an expiring token is renewed through authCallback; authorize() re-authenticates in place', async (env) => {
      let calls = 0
      const { client } = await connect(env.gateways[0], {
        key: undefined,
        authCallback: (_params, done) => { calls++; done(null, ablyJwt({ clientId: 'renewer', ttl: calls === 1 ? 2 : 3600 })) }
      })
      const firstId = client.connection.id
      // The first token expires after 2 s: the gateway closes with 40142 and the client comes
      // back with a fresh token from its callback.
      await waitFor(() => calls >= 2 && client.connection.state === 'connected', { timeout: 15000, what: 'a renewed connection' })
      assert.equal(client.auth.clientId, 'renewer')
      const id = client.connection.id
      await client.auth.authorize()
      assert.ok(calls >= 3)
      assert.equal(client.connection.id, id, 'authorize() keeps the connection')
      assert.equal(client.connection.state, 'connected')
      assert.ok(firstId)
    })
  })
}

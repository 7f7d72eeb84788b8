// Scenarios 6 (read-only, both modes) and 7 (refused upgrades).
import assert from 'node:assert/strict'
import { describe } from 'node:test'
import { itest, MODES, useEnv } from '../lib/fixture.js'
import { hs256, stdToken } from '../lib/tokens.js'
import { expectRefused, rawClose, rawConnect, waitConverged } from '../lib/yclient.js'
import { sleep, waitFor } from '../lib/wait.js'
import * as jwt from 'lib0/crypto/jwt'

/** A read-only client syncs, its writes (and awareness) go nowhere, and it stays connected. */
const readOnlyScenario = async (env, { route, readerOpts }) => {
  const room = env.room(`ro-${route}`)
  const writer = await env.synced({ room, route, label: 'writer', ...(route === 'std' ? { user: 'std-writer' } : { user: 'alice' }) })
  writer.map.set('a', 1)
  const reader = await env.synced({ room, route, label: 'reader', ...readerOpts })
  await waitConverged([writer, reader])

  reader.awareness.setLocalState({ user: 'reader' })
  reader.map.set('ro', 'must not propagate')
  reader.doc.getArray('items').push(['ro-item'])
  await sleep(1500)
  assert.equal(writer.map.get('ro'), undefined, 'a read-only edit reached another client')
  assert.equal(writer.doc.getArray('items').length, 0, 'a read-only edit reached another client')
  assert.ok(!writer.awareness.getStates().has(reader.doc.clientID), 'a read-only client\'s awareness reached another client')

  const fresh = await env.synced({ room, route, label: 'fresh', ...(route === 'std' ? { user: 'std-fresh' } : { user: 'carol' }) })
  await waitFor(() => fresh.map.get('a') === 1, { timeout: 10000, what: 'fresh client to see a == 1' })
  await sleep(500)
  assert.equal(fresh.map.get('ro'), undefined, 'a read-only edit was stored')
  assert.equal(fresh.doc.getArray('items').length, 0, 'a read-only edit was stored')

  // The read-only connection was not closed and still receives updates.
  assert.ok(reader.provider.wsconnected, 'read-only connection should stay open')
  assert.deepEqual(reader.closes, [], 'read-only connection was closed')
  writer.map.set('after', 2)
  await waitFor(() => reader.map.get('after') === 2, { timeout: 10000, what: 'reader to receive a later update' })
  assert.deepEqual(reader.closes, [], 'read-only connection was closed')
}

for (const mode of MODES) {
  describe(`read-only (${mode})`, () => {
    const env = useEnv({ name: 'readonly', mode })

    itest(env, 'yaccess "r" from the permission callback: syncs, cannot write, stays connected', async (env) => {
      await readOnlyScenario(env, { route: 'yjs', readerOpts: { user: 'reader' } })
      assert.ok(env.perm.calls.some((c) => c.userid === 'reader' && c.room.startsWith('ro-yjs-')),
        `permission callback GET /auth/perm/<room>/<userid> not seen: ${JSON.stringify(env.perm.calls)}`)
    })

    itest(env, 'std route: yaccess "r" claim is read-only', async (env) => {
      await readOnlyScenario(env, { route: 'std', readerOpts: { token: stdToken('std-reader', { yaccess: 'r' }) } })
    })
  })
}

describe('refused upgrades', () => {
  const env = useEnv({ name: 'refused', mode: 'embedded' })

  itest(env, 'yredis route: token problems are 401, no-access is 403', async (env) => {
    const room = env.room('refused')
    const url = `${env.gw.wsBase()}/${room}`
    const a = env.auth
    await expectRefused(url, 401) // no token at all
    await expectRefused(url, 401, { protocols: ['yauth-' + await a.badSignature('alice')] })
    await expectRefused(`${url}?yauth=${await a.badSignature('alice')}`, 401)
    await expectRefused(url, 401, { protocols: ['yauth-' + await a.expired('alice')] }) // exp (ms) in the past
    await expectRefused(`${url}?yauth=${await a.expired('alice')}`, 401)
    // exp in seconds is "1970" for a milliseconds profile.
    await expectRefused(url, 401, { protocols: ['yauth-' + await a.token('alice', { exp: Math.floor(Date.now() / 1000) + 3600 })] })
    await expectRefused(url, 401, { protocols: ['yauth-not.a.jwt'] })
    // Missing the required yuserid claim.
    await expectRefused(url, 401, { protocols: ['yauth-' + await jwt.encodeJwt(a.pair.privateKey, { exp: Date.now() + 3600000 })] })
    // Permission callback answers no-access -> 403; unreachable (connection dropped) -> 401.
    await expectRefused(url, 403, { protocols: ['yauth-' + await a.token('nobody')] })
    await expectRefused(`${url}?yauth=${await a.token('nobody')}`, 403)
    await expectRefused(url, 401, { protocols: ['yauth-' + await a.token('broken')] })
    assert.ok(env.perm.calls.some((c) => c.userid === 'nobody' && c.room === room),
      `permission callback not asked for nobody in ${room}: ${JSON.stringify(env.perm.calls)}`)

    // Sanity: the same URL with a good token is accepted, and the token in the subprotocol is echoed.
    const good = await a.token('alice')
    const conn = await rawConnect(url, { protocols: ['yauth-' + good] })
    assert.equal(conn.ws.protocol, 'yauth-' + good)
    await rawClose(conn)
    const conn2 = await rawConnect(`${url}?yauth=${good}`)
    await rawClose(conn2)
  })

  itest(env, 'std route: missing, wrong secret, expired (seconds) are 401; subprotocol token accepted', async (env) => {
    const room = env.room('std-refused')
    const url = `${env.gw.wsBase('std')}/${room}`
    await expectRefused(url, 401)
    await expectRefused(`${url}?token=${stdToken('bob', { secret: 'wrong-secret' })}`, 401)
    await expectRefused(`${url}?token=${stdToken('bob', { exp: Math.floor(Date.now() / 1000) - 60 })}`, 401)
    await expectRefused(`${url}?token=${hs256({ sub: 'bob' })}`, 401) // no exp
    // A yredis ES384 token is not valid on the std route.
    await expectRefused(`${url}?token=${await env.auth.token('alice')}`, 401)
    const ok = stdToken('bob')
    const conn = await rawConnect(url, { protocols: ['yauth-' + ok] })
    assert.equal(conn.ws.protocol, 'yauth-' + ok)
    await rawClose(conn)
    const conn2 = await rawConnect(`${url}?token=${ok}`)
    await rawClose(conn2)
  })
})

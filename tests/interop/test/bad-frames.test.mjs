// Bad input closes only the offending connection, with a proper close code: a text frame and a
// malformed y-protocols frame get 1008, the process keeps serving, and the room's other clients
// keep collaborating.
import assert from 'node:assert/strict'
import { describe } from 'node:test'
import { itest, useEnv } from '../lib/fixture.js'
import { stdToken } from '../lib/tokens.js'
import { rawConnect, waitConverged } from '../lib/yclient.js'
import { withTimeout } from '../lib/wait.js'

describe('bad frames (embedded)', () => {
  const env = useEnv({ name: 'bad-frames', mode: 'embedded' })

  itest(env, 'text and malformed frames close that connection with 1008; the room goes on', async (env) => {
    const room = env.room('bad')
    const c1 = await env.synced({ room, label: 'good1' })
    const c2 = await env.synced({ room, user: 'bob', label: 'good2' })
    const url = `${env.gw.wsBase('std')}/${room}?token=${stdToken('mallory')}`

    const bad = [
      ['a text frame', (ws) => ws.send('hello')],
      // Sync message with a length prefix that runs past the end of the frame.
      ['a truncated sync frame', (ws) => ws.send(Uint8Array.from([0, 2, 0x7f, 1, 2]))],
      // Sync sub-type 9 does not exist.
      ['an unknown sync sub-type', (ws) => ws.send(Uint8Array.from([0, 9, 0]))]
    ]
    for (const [what, send] of bad) {
      const conn = await rawConnect(url)
      send(conn.ws)
      const ev = await withTimeout(conn.closed, 10000, `close after ${what}`)
      assert.equal(ev.code, 1008, `${what}: close code ${ev.code} (${ev.reason})`)
    }

    // The good clients were not disturbed and still converge; the gateway is healthy.
    c1.map.set('after', 'bad frames')
    c2.map.set('from', 'bob')
    await waitConverged([c1, c2])
    assert.equal(c2.map.get('after'), 'bad frames')
    assert.ok(c1.provider.wsconnected && c2.provider.wsconnected, 'good clients stayed connected')
    const health = await env.gw.health()
    assert.equal(health.status, 'ok')
  })
})

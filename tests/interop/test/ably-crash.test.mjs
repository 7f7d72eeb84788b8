// A gateway dies (SIGKILL) under Ably clients: the presence members it held leave for the
// clients on the surviving gateway within 45 s, and its clients reconnect elsewhere.
import assert from 'node:assert/strict'
import crypto from 'node:crypto'
import { after, describe } from 'node:test'
import { ablyToml, closeAll, connect } from '../lib/ably.js'
import { itest, useEnv } from '../lib/fixture.js'
import { waitFor } from '../lib/wait.js'

describe('ably across a gateway crash (redis)', () => {
  const getEnv = useEnv({ name: 'ably-crash', mode: 'redis', gateways: 2, extraToml: ablyToml() })
  after(closeAll)

  itest(getEnv, "a SIGKILLed gateway's presence members leave within 45 s", async (env) => {
    const [a, b] = env.gateways
    const name = `crash-${crypto.randomBytes(4).toString('hex')}`
    const { client: watcher } = await connect(a, { clientId: 'watcher' })
    const { client: doomed } = await connect(b, { clientId: 'doomed', disconnectedRetryTimeout: 60000 })
    await doomed.channels.get(name).presence.enter('on b')
    const left = []
    await watcher.channels.get(name).presence.subscribe('leave', (p) => left.push(p.clientId))
    await waitFor(async () => (await watcher.channels.get(name).presence.get()).length === 1, { what: 'doomed present' })
    const killedAt = Date.now()
    await b.kill()
    await waitFor(() => left.includes('doomed'), { timeout: 45000, interval: 200, what: 'the leave of doomed' })
    const took = Date.now() - killedAt
    assert.ok(took < 45000, `left after ${took} ms`)
    assert.deepEqual(await watcher.channels.get(name).presence.get(), [])
  }, { timeout: 60000 })
})

// Scenario 13: SIGKILL mid-stream. Whatever the server fanned out before dying must be there after a
// restart with the same config and data dirs (embedded: the in-process stream log; Redis: reread).
import assert from 'node:assert/strict'
import { describe } from 'node:test'
import { itest, MODES, useEnv } from '../lib/fixture.js'
import { sleep, waitFor, withTimeout } from '../lib/wait.js'

const MAX_ITEMS = 500
const EVERY_MS = 5
const KILL_AFTER_SEEN = 150

for (const mode of MODES) {
  describe(`crash (${mode})`, () => {
    const env = useEnv({ name: 'crash', mode })

    itest(env, 'everything an observer received survives SIGKILL + restart', async (env) => {
      const room = env.room('crash')
      const a = await env.synced({ room, label: 'writer' })
      const b = await env.synced({ room, user: 'bob', label: 'observer' })
      const arrA = a.doc.getArray('items')
      const arrB = b.doc.getArray('items')

      let writing = true
      const writer = (async () => {
        for (let i = 0; i < MAX_ITEMS && writing; i++) {
          arrA.push([`i${i}`])
          await sleep(EVERY_MS)
        }
      })()
      await waitFor(() => arrB.length >= KILL_AFTER_SEEN, {
        timeout: 30000,
        what: () => `observer to receive ${KILL_AFTER_SEEN} items (has ${arrB.length}, writer pushed ${arrA.length})`
      })
      await env.gw.kill()
      const pushedAtKill = arrA.length
      writing = false
      await withTimeout(writer, 10000, 'writer loop to stop')
      // Stop both clients from reconnecting: the writer would re-upload everything on reconnect and
      // hide any loss. Let the observer drain what the kernel already delivered first.
      a.provider.shouldConnect = false
      b.provider.shouldConnect = false
      await waitFor(() => !b.provider.wsconnected, { timeout: 10000, what: 'observer to see the connection drop' })
      const seen = arrB.toArray()
      a.destroy()
      b.destroy()
      assert.ok(seen.length >= KILL_AFTER_SEEN, `observer saw only ${seen.length} items`)
      assert.ok(pushedAtKill < MAX_ITEMS,
        `harness timing: the writer had finished (${pushedAtKill} items) before the kill, so nothing was in flight`)

      await env.gw.start() // same port, config, data dirs
      const c = await env.synced({ room, user: 'carol', label: 'after-restart' })
      const arrC = c.doc.getArray('items')
      await waitFor(() => arrC.length >= seen.length, {
        timeout: 15000,
        what: () => `restarted gateway to serve at least the ${seen.length} items the observer had (has ${arrC.length})`
      })
      // A single writer appends, so the observer's view is a prefix of the writer's sequence.
      assert.deepEqual(arrC.toArray().slice(0, seen.length), seen, 'items the observer had are missing or reordered after the crash')
    }, { timeout: 120000 })
  })
}

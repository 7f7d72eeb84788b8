// The standalone compaction worker, `gateway worker --config FILE` (Redis mode, fs storage).
// The serving gateway has `[worker] enabled = false`, so any compaction is the separate process's work.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe } from 'node:test'
import { itest, useEnv } from '../lib/fixture.js'
import { gatewayConfig } from '../lib/gateway.js'
import { docFromV2, waitConverged, Y } from '../lib/yclient.js'
import { scaled, sleep } from '../lib/wait.js'
import { runWorkerToExit } from '../lib/worker.js'
import { isClusterKey } from '../lib/redis.js'

describe('gateway worker (standalone process, redis)', () => {
  const env = useEnv({ name: 'worker-process', mode: 'redis', worker: { enabled: false, task_debounce_ms: 500, min_message_lifetime_ms: 800 } })

  itest(env, 'nothing is compacted without it; once started it compacts the room into one stored object', async (env) => {
    assert.match(fs.readFileSync(env.gw.configFile, 'utf8'), /^\[worker\]\nenabled = false$/m, 'the serving gateway must not run the worker')
    const room = env.room('standalone')
    const c1 = await env.synced({ room, user: 'alice', label: 'writer1' })
    const c2 = await env.synced({ room, user: 'bob', label: 'writer2', via: 'query' })
    c1.map.set('a', 1)
    c1.doc.getText('text').insert(0, 'hello')
    c2.map.set('b', 2)
    await waitConverged([c1, c2])
    const key = env.streamKey(room)
    assert.equal(await env.r.exists(key), 1, `room stream should exist after an edit: ${JSON.stringify(await env.streamState(room))}`)
    assert.ok(await env.r.xLen('y:worker') >= 1, `a compaction task should be queued: ${JSON.stringify(await env.streamState(room))}`)

    // Everyone leaves (no awareness renewal can re-create the stream later); keep the final state.
    const expected = docFromV2(Y.encodeStateAsUpdateV2(c1.doc))
    env.destroyClients()

    // No worker process yet: 3 s is far beyond debounce 500 / lifetime 800, and nothing is compacted.
    await sleep(scaled(3000))
    const before = await env.streamState(room)
    assert.equal(before.exists, 1, `stream must survive without a worker: ${JSON.stringify(before)}`)
    assert.ok(before.worker_queue >= 1, `the task must stay queued without a worker: ${JSON.stringify(before)}`)
    assert.deepEqual(await env.listObjects(room), [], 'nothing may be stored without a worker')
    assert.deepEqual(env.listRoot(), [], 'the storage dir must be empty without a worker')

    // The standalone worker, on the very same config file (same Redis, storage dir, [worker]).
    const worker = await env.addWorker()
    await env.waitCompacted(room)
    const stored = await env.singleObject(room)
    const map = stored.doc.getMap('map')
    assert.equal(map.get('a'), 1, `stored object ${stored.name} content: ${JSON.stringify(map.toJSON())}`)
    assert.equal(map.get('b'), 2, `stored object ${stored.name} content: ${JSON.stringify(map.toJSON())}`)
    assert.equal(stored.doc.getText('text').toString(), 'hello')
    await waitConverged([expected, stored.doc], { timeout: 5000 })
    const keys = await env.r.keys('*')
    assert.deepEqual(keys.filter((k) => k !== 'y:worker' && !isClusterKey(k)), [], `unexpected keys left in Redis: ${JSON.stringify(keys)}`)

    // A fresh client syncs from storage alone (the stream is gone).
    const c3 = await env.synced({ room, user: 'carol', label: 'fresh' })
    await waitConverged([c3.doc, stored.doc], { timeout: 10000 })

    // The worker shares the gateway's config, [server] listen included: still running means it bound nothing.
    assert.ok(worker.running, `gateway worker exited:\n${worker.tail(40)}`)
    // SIGTERM stops it cleanly (ManagedProcess.stop would SIGKILL after 15 s, giving code null).
    const { code, signal } = await worker.stop()
    assert.equal(code, 0, `gateway worker after SIGTERM: code=${code} signal=${signal}\n${worker.tail(40)}`)
  }, { timeout: 120000 })

  itest(env, 'without [redis] it exits non-zero and says it needs [redis]', async (env) => {
    const dir = path.join(env.tmp, 'no-redis')
    fs.mkdirSync(dir, { recursive: true })
    const configFile = path.join(dir, 'no-redis.toml')
    fs.writeFileSync(configFile, gatewayConfig({
      port: env.gw.port,
      storage: { kind: 'fs', path: path.join(dir, 'storage') },
      streamsDir: path.join(dir, 'streams'),
      jwkFile: env.auth.jwkFile,
      permUrl: env.perm.url
    }))
    assert.doesNotMatch(fs.readFileSync(configFile, 'utf8'), /^\[redis\]/m)
    const { code, signal, output } = await runWorkerToExit(dir, configFile, { name: 'worker-no-redis' })
    assert.equal(signal, null, `exited by signal ${signal}:\n${output}`)
    assert.notEqual(code, 0, `gateway worker without [redis] must fail:\n${output}`)
    assert.ok(output.includes('[redis]'), `the error should mention [redis]:\n${output}`)
  }, { timeout: 60000 })
})

// Scenario 14: compaction into S3 (moto_server), object key `${encodeURIComponent(room)}/index/<uuid>`.
import assert from 'node:assert/strict'
import { describe } from 'node:test'
import { itest, objectPrefix, useEnv } from '../lib/fixture.js'
import { motoAvailable } from '../lib/moto.js'
import { motoServer } from '../lib/env.js'
import { compactionScenario } from '../lib/scenarios.js'

const skip = motoAvailable() ? false : `moto_server not installed at ${motoServer} (scripts/test-interop installs moto[server] into tests/interop/.venv)`
if (skip) process.stderr.write(`[interop] SKIPPING S3 tests: ${skip}\n`)

describe('s3 storage (moto)', { skip }, () => {
  const env = useEnv({ name: 's3', mode: 'embedded', storage: 's3' })

  itest(env, 'compaction writes exactly one object per room to the bucket and syncs from it', async (env) => {
    const room = env.room('s3')
    const { first, second } = await compactionScenario(env, room)
    assert.ok(first.name.startsWith(`${encodeURIComponent(room)}/index/`))
    // Listing the whole bucket: nothing else was written for this room, and nothing outside the layout.
    const all = await env.moto.list('ydocs-test', '')
    assert.deepEqual(all.filter((k) => k.startsWith(objectPrefix(room))), [second.name])
    for (const k of all) assert.match(k, /^[^/]+\/index\/[0-9a-f-]{36}$/i, `unexpected object key ${k}`)
  }, { timeout: 120000 })
})

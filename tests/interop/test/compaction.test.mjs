// Scenario 3: compaction (debounce 500 ms, lifetime 800 ms) in embedded and Redis mode, fs storage.
// Each mode gets a gateway of its own: in embedded mode compaction is observed through /health.
import assert from 'node:assert/strict'
import { describe } from 'node:test'
import { itest, MODES, useEnv } from '../lib/fixture.js'
import { compactionScenario } from '../lib/scenarios.js'
import { isClusterKey } from '../lib/redis.js'

for (const mode of MODES) {
  describe(`compaction (${mode})`, () => {
    const env = useEnv({ name: 'compaction', mode, worker: { task_debounce_ms: 500, min_message_lifetime_ms: 800 } })

    itest(env, 'stream compacts into exactly one stored v2 object; a new edit replaces it', async (env) => {
      const h = await env.gw.streamsHealth()
      assert.equal(h.backend, mode === 'redis' ? 'redis' : 'memory', `/health streams.backend: ${JSON.stringify(h)}`)
      const { room } = await compactionScenario(env)
      if (mode === 'redis') {
        // Once everyone left and the room is compacted, nothing but the (empty) y:worker stream is left
        // (beside the gateways' own cluster keys).
        env.destroyClients()
        await env.waitCompacted(room)
        const keys = await env.r.keys('*')
        assert.deepEqual(keys.filter((k) => k !== 'y:worker' && !isClusterKey(k)), [], `unexpected keys left in Redis: ${JSON.stringify(keys)}`)
      }
    }, { timeout: 120000 })
  })
}

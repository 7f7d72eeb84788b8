// Starts one gateway, syncs one client and stops it, so the plugin component is compiled into the
// shared cache_dir once before test files start gateways in parallel. Exits 1 (with logs) on failure.
import { InteropEnv } from './fixture.js'

const t0 = Date.now()
let env = null
try {
  env = await InteropEnv.create({ name: 'warmup', mode: 'embedded' })
  const c = await env.synced({ room: env.room('warmup'), label: 'warmup' }, 60000)
  c.map.set('warm', true)
  process.stderr.write(`[interop] warm-up: gateway healthy and a client synced in ${Date.now() - t0} ms\n`)
} catch (e) {
  if (env) {
    env.failed = true
    env.dumpLogs('warm-up failed')
  }
  process.stderr.write(`[interop] warm-up failed: ${e.stack || e}\n`)
  process.exitCode = 1
} finally {
  if (env) await env.cleanup()
}
process.exit()

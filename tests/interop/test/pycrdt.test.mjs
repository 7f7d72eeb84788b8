// Scenario 15: a pycrdt (yrs) client and a y-websocket (yjs) client converge through the gateway.
import assert from 'node:assert/strict'
import { describe } from 'node:test'
import * as Y from 'yjs'
import { itest, MODES, useEnv } from '../lib/fixture.js'
import { python } from '../lib/env.js'
import { pythonAvailable, runPycrdt } from '../lib/pycrdt.js'
import { assertSameState, waitConverged } from '../lib/yclient.js'
import { waitFor } from '../lib/wait.js'

const skip = pythonAvailable() ? false : `no python venv at ${python} (run scripts/test-interop once)`

const fromB64 = (s) => new Uint8Array(Buffer.from(s, 'base64'))
const j = (v) => JSON.stringify(v)

const checkRun = (run) => {
  assert.ok(run.result, `pycrdt client printed no result (exit ${run.code})\nstdout: ${run.stdout}\nstderr: ${run.stderr}`)
  assert.equal(run.code, 0, `pycrdt client failed: ${run.result.error}\nstderr: ${run.stderr}`)
  return run.result
}

for (const mode of MODES) {
  describe(`pycrdt client (${mode})`, { skip }, () => {
    const env = useEnv({ name: 'pycrdt', mode })

    itest(env, 'pycrdt and y-websocket converge, both directions (incl. pycrdt offline edits)', async (env) => {
      const room = env.room('pycrdt')
      const js = await env.synced({ room, label: 'js' })
      js.map.set('js', 'from-js')
      const token = await env.auth.token('python')
      const py = runPycrdt([
        '--url', env.gw.wsBase('yjs'), '--room', room, '--token', token,
        '--pre', `py_offline=${j('pre-connect edit')}`,
        '--step', `wait:js=${j('from-js')}`,
        '--step', `set:py=${j('from-py')}`,
        '--step', `wait:done=${j(true)}`,
        '--timeout', '20'
      ], 60000)
      await waitFor(() => js.map.get('py') === 'from-py' && js.map.get('py_offline') === 'pre-connect edit', {
        timeout: 25000,
        what: () => `js client to see the pycrdt edits: ${j(js.map.toJSON())}`
      })
      js.map.set('done', true)
      const result = checkRun(await py)
      assert.deepEqual(result.map, js.map.toJSON(), 'pycrdt and yjs maps differ')
      const pySv = Y.decodeStateVector(fromB64(result.state_vector))
      const jsSv = Y.decodeStateVector(Y.encodeStateVector(js.doc))
      assert.deepEqual([...pySv].sort(), [...jsSv].sort(), 'state vectors differ')
      const pyDoc = new Y.Doc()
      Y.applyUpdate(pyDoc, fromB64(result.update))
      assertSameState(pyDoc, js.doc, 'the pycrdt state applied in yjs differs from the yjs client')
      assert.ok(result.sync_frames.step1 >= 1 && result.sync_frames.step2 >= 1, `server handshake seen by pycrdt: ${j(result.sync_frames)}`)
    })

    itest(env, 'pycrdt writes alone (token in the query); a late y-websocket client reads it', async (env) => {
      const room = env.room('pycrdt-first')
      const token = await env.auth.token('python')
      const result = checkRun(await runPycrdt([
        '--url', env.gw.wsBase('yjs'), '--room', room, '--token', token, '--via', 'query',
        '--step', `set:greeting=${j('hello from pycrdt')}`,
        '--step', `set:n=${j(42)}`,
        '--linger', '500'
      ], 60000))
      assert.equal(result.map.greeting, 'hello from pycrdt')
      const late = await env.synced({ room, label: 'late-js' })
      await waitFor(() => late.map.get('greeting') === 'hello from pycrdt' && late.map.get('n') === 42, {
        timeout: 10000,
        what: () => `late js client map: ${j(late.map.toJSON())}`
      })
      const pyDoc = new Y.Doc()
      Y.applyUpdate(pyDoc, fromB64(result.update))
      await waitConverged([late.doc, pyDoc], { timeout: 5000 })
    })
  })
}

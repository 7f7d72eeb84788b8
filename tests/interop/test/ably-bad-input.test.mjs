// Raw protocol checks on the Ably route (heartbeats for browsers), and bad input, with a raw
// WebSocket client: malformed JSON and MessagePack,
// the wrong frame type, unknown actions, wrong types, oversize messages and floods get the
// Ably error a real server gives (ERROR + close, or a NACK), and the gateway stays up.
import assert from 'node:assert/strict'
import { describe } from 'node:test'
import msgpack from '@ably/msgpack-js'
import WebSocket from 'ws'
import { ablyToml, KEY } from '../lib/ably.js'
import { itest, useEnv } from '../lib/fixture.js'
import { waitFor } from '../lib/wait.js'

/** A raw client: collects decoded ProtocolMessages and the close code. */
const raw = async (gw, format = 'json', query = `key=${encodeURIComponent(KEY)}`) => {
  const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/?${query}&format=${format}&v=6`)
  const c = { ws, got: [], closed: null }
  ws.on('message', (data, binary) => c.got.push(binary ? msgpack.decode(data) : JSON.parse(data.toString())))
  ws.on('close', (code) => { c.closed = code })
  ws.on('error', () => {})
  await waitFor(() => c.got.length > 0 || c.closed !== null, { what: 'the first server message' })
  c.send = (m) => ws.send(format === 'msgpack' && typeof m === 'object' && !Buffer.isBuffer(m) ? msgpack.encode(m) : m)
  c.wait = (pred, what) => waitFor(() => c.got.find(pred), { what })
  return c
}

describe('ably bad input (embedded)', () => {
  const getEnv = useEnv({ name: 'ably-bad', extraToml: ablyToml() })

  itest(getEnv, 'malformed JSON gets ERROR 40000 and a close', async (env) => {
    const c = await raw(env.gw)
    assert.equal(c.got[0].action, 4)
    c.send('{not json')
    const err = await c.wait((m) => m.action === 9, 'ERROR')
    assert.equal(err.error.code, 40000)
    await waitFor(() => c.closed !== null, { what: 'close' })
  })

  itest(getEnv, 'malformed MessagePack and a text frame on a msgpack connection get ERROR 40000', async (env) => {
    const c = await raw(env.gw, 'msgpack')
    assert.equal(c.got[0].action, 4)
    c.send(Buffer.from([0x81, 0xc1]))
    assert.equal((await c.wait((m) => m.action === 9, 'ERROR')).error.code, 40000)
    await waitFor(() => c.closed !== null, { what: 'close' })
    const d = await raw(env.gw, 'msgpack')
    d.ws.send('{"action":0}')
    assert.equal((await d.wait((m) => m.action === 9, 'ERROR')).error.code, 40000)
  })

  itest(getEnv, 'unknown actions and wrong types are NACKed; the connection lives on', async (env) => {
    const c = await raw(env.gw)
    c.send(JSON.stringify({ action: 21, channel: 'x', msgSerial: 0, annotations: [] }))
    c.send(JSON.stringify({ action: 15, channel: 'x', msgSerial: 1, messages: 'nope' }))
    c.send(JSON.stringify({ action: 15, channel: 'x', msgSerial: 2, messages: [42] }))
    c.send(JSON.stringify({ action: 15, channel: '', msgSerial: 3, messages: [{ data: 'x' }] }))
    c.send(JSON.stringify({ action: 15, channel: 'x', msgSerial: 4, messages: [{ data: 'x'.repeat(70000) }] }))
    c.send(JSON.stringify({ action: 99 })) // no serial: ignored
    c.send(JSON.stringify({ action: 0, id: 'still-alive' }))
    await c.wait((m) => m.action === 0 && m.id === 'still-alive', 'heartbeat echo')
    const nacks = Object.fromEntries(c.got.filter((m) => m.action === 2).map((m) => [m.msgSerial, m.error.code]))
    assert.deepEqual(nacks, { 0: 40000, 1: 40000, 2: 40000, 3: 40010, 4: 40009 })
    assert.equal(c.closed, null)
  })

  itest(getEnv, 'a flood beyond maxInboundRate is NACKed with 42910', async (env) => {
    const c = await raw(env.gw)
    const rate = c.got[0].connectionDetails.maxInboundRate
    assert.equal(rate, 100)
    for (let i = 0; i < 150; i++) c.send(JSON.stringify({ action: 15, channel: 'flood', msgSerial: i, messages: [{ data: 'x' }] }))
    await c.wait((m) => (m.action === 1 || m.action === 2) && m.msgSerial === 149, 'the last answer')
    const acked = c.got.filter((m) => m.action === 1).length
    const limited = c.got.filter((m) => m.action === 2 && m.error.code === 42910).length
    assert.ok(acked >= 100 && acked < 150, `acked ${acked}`)
    assert.equal(acked + limited, 150)
  })

  itest(getEnv, 'no credentials, an unknown format and clientId * are refused with ERROR', async (env) => {
    const none = await raw(env.gw, 'json', 'v=6')
    assert.equal(none.got[0].action, 9)
    assert.equal(none.got[0].error.code, 40101)
    const fmt = await raw(env.gw, 'xml')
    assert.equal(fmt.got[0].error.code, 40000)
    const star = await raw(env.gw, 'json', `key=${encodeURIComponent(KEY)}&clientId=*`)
    assert.equal(star.got[0].error.code, 40012)
    await waitFor(() => star.closed !== null, { what: 'close' })
    // And the gateway is still fine.
    const ok = await raw(env.gw)
    assert.equal(ok.got[0].action, 4)
    ok.ws.close()
  })

  itest(getEnv, 'a heartbeats=true client (a browser) gets HEARTBEATs while idle', async (env) => {
    const c = await raw(env.gw, 'json', `key=${encodeURIComponent(KEY)}&heartbeats=true`)
    const idle = c.got[0].connectionDetails.maxIdleInterval
    assert.equal(idle, 15000)
    const start = Date.now()
    await waitFor(() => c.got.some((m) => m.action === 0), { timeout: idle, interval: 100, what: 'a server HEARTBEAT' })
    assert.ok(Date.now() - start < idle)
    c.ws.close()
  }, { timeout: 30000 })

  itest(getEnv, 'resume: a forged key gets 80018, an unknown one 80008, the real one the same connectionId', async (env) => {
    const first = await raw(env.gw)
    const { connectionId, connectionDetails } = first.got[0]
    first.ws.terminate() // a dropped socket: its state is kept for a resume
    await waitFor(() => first.closed !== null, { what: 'dropped' })
    await new Promise((resolve) => setTimeout(resolve, 200))
    const resume = (key) => raw(env.gw, 'json', `key=${encodeURIComponent(KEY)}&resume=${encodeURIComponent(key)}`)
    const forged = await resume(connectionDetails.connectionKey.replace(/!.*/, '!0000'))
    assert.equal(forged.got[0].action, 4)
    assert.equal(forged.got[0].error.code, 80018)
    assert.notEqual(forged.got[0].connectionId, connectionId)
    const unknown = await resume('999!abc')
    assert.equal(unknown.got[0].error.code, 80008)
    const real = await resume(connectionDetails.connectionKey)
    assert.equal(real.got[0].connectionId, connectionId)
    assert.equal(real.got[0].error, undefined)
    // While the resumed connection lives, its key cannot be taken over again.
    const again = await resume(connectionDetails.connectionKey)
    assert.equal(again.got[0].error.code, 80008)
    real.ws.close()
  })
})

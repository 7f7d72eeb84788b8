// The admin API behind GATEWAY_ADMIN_KEY on two gateways sharing one Redis: the key guard,
// /admin/api/status's connections, topics and plugins, and /admin/api/publish reaching a chat
// client on the other gateway through the cluster bus.
import assert from 'node:assert/strict'
import { describe } from 'node:test'
import WebSocket from 'ws'
import { chatToml } from '../lib/chat.js'
import { itest, useEnv } from '../lib/fixture.js'
import { http } from '../lib/net.js'
import { stdToken } from '../lib/tokens.js'
import { waitFor } from '../lib/wait.js'

const ADMIN_KEY = 'admin-api-test-key'
// The gateways inherit this process's environment.
process.env.GATEWAY_ADMIN_KEY = ADMIN_KEY
const auth = { Authorization: `Bearer ${ADMIN_KEY}` }

/** A raw chat connection that keeps every JSON frame it receives. */
const chatClient = async (gw, user) => {
  const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/ws?token=${stdToken(user)}`, { handshakeTimeout: 5000 })
  const got = []
  ws.on('message', (d, binary) => { if (!binary) got.push(JSON.parse(d.toString())) })
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
  await waitFor(() => got.some((m) => m.message_type === 'system_message'), { what: `${user}'s welcome` })
  return { ws, got }
}

describe('admin API across two gateways on one Redis', () => {
  const getEnv = useEnv({ name: 'admin-api', mode: 'redis', gateways: 2, extraToml: chatToml() })

  itest(getEnv, 'status lists connections and topics; a publish on one gateway reaches the other', async (env) => {
    const [a, b] = env.gateways
    assert.equal((await http(`${a.httpBase}/admin/api/status`)).status, 401)
    assert.equal((await http(`${a.httpBase}/admin/api/status`, { headers: { Authorization: 'Bearer nope' } })).status, 401)
    const page = await http(`${a.httpBase}/admin`)
    assert.equal(page.status, 200)
    assert.match(page.headers.get('content-type'), /^text\/html/)

    const dave = await chatClient(b, 'dave')
    try {
      const res = await http(`${b.httpBase}/admin/api/status`, { headers: auth })
      assert.equal(res.status, 200)
      const s = JSON.parse(res.body.toString())
      assert.equal(s.connections.total, 1)
      const [c] = s.connections.list
      assert.equal(c.plugin, 'chat')
      assert.equal(c.route, '/ws')
      assert.equal(c.sub, 'dave')
      assert.match(c.remote, /^127\.0\.0\.1:\d+$/)
      assert.equal(c.topics, 2)
      assert.deepEqual(s.topics.list.map((t) => `${t.plugin}/${t.topic}=${t.members}`).sort(), ['chat/chat:all=1', 'chat/chat:user:dave=1'])
      assert.deepEqual(s.plugins.map((p) => [p.name, p.state]).sort(), [['chat', 'running'], ['yjs', 'running']])
      assert.equal(s.cluster.mode, 'redis')

      const bad = await http(`${a.httpBase}/admin/api/publish`, { method: 'POST', headers: auth, body: '{"plugin":"nope","topic":"x","data":"y"}' })
      assert.equal(bad.status, 404)
      const frame = { message_type: 'system_message', data: { message: 'from the admin of gateway a' }, from_user_id: null }
      const pub = await http(`${a.httpBase}/admin/api/publish`, {
        method: 'POST',
        headers: { ...auth, 'Content-Type': 'application/json' },
        body: JSON.stringify({ plugin: 'chat', topic: 'chat:all', data: frame })
      })
      assert.equal(pub.status, 200, pub.body.toString())
      assert.deepEqual(JSON.parse(pub.body.toString()), { published: true, local_recipients: 0, clustered: true })
      await waitFor(() => dave.got.some((m) => m.data && m.data.message === 'from the admin of gateway a'), { what: 'the admin publish on gateway b' })
    } finally {
      dave.ws.terminate()
    }
  })
})

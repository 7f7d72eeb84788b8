// A room on the unmodified `ably` client, pointed at the gateway's Ably endpoint: publish and
// subscribe on one channel, and its presence set.
import * as Ably from 'ably'
import { $, appendLog, colorFor, fragment, setStatus, showProblem, wsOrigin } from './common.js'

const params = fragment()
const key = params.get('key')
const token = params.get('token')
const channelName = params.get('channel') || 'demo'
const clientId = params.get('clientId') || params.get('name') || `guest-${Math.floor(Math.random() * 10000)}`
$('channel').textContent = channelName
$('me').textContent = `as ${clientId}`
const log = $('log')

const renderMembers = async (channel) => {
  let members = []
  try {
    members = await channel.presence.get()
  } catch (e) {
    return
  }
  const list = $('members')
  list.replaceChildren()
  const seen = new Set()
  for (const m of members.sort((a, b) => a.clientId.localeCompare(b.clientId))) {
    if (seen.has(m.clientId)) continue
    seen.add(m.clientId)
    const li = document.createElement('li')
    li.style.setProperty('--dot', colorFor(m.clientId))
    li.textContent = m.clientId === clientId ? `${m.clientId} (you)` : m.clientId
    li.dataset.client = m.clientId
    list.appendChild(li)
  }
  $('member-count').textContent = `(${seen.size})`
}

const start = () => {
  const port = Number(location.port) || (location.protocol === 'https:' ? 443 : 80)
  const client = new Ably.Realtime({
    ...(key ? { key } : { token }),
    clientId,
    // The gateway is the whole of "Ably" here: its host and port, no fallback hosts, no
    // connectivity checks against the internet, WebSocket only.
    endpoint: location.hostname,
    port,
    tlsPort: port,
    tls: location.protocol === 'https:',
    fallbackHosts: [],
    disableConnectivityCheck: true,
    wsConnectivityCheckUrl: `${wsOrigin()}/`,
    transports: ['web_socket'],
    logLevel: 1
  })
  const channel = client.channels.get(channelName)
  client.connection.on((change) => {
    const kind = change.current === 'connected' ? 'ok' : ['failed', 'suspended', 'closed'].includes(change.current) ? 'bad' : 'warn'
    setStatus(change.current, kind)
    const connected = change.current === 'connected'
    $('msg').disabled = !connected
    $('send').disabled = !connected
    if (change.current === 'failed') {
      const why = change.reason ? `${change.reason.code}: ${change.reason.message}` : 'no reason given'
      showProblem(`The gateway refused the client (${why.replace(/[<&]/g, (c) => (c === '<' ? '&lt;' : '&amp;'))}). ` +
        'Is the key one of <code>GATEWAY_ABLY_KEYS</code>?')
    }
  })
  channel.subscribe((m) => {
    const text = typeof m.data === 'string' ? m.data : JSON.stringify(m.data)
    const li = appendLog(log, [['from', m.clientId || '?'], ['kind', m.name || 'message'], ['text', text]])
    li.querySelector('.from').style.color = colorFor(m.clientId || '?')
  })
  channel.presence.subscribe((p) => {
    appendLog(log, [['text', `${p.clientId} ${p.action === 'enter' ? 'entered' : p.action === 'leave' ? 'left' : p.action}`]], { kind: 'presence' })
    renderMembers(channel)
  })
  channel.presence.enter({ at: Date.now() }).then(() => renderMembers(channel)).catch((e) => {
    appendLog(log, [['kind', 'error'], ['text', `presence: ${e.message}`]], { kind: 'error' })
  })
  $('send-form').addEventListener('submit', async (ev) => {
    ev.preventDefault()
    const text = $('msg').value
    if (!text.trim()) return
    $('msg').value = ''
    try {
      await channel.publish('message', text)
    } catch (e) {
      appendLog(log, [['kind', 'error'], ['text', `publish failed: ${e.message}`]], { kind: 'error' })
    }
  })
  window.demo = { client, channel }
}

if (!key && !token) {
  showProblem('This page needs an Ably key or token in its address: <code>ably.html#key=appId.keyId:secret&amp;channel=demo</code> ' +
    '(or <code>#token=&lt;JWT&gt;</code>). <code>scripts/serve</code> makes a dev key and prints a ready link; ' +
    'a gateway of your own takes its keys from <code>GATEWAY_ABLY_KEYS</code>.')
} else {
  start()
}

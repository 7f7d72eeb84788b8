// The chat plugin's protocol (plugins/chat/PROTOCOL.md) over a browser WebSocket: incoming
// messages, text and notification broadcasts, direct messages and the presence list.
import { $, appendLog, colorFor, fragment, jwtClaim, setStatus, showProblem, wsOrigin } from './common.js'

const params = fragment()
const token = params.get('token')
const route = params.get('route') || '/ws'
const users = new Map() // user_id -> username
let me = null
let ws = null
let attempts = 0

const log = $('log')
const controls = ['msg', 'type', 'to', 'send'].map($)

const textOf = (data) => {
  if (typeof data === 'string') return data
  if (data && typeof data === 'object') {
    if (typeof data.text === 'string') return data.text
    if (typeof data.message === 'string') return data.message
  }
  return JSON.stringify(data)
}
const nameOf = (id) => (id == null ? 'server' : users.get(id) || id)

const renderUsers = () => {
  const list = $('users')
  list.replaceChildren()
  const to = $('to')
  const chosen = to.value
  to.replaceChildren(new Option('everyone', ''))
  for (const [id, name] of [...users].sort((a, b) => a[1].localeCompare(b[1]))) {
    const li = document.createElement('li')
    li.style.setProperty('--dot', colorFor(id))
    li.textContent = id === me ? `${name} (you)` : name
    li.dataset.user = id
    list.appendChild(li)
    if (id !== me) to.appendChild(new Option(`DM ${name}`, id))
  }
  if ([...to.options].some((o) => o.value === chosen)) to.value = chosen
  $('online-count').textContent = `(${users.size})`
}

const onMessage = (m) => {
  const from = nameOf(m.from_user_id)
  switch (m.message_type) {
    case 'system_message':
      if (m.data && Array.isArray(m.data.online_users)) {
        users.clear()
        for (const u of m.data.online_users) users.set(u.user_id, u.username || u.user_id)
        me = m.data.user_id || me
        renderUsers()
      }
      appendLog(log, [['kind', 'system'], ['text', textOf(m.data)]], { kind: 'system' })
      break
    case 'user_joined':
      users.set(m.data.user_id, m.data.username || m.data.user_id)
      renderUsers()
      appendLog(log, [['text', `${m.data.username || m.data.user_id} joined`]], { kind: 'presence' })
      break
    case 'user_left':
      users.delete(m.data.user_id)
      renderUsers()
      appendLog(log, [['text', `${m.data.username || m.data.user_id} left`]], { kind: 'presence' })
      break
    case 'error':
      appendLog(log, [['kind', 'error'], ['text', `${m.data.code}: ${m.data.message}`]], { kind: 'error' })
      break
    case 'text':
    case 'notification': {
      const dm = m.to_user_id != null
      const label = dm ? `DM${m.from_user_id === me ? ' to ' + nameOf(m.to_user_id) : ''}` : m.message_type
      const li = appendLog(log, [['from', from], ['kind', label], ['text', textOf(m.data)]], { kind: dm ? 'dm' : '' })
      li.querySelector('.from').style.color = colorFor(m.from_user_id)
      break
    }
    default:
      appendLog(log, [['kind', m.message_type], ['text', textOf(m.data)]], { kind: 'system' })
  }
}

const connect = () => {
  attempts++
  setStatus(attempts > 1 ? `reconnecting (${attempts})` : 'connecting', 'warn')
  ws = new WebSocket(`${wsOrigin()}${route}?token=${encodeURIComponent(token)}`)
  ws.onopen = () => {
    attempts = 0
    setStatus('connected', 'ok')
    for (const c of controls) c.disabled = false
    $('msg').focus()
  }
  ws.onmessage = (ev) => {
    if (typeof ev.data !== 'string') return
    try {
      onMessage(JSON.parse(ev.data))
    } catch (e) {
      appendLog(log, [['kind', 'raw'], ['text', ev.data]], { kind: 'system' })
    }
  }
  ws.onclose = (ev) => {
    for (const c of controls) c.disabled = true
    users.clear()
    renderUsers()
    if (attempts >= 5) {
      showProblem('The gateway keeps refusing or closing the connection. Is the token valid (a <code>default</code>-profile token, ' +
        '<code>gateway token --sub alice</code>) and not expired? Reload the page to try again.')
      return
    }
    setStatus(`closed (${ev.code}${ev.reason ? ' ' + ev.reason : ''}), retrying`, 'bad')
    setTimeout(connect, 1000 * attempts)
  }
}

$('send-form').addEventListener('submit', (ev) => {
  ev.preventDefault()
  const text = $('msg').value
  if (!text.trim() || !ws || ws.readyState !== WebSocket.OPEN) return
  const msg = { message_type: $('type').value, data: { text } }
  if ($('to').value) msg.to_user_id = $('to').value
  ws.send(JSON.stringify(msg))
  $('msg').value = ''
})

if (!token) {
  showProblem('This page needs a chat token in its address: <code>chat.html#token=&lt;JWT&gt;</code>. ' +
    '<code>gateway serve --dev</code> (or <code>scripts/serve</code>) prints a ready link; otherwise mint one with ' +
    '<code>gateway token --sub alice --claim username=Alice</code>.')
} else {
  $('me').textContent = `as ${jwtClaim(token, 'username') || jwtClaim(token) || '?'}`
  connect()
}

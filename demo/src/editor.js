// A collaborative plain-text editor: yjs + y-websocket (the versions tests/interop uses) against
// the gateway's Yjs route, a textarea bound to a Y.Text, and awareness for who is here.
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import { bindTextarea } from './textbinding.js'
import { $, colorFor, fragment, jwtClaim, setStatus, showProblem, wsOrigin } from './common.js'

const params = fragment()
const token = params.get('token')
const route = params.get('route') || '/yjs'
const room = params.get('room') || new URLSearchParams(location.search).get('room') || 'demo'
$('room').textContent = room

const renderPeers = (awareness) => {
  const list = $('peers')
  list.replaceChildren()
  const states = [...awareness.getStates()].filter(([, s]) => s && s.user)
  for (const [clientId, state] of states.sort((a, b) => String(a[1].user.name).localeCompare(String(b[1].user.name)))) {
    const li = document.createElement('li')
    li.style.setProperty('--dot', state.user.color || colorFor(clientId))
    li.textContent = clientId === awareness.clientID ? `${state.user.name} (you)` : String(state.user.name)
    li.dataset.client = String(clientId)
    list.appendChild(li)
  }
  $('peer-count').textContent = `(${states.length})`
}

const start = () => {
  const doc = new Y.Doc()
  const ytext = doc.getText('text')
  const provider = new WebsocketProvider(`${wsOrigin()}${route}`, room, doc, {
    params: { yauth: token },
    maxBackoffTime: 5000
  })
  const name = params.get('name') || jwtClaim(token, 'username') || jwtClaim(token) || `guest-${doc.clientID % 1000}`
  $('name').value = name
  provider.awareness.setLocalStateField('user', { name, color: colorFor(name) })
  $('name').addEventListener('change', () => {
    const n = $('name').value.trim() || name
    provider.awareness.setLocalStateField('user', { name: n, color: colorFor(n) })
  })
  provider.awareness.on('change', () => renderPeers(provider.awareness))
  renderPeers(provider.awareness)

  const textarea = $('editor')
  bindTextarea(ytext, textarea)
  let closes = 0
  let gaveUp = false
  provider.on('status', ({ status }) => {
    if (gaveUp) return
    if (status === 'connected') {
      closes = 0
      setStatus('connected', 'ok')
    } else {
      setStatus(status, status === 'connecting' ? 'warn' : 'bad')
    }
  })
  provider.on('connection-close', () => {
    if (++closes >= 5 && !provider.wsconnected && !gaveUp) {
      gaveUp = true
      showProblem('The gateway keeps refusing the connection. Is the token a Yjs token (<code>gateway token --sub alice --aud yjs</code>) and not expired?')
      setTimeout(() => provider.disconnect(), 0)
    }
  })
  provider.on('sync', (synced) => {
    $('synced').textContent = synced ? 'synced' : 'syncing…'
    if (synced) textarea.disabled = false
  })
  window.demo = { doc, ytext, provider }
}

if (!token) {
  showProblem('This page needs a Yjs token in its address: <code>editor.html#token=&lt;JWT&gt;&amp;room=notes</code>. ' +
    '<code>gateway serve --dev</code> (or <code>scripts/serve</code>) prints a ready link; otherwise mint one with ' +
    '<code>gateway token --sub alice --aud yjs</code> (Yjs rooms take tokens of the <code>yjs</code> audience).')
} else {
  start()
}

// The index carries credentials given in its own fragment on to the pages:
// index.html#token=<chat JWT>&yjs=<yjs JWT>&key=<Ably key> links each page with its own.
import { fragment } from './common.js'

const p = fragment()
const link = (id, page, values) => {
  const f = new URLSearchParams()
  for (const [k, v] of Object.entries(values)) if (v) f.set(k, v)
  if ([...f].length) document.getElementById(id).href = `${page}#${f}`
}
link('chat-link', 'chat.html', { token: p.get('token') })
link('editor-link', 'editor.html', { token: p.get('yjs'), room: p.get('room') || (p.get('yjs') ? 'demo' : '') })
link('ably-link', 'ably.html', { key: p.get('key'), channel: p.get('channel') })

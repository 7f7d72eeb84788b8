// What every demo page shares: settings from the URL fragment, the gateway's address (the page's
// own origin), status lines and safe text rendering.

/** The URL fragment as parameters (`page.html#token=...&room=...`): never sent to a server. */
export const fragment = () => new URLSearchParams(location.hash.replace(/^#/, ''))

/** `ws://` or `wss://` plus the gateway's host, matching how the page itself was loaded. */
export const wsOrigin = () => `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}`

export const $ = (id) => document.getElementById(id)

/** Sets a status badge: kind is one of ok, warn, bad. */
export const setStatus = (text, kind = 'warn') => {
  const el = $('status')
  el.textContent = text
  el.dataset.kind = kind
}

/** Shows a clear message about what the page needs and why it cannot go on. */
export const showProblem = (html) => {
  const el = $('problem')
  el.innerHTML = html
  el.hidden = false
  setStatus('not connected', 'bad')
}

/** The `sub` (or another claim) of a JWT, decoded for display only (the gateway verifies it). */
export const jwtClaim = (token, claim = 'sub') => {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')
    return JSON.parse(atob(part))[claim]
  } catch {
    return undefined
  }
}

/** Appends one line to a log list and keeps it scrolled to the end (at most `max` lines). */
export const appendLog = (list, parts, { kind = '', max = 500 } = {}) => {
  const li = document.createElement('li')
  if (kind) li.className = kind
  const time = document.createElement('time')
  time.textContent = new Date().toLocaleTimeString()
  li.appendChild(time)
  for (const [cls, text] of parts) {
    const span = document.createElement('span')
    span.className = cls
    span.textContent = text
    li.appendChild(span)
  }
  list.appendChild(li)
  while (list.children.length > max) list.firstChild.remove()
  list.scrollTop = list.scrollHeight
  return li
}

/** A stable colour for a name. */
export const colorFor = (name) => {
  let h = 0
  for (const c of String(name)) h = (h * 31 + c.codePointAt(0)) >>> 0
  return `hsl(${h % 360} 65% 42%)`
}

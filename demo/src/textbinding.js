// A two-way binding between a <textarea> and a Y.Text.
//
// Local edits: the textarea's new value is compared with the text it showed before; the one
// changed span (common prefix and suffix removed) becomes one delete and one insert in a single
// transaction. Remote edits: the textarea gets the new text and its selection is moved through
// the change's delta, so the caret stays where it was relative to the surrounding text.
// Indexes are UTF-16 code units in both the textarea and Y.Text; a span never splits a surrogate
// pair.

const isHigh = (c) => c >= 0xd800 && c <= 0xdbff
const isLow = (c) => c >= 0xdc00 && c <= 0xdfff

/**
 * The single edit that turns `before` into `after`: at `index`, delete `remove` code units and
 * insert `insert`. `caret` (the caret after the edit) picks the span the user meant when the
 * change is ambiguous: typing "a" at the start of "aa" inserts at 0, not at 2.
 */
export const diff = (before, after, caret = after.length) => {
  const grown = after.length - before.length
  // After typing or pasting, the caret ends the inserted text: the edit starts at or before
  // (caret - how much the text grew).
  const limit = Math.min(before.length, after.length, Math.max(0, caret - Math.max(0, grown)))
  let start = 0
  while (start < limit && before.charCodeAt(start) === after.charCodeAt(start)) start++
  if (start > 0 && isHigh(before.charCodeAt(start - 1))) start--
  let endB = before.length
  let endA = after.length
  while (endB > start && endA > start && before.charCodeAt(endB - 1) === after.charCodeAt(endA - 1)) {
    endB--
    endA--
  }
  if (endB < before.length && isLow(before.charCodeAt(endB))) {
    endB++
    endA++
  }
  return { index: start, remove: endB - start, insert: after.slice(start, endA) }
}

/**
 * Moves a position of the old text through a Y.Text delta (`retain` / `insert` / `delete`) to
 * the same place in the new text. Text inserted exactly at the position goes after it, unless it
 * replaces text that ended there (a delete right before it): then the position follows it.
 */
export const transform = (pos, delta) => {
  let at = 0 // index in the old text
  let out = pos
  let replacing = false
  for (const op of delta) {
    if (at > pos || (at === pos && !(replacing && op.insert !== undefined))) break
    replacing = false
    if (op.retain !== undefined) {
      at += op.retain
    } else if (op.insert !== undefined) {
      out += typeof op.insert === 'string' ? op.insert.length : 1
    } else if (op.delete !== undefined) {
      out -= Math.min(op.delete, pos - at)
      at += op.delete
      replacing = true
    }
  }
  return Math.max(0, out)
}

/**
 * Binds `textarea` to `ytext`; returns a function that undoes the binding.
 * @param {import('yjs').Text} ytext
 * @param {HTMLTextAreaElement} textarea
 */
export const bindTextarea = (ytext, textarea) => {
  const doc = ytext.doc
  const origin = { binding: 'textarea' }
  let shown = ytext.toString()
  textarea.value = shown

  const onInput = () => {
    const now = textarea.value
    if (now === shown) return
    const { index, remove, insert } = diff(shown, now, textarea.selectionEnd)
    shown = now
    doc.transact(() => {
      if (remove > 0) ytext.delete(index, remove)
      if (insert.length > 0) ytext.insert(index, insert)
    }, origin)
  }

  const onChange = (event, transaction) => {
    if (transaction.origin === origin) return
    const focused = document.activeElement === textarea
    const { selectionStart, selectionEnd, selectionDirection, scrollTop } = textarea
    // Every local edit reached the document synchronously in onInput, so the textarea can
    // simply show the document.
    shown = ytext.toString()
    textarea.value = shown
    const start = transform(selectionStart, event.delta)
    const end = transform(selectionEnd, event.delta)
    if (focused) textarea.setSelectionRange(start, end, selectionDirection)
    else textarea.setSelectionRange(start, end)
    textarea.scrollTop = scrollTop
  }

  textarea.addEventListener('input', onInput)
  ytext.observe(onChange)
  return () => {
    textarea.removeEventListener('input', onInput)
    ytext.unobserve(onChange)
  }
}

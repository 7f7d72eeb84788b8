// The demo editor's textarea binding (demo/src/textbinding.js), without a browser: the edit it
// derives from two strings, applied to a real Y.Text, gives the new string; and a caret moves
// through the Y.Text delta of a remote edit to the same place in the text.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import * as Y from 'yjs'
import { diff, transform } from '../../../demo/src/textbinding.js'

const apply = (s, d) => s.slice(0, d.index) + d.insert + s.slice(d.index + d.remove)

test('diff picks the span the caret points at', () => {
  assert.deepEqual(diff('aa', 'aaa', 1), { index: 0, remove: 0, insert: 'a' })
  assert.deepEqual(diff('aa', 'aaa', 3), { index: 2, remove: 0, insert: 'a' })
  assert.deepEqual(diff('hello world', 'hello x', 7), { index: 6, remove: 5, insert: 'x' })
  // never half a surrogate pair
  assert.deepEqual(diff('a😀b', 'a😁b', 3), { index: 1, remove: 2, insert: '😁' })
  assert.deepEqual(diff('a😀b', 'ab', 1), { index: 1, remove: 2, insert: '' })
})

test('random edits round-trip through a Y.Text and carets follow remote deltas', () => {
  // A fixed-seed generator, so a failure reproduces.
  let seed = 12345
  const rand = (n) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff
    return seed % n
  }
  const alphabet = ['a', 'b', '😀', '\n']
  const word = (n) => Array.from({ length: rand(n) }, () => alphabet[rand(alphabet.length)]).join('')
  const cut = (s, k) => k > 0 && k < s.length && s.charCodeAt(k) >= 0xdc00 && s.charCodeAt(k) <= 0xdfff
  let checked = 0
  for (let i = 0; i < 3000; i++) {
    const before = word(10)
    const x = rand(before.length + 1)
    const y = x + rand(before.length - x + 1)
    if (cut(before, x) || cut(before, y)) continue
    const inserted = word(4)
    const after = before.slice(0, x) + inserted + before.slice(y)
    const d = diff(before, after, x + inserted.length)
    assert.equal(apply(before, d), after)
    const doc = new Y.Doc()
    const text = doc.getText('t')
    text.insert(0, before)
    let delta = null
    text.observe((e) => { delta = e.delta })
    doc.transact(() => {
      if (d.remove) text.delete(d.index, d.remove)
      if (d.insert) text.insert(d.index, d.insert)
    })
    assert.equal(text.toString(), after)
    if (!delta) continue
    for (let p = 0; p <= before.length; p++) {
      const got = transform(p, delta)
      if (p <= d.index) assert.equal(got, p, 'a caret before the edit stays')
      else if (p >= d.index + d.remove) assert.equal(got, p + after.length - before.length, 'a caret after the edit moves with its text')
      else assert.ok(got >= d.index && got <= d.index + d.insert.length, 'a caret inside the edit lands in it')
    }
    checked++
  }
  assert.ok(checked > 500, `only ${checked} cases`)
})

// Scenario 10: a ~20 MB document is uploaded by its first client (SyncStep2) and synced by another.
import assert from 'node:assert/strict'
import crypto from 'node:crypto'
import { describe } from 'node:test'
import * as Y from 'yjs'
import { itest, MODES, useEnv } from '../lib/fixture.js'
import { waitConverged } from '../lib/yclient.js'
import { waitFor } from '../lib/wait.js'

const ITEMS = 2000
const ITEM_CHARS = 10000 // random base64: does not compress trivially

const bigDoc = () => {
  const doc = new Y.Doc()
  const arr = doc.getArray('items')
  doc.transact(() => {
    for (let i = 0; i < ITEMS; i += 100) {
      const chunk = []
      for (let j = i; j < i + 100; j++) chunk.push(crypto.randomBytes((ITEM_CHARS / 4) * 3).toString('base64'))
      arr.push(chunk)
    }
  })
  doc.getMap('map').set('size', 'big')
  return doc
}

for (const mode of MODES) {
  describe(`large document (${mode})`, () => {
    const env = useEnv({ name: 'large', mode })

    itest(env, '20 MB doc uploads on connect and a second client syncs it', async (env) => {
      const room = env.room('large')
      const doc = bigDoc()
      const bytes = Y.encodeStateAsUpdate(doc).length
      assert.ok(bytes > 19_000_000, `doc is only ${bytes} bytes`)
      const a = await env.client({ room, doc, label: 'uploader' })
      await a.synced(60000)
      const b = await env.client({ room, user: 'bob', label: 'downloader' })
      await b.synced(60000)
      await waitFor(() => b.doc.getArray('items').length === ITEMS, {
        timeout: 60000,
        interval: 250,
        what: () => `downloader to receive ${ITEMS} items (has ${b.doc.getArray('items').length}); uploader closes ${JSON.stringify(a.closes)}`
      })
      await waitConverged([a, b], { timeout: 30000, interval: 500 })
      assert.deepEqual(a.closes, [], 'uploader connection was closed')
      assert.deepEqual(b.closes, [], 'downloader connection was closed')
    }, { timeout: 150000 })
  })
}

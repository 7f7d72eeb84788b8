// The demo pages (/demo/) and the admin page (/admin) in headless Chromium (Debian's `chromium`
// driven by playwright-core): two pages per demo, what one types appears in the other; the admin
// page lists connections and plugins and publishes into a chat topic an open chat page shows.
// Screenshots go to tests/interop/output/screenshots/.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { after, before, describe } from 'node:test'
import { KEY, ablyToml } from '../lib/ably.js'
import { chatToml } from '../lib/chat.js'
import { interopDir, repoDir, which } from '../lib/env.js'
import { itest, useEnv } from '../lib/fixture.js'
import { http } from '../lib/net.js'
import { hs256 } from '../lib/tokens.js'

const CHROMIUM = process.env.INTEROP_CHROMIUM || '/usr/bin/chromium'
const demoDist = path.join(repoDir, 'demo', 'dist')
const shots = path.join(interopDir, 'output', 'screenshots')
const ADMIN_KEY = 'demo-test-admin-key'
const STEP_MS = 15000

const skip = which(CHROMIUM)
  ? false
  : `chromium not found at ${CHROMIUM}: install it with  apt-get install -y chromium  (or set INTEROP_CHROMIUM)`

const q = (s) => JSON.stringify(String(s))
const chatToken = (sub, username = sub) =>
  hs256({ sub, username, exp: Math.floor(Date.now() / 1000) + 3600 })
const unique = (prefix) => `${prefix}-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e6).toString(36)}`

// The gateway's admin guard reads GATEWAY_ADMIN_KEY from its environment, which the harness
// passes on from this process.
process.env.GATEWAY_ADMIN_KEY = ADMIN_KEY

describe('demo and admin pages in headless Chromium', { skip }, () => {
  const getEnv = useEnv({
    name: 'demo',
    serverToml: `demo = true\ndemo_dir = ${q(demoDist)}`,
    extraToml: chatToml() + '\n' + ablyToml()
  })
  let browser = null
  const opened = []

  before(async () => {
    assert.ok(fs.existsSync(path.join(demoDist, 'index.html')), `demo pages not built in ${demoDist}: run scripts/build-demo`)
    fs.mkdirSync(shots, { recursive: true })
    const { chromium } = await import('playwright-core')
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      timeout: 60000,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync']
    })
  }, { timeout: 90000 })

  after(async () => {
    if (browser) await browser.close().catch(() => {})
  }, { timeout: 30000 })

  /** A page in its own context (own sessionStorage), its console kept for failure reports. */
  const openPage = async (url, label) => {
    const context = await browser.newContext({ viewport: { width: 1100, height: 720 } })
    const page = await context.newPage()
    page.setDefaultTimeout(STEP_MS)
    const logs = []
    page.on('console', (m) => logs.push(`[${label} console.${m.type()}] ${m.text()}`))
    page.on('pageerror', (e) => logs.push(`[${label} pageerror] ${e.message}`))
    opened.push({ context, logs })
    await page.goto(url, { waitUntil: 'load' })
    return Object.assign(page, { label, logs })
  }

  /** Runs `fn` with the pages' console output appended to a failure. */
  const withLogs = async (pages, fn) => {
    try {
      await fn()
    } catch (e) {
      e.message += '\n' + pages.flatMap((p) => p.logs.slice(-30)).join('\n')
      throw e
    } finally {
      for (const p of pages) await p.context().close().catch(() => {})
    }
  }

  const shot = (page, name) => page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true })
  const statusIs = (page, text) => page.waitForFunction((t) => document.getElementById('status').textContent === t, text)
  const logHas = (page, text) =>
    page.waitForFunction((t) => [...document.querySelectorAll('#log li')].some((li) => li.textContent.includes(t)), text)

  itest(getEnv, 'the gateway serves the built pages with their types and nothing outside demo_dir', async (env) => {
    const base = env.gw.httpBase
    const index = await http(`${base}/demo/`)
    assert.equal(index.status, 200)
    assert.match(index.headers.get('content-type'), /^text\/html/)
    const js = await http(`${base}/demo/editor.js`)
    assert.equal(js.status, 200)
    assert.match(js.headers.get('content-type'), /^text\/javascript/)
    assert.equal((await http(`${base}/demo/style.css`)).headers.get('content-type'), 'text/css; charset=utf-8')
    assert.equal((await http(`${base}/demo/editor.js.map`)).headers.get('content-type'), 'application/json')
    const head = await http(`${base}/demo/chat.html`, { method: 'HEAD' })
    assert.equal(head.status, 200)
    assert.equal(head.body.length, 0)
    for (const bad of ['/demo/../Cargo.toml', '/demo/%2e%2e/Cargo.toml', '/demo/..%2fCargo.toml', '/demo//etc/passwd', '/demo/nope.js']) {
      assert.equal((await rawGet(env.gw.port, bad)).status, 404, bad)
    }
    assert.equal((await http(`${base}/admin/api/status`)).status, 401)
  })

  itest(getEnv, 'a page opened without credentials says what it needs', async (env) => {
    for (const [page, needs] of [['chat.html', 'chat.html#token='], ['editor.html', 'editor.html#token='], ['ably.html', 'ably.html#key=']]) {
      const p = await openPage(`${env.gw.httpBase}/demo/${page}`, page)
      await withLogs([p], async () => {
        await p.waitForSelector('#problem:not([hidden])')
        assert.ok((await p.textContent('#problem')).includes(needs), page)
        assert.equal(await p.textContent('#status'), 'not connected')
        if (page === 'chat.html') await shot(p, 'chat-no-token')
      })
    }
  })

  itest(getEnv, 'chat: a broadcast and a DM typed in one page appear in the other, with presence', async (env) => {
    const url = (tok) => `${env.gw.httpBase}/demo/chat.html#token=${tok}`
    const alice = await openPage(url(chatToken('alice', 'Alice')), 'alice')
    const bob = await openPage(url(chatToken('bob', 'Bob')), 'bob')
    await withLogs([alice, bob], async () => {
      await statusIs(alice, 'connected')
      await statusIs(bob, 'connected')
      await alice.waitForSelector('#users li[data-user="bob"]')
      await bob.waitForSelector('#users li[data-user="alice"]')
      await alice.fill('#msg', 'hello from alice')
      await alice.press('#msg', 'Enter')
      await logHas(bob, 'hello from alice')
      await bob.selectOption('#to', 'alice')
      await bob.fill('#msg', 'psst, only you')
      await bob.click('#send')
      await logHas(alice, 'psst, only you')
      await shot(alice, 'chat-alice')
      await shot(bob, 'chat-bob')
    })
  })

  itest(getEnv, 'editor: text typed in one page appears in the other, carets stay put, awareness lists both', async (env) => {
    const room = unique('demo-room')
    const url = async (user) => `${env.gw.httpBase}/demo/editor.html#token=${await env.auth.token(user)}&room=${room}&name=${user}`
    const a = await openPage(await url('alice'), 'editor-a')
    const b = await openPage(await url('bob'), 'editor-b')
    const value = (p) => p.$eval('#editor', (t) => t.value)
    const waitValue = (p, v) => p.waitForFunction((v) => document.getElementById('editor').value === v, v)
    await withLogs([a, b], async () => {
      await statusIs(a, 'connected')
      await statusIs(b, 'connected')
      await a.waitForSelector('#editor:not([disabled])')
      await b.waitForSelector('#editor:not([disabled])')
      await a.click('#editor')
      await a.keyboard.type('Hello')
      await waitValue(b, 'Hello')
      await b.click('#editor')
      await b.press('#editor', 'End')
      await b.keyboard.type(' world')
      await waitValue(a, 'Hello world')
      // Alice's caret sits after "He"; Bob inserts at the start: her caret moves with her text.
      await a.$eval('#editor', (t) => t.setSelectionRange(2, 2))
      await b.$eval('#editor', (t) => t.setSelectionRange(0, 0))
      await b.keyboard.type('>> ')
      await waitValue(a, '>> Hello world')
      assert.deepEqual(await a.$eval('#editor', (t) => [t.selectionStart, t.selectionEnd]), [5, 5])
      await a.keyboard.type('y')
      await waitValue(b, '>> Heyllo world')
      assert.equal(await value(a), '>> Heyllo world')
      await a.waitForFunction(() => document.querySelectorAll('#peers li').length === 2)
      await b.waitForFunction(() => document.querySelectorAll('#peers li').length === 2)
      const names = await a.$$eval('#peers li', (lis) => lis.map((li) => li.textContent).sort())
      assert.deepEqual(names, ['alice (you)', 'bob'])
      await shot(a, 'editor-a')
      await shot(b, 'editor-b')
    })
  })

  itest(getEnv, 'ably: a message published in one page arrives in the other, presence lists both', async (env) => {
    const channel = unique('room')
    const url = (clientId) => `${env.gw.httpBase}/demo/ably.html#key=${encodeURIComponent(KEY)}&channel=${channel}&clientId=${clientId}`
    const a = await openPage(url('alice'), 'ably-a')
    const b = await openPage(url('bob'), 'ably-b')
    await withLogs([a, b], async () => {
      await statusIs(a, 'connected')
      await statusIs(b, 'connected')
      await a.waitForSelector('#members li[data-client="bob"]')
      await b.waitForSelector('#members li[data-client="alice"]')
      await a.waitForSelector('#msg:not([disabled])')
      await a.fill('#msg', 'hi from the ably page')
      await a.press('#msg', 'Enter')
      await logHas(b, 'hi from the ably page')
      await logHas(a, 'hi from the ably page')
      await shot(a, 'ably-a')
      await shot(b, 'ably-b')
    })
  })

  itest(getEnv, 'admin: log in with the key, see connections and plugins, publish into a chat page', async (env) => {
    const chat = await openPage(`${env.gw.httpBase}/demo/chat.html#token=${chatToken('carol', 'Carol')}`, 'chat-carol')
    const admin = await openPage(`${env.gw.httpBase}/admin`, 'admin')
    await withLogs([chat, admin], async () => {
      await statusIs(chat, 'connected')
      await admin.fill('#key', 'wrong-key')
      await admin.click('#login-button')
      await admin.waitForFunction(() => document.getElementById('login-error').textContent.includes('refused'))
      await admin.fill('#key', ADMIN_KEY)
      await admin.click('#login-button')
      await admin.waitForSelector('#dash:not([hidden])')
      await admin.waitForFunction(() => [...document.querySelectorAll('#plugins tr')].some((tr) => tr.textContent.startsWith('chat')))
      await admin.waitForFunction(() => [...document.querySelectorAll('#connections tr')].some((tr) => tr.textContent.includes('carol')))
      await admin.waitForFunction(() => [...document.querySelectorAll('#topics tr')].some((tr) => tr.textContent.includes('chat:all')))
      assert.equal(await admin.evaluate(() => sessionStorage.getItem('gatewayAdminKey')), ADMIN_KEY)
      await admin.selectOption('#pub-plugin', 'chat')
      await admin.fill('#pub-topic', 'chat:all')
      await admin.check('#pub-chat')
      await admin.fill('#pub-data', 'maintenance at noon')
      await admin.click('#pub-send')
      await admin.waitForFunction(() => document.getElementById('pub-result').textContent.startsWith('published: 1'))
      await logHas(chat, 'maintenance at noon')
      await shot(admin, 'admin')
      await shot(chat, 'admin-chat')
    })
  })
})

/** A GET with the path sent exactly as given (fetch and URL would normalise `..`). */
const rawGet = (port, rawPath) => new Promise((resolve, reject) => {
  import('node:http').then(({ request }) => {
    const req = request({ host: '127.0.0.1', port, path: rawPath, method: 'GET', timeout: 5000 }, (res) => {
      res.resume()
      res.on('end', () => resolve({ status: res.statusCode }))
    })
    req.on('timeout', () => req.destroy(new Error(`GET ${rawPath} timed out`)))
    req.on('error', reject)
    req.end()
  }, reject)
})

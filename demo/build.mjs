// Bundles the demo pages for the gateway (`[server] demo = true` serves dist/ under /demo/).
// esbuild from npm turns each page's ES module and its npm dependencies (yjs, y-websocket,
// ably) into one browser file, so the pages load nothing from a CDN and need no dev server.
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import * as esbuild from 'esbuild'

const here = path.dirname(fileURLToPath(import.meta.url))
const src = path.join(here, 'src')
const dist = path.join(here, 'dist')
const pages = ['index', 'chat', 'editor', 'ably']

fs.rmSync(dist, { recursive: true, force: true })
fs.mkdirSync(dist, { recursive: true })
await esbuild.build({
  entryPoints: pages.map((p) => path.join(src, `${p}.js`)),
  outdir: dist,
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2020'],
  minify: true,
  sourcemap: true,
  legalComments: 'linked',
  logLevel: 'warning'
})
for (const f of fs.readdirSync(src)) {
  if (f.endsWith('.html') || f.endsWith('.css') || f.endsWith('.svg')) {
    fs.copyFileSync(path.join(src, f), path.join(dist, f))
  }
}
console.log(`demo pages built into ${path.relative(process.cwd(), dist) || dist}: ${fs.readdirSync(dist).sort().join(' ')}`)

// Paths and knobs shared by the harness. Everything can be overridden by environment variables
// (scripts/test-interop sets them); the defaults match the repository layout.
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const interopDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
export const repoDir = path.resolve(interopDir, '..', '..')

const targetDir = process.env.CARGO_TARGET_DIR
  ? path.resolve(repoDir, process.env.CARGO_TARGET_DIR)
  : path.join(repoDir, 'target')

/** The gateway binary (debug build). */
export const gatewayBin = process.env.INTEROP_GATEWAY_BIN || path.join(targetDir, 'debug', 'gateway')
/** The yjs-sync plugin component. */
export const pluginWasm = process.env.INTEROP_PLUGIN_WASM || path.join(repoDir, 'dist', 'plugins', 'yjs_sync.wasm')
/** Shared with the repository so compiled plugin components are reused across gateways and runs. */
export const cacheDir = process.env.INTEROP_CACHE_DIR || path.join(repoDir, '.gateway-cache')

export const venvDir = path.join(interopDir, '.venv')
export const python = process.env.INTEROP_PYTHON || path.join(venvDir, 'bin', 'python')
export const motoServer = process.env.INTEROP_MOTO_SERVER || path.join(venvDir, 'bin', 'moto_server')
export const redisServer = process.env.INTEROP_REDIS_SERVER || 'redis-server'
export const pycrdtClient = path.join(interopDir, 'pycrdt_client.py')

/** Keep every temp dir (configs, data, logs) even when the tests pass. */
export const keepTmp = process.env.INTEROP_KEEP_TMP === '1'
/** Print every gateway's log tail at teardown, not only on failure. */
export const verbose = process.env.INTEROP_VERBOSE === '1'
/** Multiplies every harness wait (not the node:test timeouts): for slow machines. */
export const timeScale = Math.max(1, Number(process.env.INTEROP_TIME_SCALE || 1))
/** How long a gateway may take to answer /health after spawn (the first start compiles the plugin). */
export const startTimeoutMs = Number(process.env.INTEROP_START_TIMEOUT_MS || 180000)

/** Is `cmd` an executable file, or a name found on PATH? */
export const which = (cmd) => {
  if (cmd.includes('/')) return isExecutable(cmd) ? cmd : null
  for (const dir of (process.env.PATH || '').split(path.delimiter)) {
    const p = path.join(dir || '.', cmd)
    if (isExecutable(p)) return p
  }
  return null
}

const isExecutable = (p) => {
  try {
    fs.accessSync(p, fs.constants.X_OK)
    return fs.statSync(p).isFile()
  } catch {
    return false
  }
}

/** Throws a readable error if the gateway or the plugin is not built. */
export const assertBuilt = () => {
  const missing = []
  if (!isExecutable(gatewayBin)) missing.push(`gateway binary ${gatewayBin} (build: cargo build -p gateway)`)
  if (!fs.existsSync(pluginWasm)) missing.push(`plugin ${pluginWasm} (build: scripts/build-plugins)`)
  if (missing.length) throw new Error('not built: ' + missing.join('; '))
}

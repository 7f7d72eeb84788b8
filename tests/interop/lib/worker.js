// The standalone compaction worker: `gateway worker --config FILE` (no listener; needs [redis]).
import path from 'node:path'
import { assertBuilt, gatewayBin } from './env.js'
import { ManagedProcess } from './proc.js'
import { fatal, waitFor, withTimeout } from './wait.js'

/** What `gateway worker` prints on stdout once its backends are open and the worker runs. */
const READY_RE = /gateway worker running/

let seq = 0

const spawnWorker = (name, dir, configFile, logFile) => new ManagedProcess(name, gatewayBin, ['worker', '--config', configFile], {
  cwd: dir,
  logFile,
  env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info', RUST_BACKTRACE: '1' }
})

export class WorkerProcess {
  /**
   * @param {string} dir a directory of its own (log)
   * @param {{ configFile: string, name?: string }} opts the config is used as is (e.g. a gateway's)
   */
  constructor (dir, { configFile, name }) {
    this.dir = dir
    this.configFile = configFile
    this.name = name || `worker-${++seq}`
    this.logFile = path.join(dir, `${this.name}.log`)
    this.proc = null
  }

  /** Starts the process; resolves once it reports that the worker runs (bounded). */
  async start (timeout = 30000) {
    assertBuilt()
    this.proc = spawnWorker(this.name, this.dir, this.configFile, this.logFile)
    try {
      await waitFor(() => {
        if (!this.proc.running) throw fatal(`gateway worker exited before running (code=${this.proc.exitCode} signal=${this.proc.signal})`)
        return this.proc.lines.some((l) => READY_RE.test(l))
      }, { timeout, interval: 50, what: `${this.name} to print "gateway worker running"` })
      return this
    } catch (e) {
      await this.proc.stop('SIGKILL')
      throw new Error(`${this.name} failed to start: ${e.message}\n--- ${this.name} log tail ---\n${this.proc.tail(80)}`)
    }
  }

  /** Graceful stop (SIGTERM); resolves { code, signal } (SIGKILL after 15 s, see ManagedProcess.stop). */
  async stop () {
    if (this.proc) return this.proc.stop('SIGTERM', 15000)
  }

  get running () {
    return Boolean(this.proc && this.proc.running)
  }

  tail (n = 150) {
    return this.proc ? this.proc.tail(n) : ''
  }
}

/**
 * Runs `gateway worker --config FILE` expecting it to exit by itself; resolves
 * { code, signal, output } (stdout lines are prefixed `[stdout] `). Killed after `timeout`.
 */
export const runWorkerToExit = async (dir, configFile, { name = `worker-${++seq}`, timeout = 30000 } = {}) => {
  assertBuilt()
  const proc = spawnWorker(name, dir, configFile, path.join(dir, `${name}.log`))
  try {
    const { code, signal } = await withTimeout(proc.exited, timeout, `${name} to exit by itself`)
    return { code, signal, output: proc.tail(200) }
  } catch (e) {
    await proc.kill()
    throw new Error(`${e.message}\n--- ${name} log tail ---\n${proc.tail(80)}`)
  }
}

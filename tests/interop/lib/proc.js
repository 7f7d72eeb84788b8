// Child processes whose output is kept (in memory and in a log file) and which are always reaped.
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import { withTimeout } from './wait.js'

const live = new Set()
// Last resort: never leave a child behind if the test process exits abruptly.
process.on('exit', () => {
  for (const p of live) {
    try { p.child.kill('SIGKILL') } catch {}
  }
})

export class ManagedProcess {
  /**
   * @param {string} name label for logs
   * @param {string} cmd
   * @param {string[]} args
   * @param {{ env?: NodeJS.ProcessEnv, cwd?: string, logFile?: string, maxLines?: number }} [opts]
   */
  constructor (name, cmd, args, { env, cwd, logFile, maxLines = 4000 } = {}) {
    this.name = name
    this.cmd = cmd
    this.args = args
    this.lines = []
    this.maxLines = maxLines
    this.logFile = logFile
    this.exitCode = undefined
    this.signal = undefined
    const child = spawn(cmd, args, { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] })
    this.child = child
    this.pid = child.pid
    live.add(this)
    this.logStream = logFile ? fs.createWriteStream(logFile, { flags: 'a' }) : null
    this._partial = { stdout: '', stderr: '' }
    const onData = (stream) => (chunk) => {
      const text = this._partial[stream] + chunk.toString('utf8')
      const parts = text.split('\n')
      this._partial[stream] = parts.pop()
      for (const line of parts) this._push(stream === 'stderr' ? line : '[stdout] ' + line)
    }
    child.stdout.on('data', onData('stdout'))
    child.stderr.on('data', onData('stderr'))
    this.exited = new Promise((resolve) => {
      child.on('error', (err) => {
        this._push(`[harness] spawn error: ${err.message}`)
        this.exitCode = -1
        live.delete(this)
        resolve({ code: -1, signal: null })
      })
      child.on('close', (code, signal) => {
        for (const s of ['stdout', 'stderr']) if (this._partial[s]) this._push(this._partial[s])
        this.exitCode = code
        this.signal = signal
        live.delete(this)
        this._push(`[harness] ${name} exited code=${code} signal=${signal}`)
        if (this.logStream) this.logStream.end()
        resolve({ code, signal })
      })
    })
  }

  _push (line) {
    this.lines.push(line)
    if (this.lines.length > this.maxLines) this.lines.splice(0, this.lines.length - this.maxLines)
    if (this.logStream && !this.logStream.writableEnded) this.logStream.write(line + '\n')
  }

  get running () {
    return this.exitCode === undefined
  }

  tail (n = 150) {
    return this.lines.slice(-n).join('\n')
  }

  /** Sends `signal`, waits up to `graceMs` for the exit, then SIGKILLs (bounded in every case). */
  async stop (signal = 'SIGTERM', graceMs = 10000) {
    if (!this.running) return this.exited
    try { this.child.kill(signal) } catch {}
    try {
      return await withTimeout(this.exited, graceMs, `${this.name} to exit after ${signal}`)
    } catch {
      this._push(`[harness] ${this.name} did not exit within ${graceMs} ms of ${signal}; SIGKILL`)
      try { this.child.kill('SIGKILL') } catch {}
      return withTimeout(this.exited, 10000, `${this.name} to exit after SIGKILL`)
    }
  }

  /** SIGKILL and wait for the exit (a crash, from the child's point of view). */
  async kill () {
    if (!this.running) return this.exited
    try { this.child.kill('SIGKILL') } catch {}
    return withTimeout(this.exited, 10000, `${this.name} to exit after SIGKILL`)
  }
}

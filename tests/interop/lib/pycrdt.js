// Runs tests/interop/pycrdt_client.py (a pycrdt-based y-websocket client) with a hard timeout.
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import { pycrdtClient, python } from './env.js'

export const pythonAvailable = () => fs.existsSync(python)

/**
 * @param {string[]} args arguments for pycrdt_client.py
 * @param {number} timeoutMs killed (SIGKILL) after this
 * @returns {Promise<{ code: number|null, result: any, stdout: string, stderr: string }>}
 */
export const runPycrdt = (args, timeoutMs = 60000) => new Promise((resolve) => {
  const child = spawn(python, [pycrdtClient, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d) => { stdout += d })
  child.stderr.on('data', (d) => { stderr += d })
  const timer = setTimeout(() => {
    stderr += `\n[harness] killed after ${timeoutMs} ms`
    child.kill('SIGKILL')
  }, timeoutMs)
  child.on('close', (code) => {
    clearTimeout(timer)
    let result = null
    const last = stdout.trim().split('\n').pop()
    try {
      result = JSON.parse(last)
    } catch {}
    resolve({ code, result, stdout, stderr })
  })
})

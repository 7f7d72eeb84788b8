// Bounded waiting. Every wait in the suite goes through these, so nothing can hang forever.
import { timeScale } from './env.js'

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Polls `cond` until it returns a truthy value (which is returned) or the timeout expires.
 * Exceptions thrown by `cond` count as "not yet" (the last one is reported on timeout), except
 * errors made with `fatal()`, which end the wait at once.
 * `what` is a string or a function returning the current state, for the timeout message.
 *
 * @template T
 * @param {() => T | Promise<T>} cond
 * @param {{ timeout?: number, interval?: number, what?: string | (() => any) }} [opts]
 * @returns {Promise<T>}
 */
export const waitFor = async (cond, { timeout = 10000, interval = 50, what = 'condition' } = {}) => {
  const limit = timeout * timeScale
  const deadline = Date.now() + limit
  let lastError = null
  for (;;) {
    try {
      const v = await cond()
      if (v) return v
      lastError = null
    } catch (e) {
      if (e && e.fatal) throw e
      lastError = e
    }
    if (Date.now() >= deadline) {
      let state = what
      if (typeof what === 'function') {
        try {
          state = await what()
        } catch (e) {
          state = `(state unavailable: ${e.message})`
        }
      }
      if (typeof state !== 'string') state = JSON.stringify(state)
      throw new Error(`timed out after ${limit} ms waiting for ${state}` +
        (lastError ? ` (last error: ${lastError.stack || lastError})` : ''))
    }
    await sleep(interval)
  }
}

/**
 * Rejects if `promise` does not settle within `ms`.
 * @template T
 * @param {Promise<T>} promise
 * @param {number} ms
 * @param {string} what
 * @returns {Promise<T>}
 */
export const withTimeout = (promise, ms, what) => {
  const limit = ms * timeScale
  let timer
  const timeout = new Promise((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${limit} ms: ${what}`)), limit)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/** Scales a harness duration by INTEROP_TIME_SCALE. */
export const scaled = (ms) => ms * timeScale

/** An error that ends a waitFor at once instead of counting as "not yet". */
export const fatal = (message) => Object.assign(new Error(message), { fatal: true })

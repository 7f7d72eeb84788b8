// y-protocols frames, restated with lib0's encoder/decoder (clean-room, from the y-protocols wire format):
//   sync:      varUint 0, varUint sub (0 step1 | 1 step2 | 2 update), varUint8Array payload
//   awareness: varUint 1, varUint8Array( varUint n, n x (varUint clientID, varUint clock, varString JSON) )
import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'

export const MSG_SYNC = 0
export const MSG_AWARENESS = 1
export const SYNC_STEP1 = 0
export const SYNC_STEP2 = 1
export const SYNC_UPDATE = 2

/** `[0, 2, varUint8Array(update v1)]`: what y-redis stores in a stream entry's `m`. */
export const syncUpdateFrame = (update) => {
  const enc = encoding.createEncoder()
  encoding.writeVarUint(enc, MSG_SYNC)
  encoding.writeVarUint(enc, SYNC_UPDATE)
  encoding.writeVarUint8Array(enc, update)
  return encoding.toUint8Array(enc)
}

export const syncStep1Frame = (stateVector) => {
  const enc = encoding.createEncoder()
  encoding.writeVarUint(enc, MSG_SYNC)
  encoding.writeVarUint(enc, SYNC_STEP1)
  encoding.writeVarUint8Array(enc, stateVector)
  return encoding.toUint8Array(enc)
}

/** Decodes an awareness update payload into entries. */
export const parseAwarenessUpdate = (payload) => {
  const dec = decoding.createDecoder(payload)
  const n = decoding.readVarUint(dec)
  const entries = []
  for (let i = 0; i < n; i++) {
    const clientID = decoding.readVarUint(dec)
    const clock = decoding.readVarUint(dec)
    const json = decoding.readVarString(dec)
    entries.push({ clientID, clock, state: JSON.parse(json) })
  }
  if (decoding.hasContent(dec)) throw new Error(`awareness update has ${dec.arr.length - dec.pos} trailing bytes`)
  return entries
}

/**
 * Parses one frame that must hold exactly one y-protocols message (trailing bytes throw).
 * @param {Uint8Array} buf
 * @returns {{type:'sync', sub:number, payload:Uint8Array} | {type:'awareness', payload:Uint8Array, entries:any[]}}
 */
export const parseFrame = (buf) => {
  const dec = decoding.createDecoder(buf instanceof Uint8Array ? buf : new Uint8Array(buf))
  const t = decoding.readVarUint(dec)
  let out
  if (t === MSG_SYNC) {
    const sub = decoding.readVarUint(dec)
    if (sub > 2) throw new Error(`unknown sync sub-type ${sub}`)
    out = { type: 'sync', sub, payload: decoding.readVarUint8Array(dec) }
  } else if (t === MSG_AWARENESS) {
    const payload = decoding.readVarUint8Array(dec)
    out = { type: 'awareness', payload, entries: parseAwarenessUpdate(payload) }
  } else {
    throw new Error(`unexpected message type ${t}`)
  }
  if (decoding.hasContent(dec)) {
    throw new Error(`frame holds more than one message (${dec.arr.length - dec.pos} bytes after a ${out.type} message)`)
  }
  return out
}

export const hex = (buf, max = 48) => {
  const b = Buffer.from(buf)
  return b.subarray(0, max).toString('hex') + (b.length > max ? `...(${b.length} bytes)` : '')
}

// Token minting. `yredis` tokens are made with lib0's crypto/jwt exactly like y-redis's auth example
// (ES384 / P-384, raw r||s signature, `exp` in MILLISECONDS); `std` tokens are HS256 with `exp` in seconds.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import * as ecdsa from 'lib0/crypto/ecdsa'
import * as jwt from 'lib0/crypto/jwt'

export const STD_SECRET = 'interop-secret'

export class YredisAuth {
  /** Generates a key pair and writes the public JWK (a single JSON object) into `dir`. */
  static async create (dir) {
    const pair = await ecdsa.generateKeyPair({ extractable: true })
    const other = await ecdsa.generateKeyPair({ extractable: true })
    const jwk = await ecdsa.exportKeyJwk(pair.publicKey)
    const jwkFile = path.join(dir, 'auth-public.jwk.json')
    fs.writeFileSync(jwkFile, JSON.stringify(jwk))
    return new YredisAuth(pair, other, jwkFile)
  }

  constructor (pair, other, jwkFile) {
    this.pair = pair
    this.other = other
    this.jwkFile = jwkFile
  }

  /** A valid token for `yuserid` (exp one hour ahead, in ms, like y-redis's example auth server). */
  token (yuserid, { exp = Date.now() + 3600000, extra = {} } = {}) {
    return jwt.encodeJwt(this.pair.privateKey, { yuserid, exp, ...extra })
  }

  /** Signed by a key the gateway does not know. */
  badSignature (yuserid) {
    return jwt.encodeJwt(this.other.privateKey, { yuserid, exp: Date.now() + 3600000 })
  }

  /** `exp` (ms) one minute in the past. */
  expired (yuserid) {
    return jwt.encodeJwt(this.pair.privateKey, { yuserid, exp: Date.now() - 60000 })
  }
}

const b64url = (buf) => Buffer.from(buf).toString('base64url')

/** HS256 JWT. */
export const hs256 = (payload, secret = STD_SECRET) => {
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' })) + '.' + b64url(JSON.stringify(payload))
  return head + '.' + b64url(crypto.createHmac('sha256', secret).update(head).digest())
}

/** A token for the `std` route: `sub`, `exp` in SECONDS, optional `yaccess`. */
export const stdToken = (sub, { exp = Math.floor(Date.now() / 1000) + 3600, yaccess, secret } = {}) => {
  const payload = { sub, exp }
  if (yaccess !== undefined) payload.yaccess = yaccess
  return hs256(payload, secret)
}

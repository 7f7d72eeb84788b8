#!/usr/bin/env node
// Starts @hocuspocus/server on 127.0.0.1:PORT in the foreground: no extensions (in-memory docs,
// no persistence), default settings otherwise. Clients connect to ws://127.0.0.1:PORT/ and
// address documents inside the frames (varString documentName prefix, auth message first).
import { Server } from '@hocuspocus/server'

const port = Number(process.argv[2])
if (!(port > 0 && port < 65536)) {
  console.error('usage: node servers/hocuspocus.mjs PORT')
  process.exit(2)
}
const server = new Server({ port, address: '127.0.0.1', quiet: true })
await server.listen()
console.log(`hocuspocus listening on 127.0.0.1:${port}`)

// The permission callback y-redis style auth calls: GET /auth/perm/<room>/<userid>
// -> {"yroom":room,"yaccess":...,"yuserid":userid}. Access is chosen by user id so tests can pick:
//   reader -> "r", nobody -> "no-access", broken -> connection dropped (callback unreachable),
//   garbage -> 200 with a non-JSON body, anyone else -> "rw".
import http from 'node:http'

export const accessFor = (userid) => {
  if (userid === 'reader' || userid.startsWith('reader-')) return 'r'
  if (userid === 'nobody' || userid.startsWith('nobody-')) return 'no-access'
  return 'rw'
}

export class PermServer {
  static async start () {
    const s = new PermServer()
    await new Promise((resolve, reject) => {
      s.server.once('error', reject)
      s.server.listen(0, '127.0.0.1', resolve)
    })
    s.port = s.server.address().port
    s.url = `http://127.0.0.1:${s.port}/auth/perm`
    return s
  }

  constructor () {
    /** Every call, for assertions: { room, userid, url } (room is the raw path text). */
    this.calls = []
    this.sockets = new Set()
    this.server = http.createServer((req, res) => {
      const prefix = '/auth/perm/'
      const url = req.url || ''
      if (req.method !== 'GET' || !url.startsWith(prefix)) {
        res.writeHead(404).end()
        return
      }
      const rest = url.slice(prefix.length).split('?')[0]
      const cut = rest.lastIndexOf('/')
      const room = cut < 0 ? '' : rest.slice(0, cut)
      const userid = decodeURIComponent(cut < 0 ? rest : rest.slice(cut + 1))
      this.calls.push({ room, userid, url })
      if (userid === 'broken') {
        req.socket.destroy()
        return
      }
      if (userid === 'garbage') {
        res.writeHead(200, { 'content-type': 'text/plain' }).end('not json')
        return
      }
      const body = JSON.stringify({ yroom: room, yaccess: accessFor(userid), yuserid: userid })
      res.writeHead(200, { 'content-type': 'application/json' }).end(body)
    })
    this.server.on('connection', (sock) => {
      this.sockets.add(sock)
      sock.on('close', () => this.sockets.delete(sock))
    })
  }

  async stop () {
    for (const s of this.sockets) s.destroy()
    await new Promise((resolve) => this.server.close(() => resolve()))
  }
}

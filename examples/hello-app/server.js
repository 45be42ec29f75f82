// hello: answers with the node that served the request, the release it runs, and whether the
// database nodeset prepared for it is reachable. No dependencies.
import {readFileSync} from 'node:fs'
import http from 'node:http'
import net from 'node:net'

const env = process.env
const version = (() => {
  try {
    return readFileSync(new URL('./VERSION', import.meta.url), 'utf8').trim()
  } catch {
    return 'unversioned'
  }
})()

/** A TCP connect to the database, remembered for a few seconds so requests stay cheap. */
let database = {checkedAt: 0, reachable: false}
function checkDatabase() {
  if (!env.CONFIG_MYSQL_HOST) return Promise.resolve(undefined)
  if (Date.now() - database.checkedAt < 5000) return Promise.resolve(database.reachable)
  return new Promise((resolve) => {
    const socket = net.connect({host: env.CONFIG_MYSQL_HOST, port: Number(env.CONFIG_MYSQL_PORT)})
    const done = (reachable) => {
      socket.destroy()
      database = {checkedAt: Date.now(), reachable}
      resolve(reachable)
    }
    socket.setTimeout(1000, () => done(false))
    socket.once('connect', () => done(true))
    socket.once('error', () => done(false))
  })
}

const server = http.createServer(async (req, res) => {
  if (req.url === '/health') {
    res.writeHead(200, {'content-type': 'text/plain'})
    return res.end('ok\n')
  }
  const body = {
    app: env.NODESET_APP,
    node: env.NODESET_NODE,
    release: env.NODESET_RELEASE,
    version,
    database: env.CONFIG_MYSQL_HOST ? {name: env.CONFIG_MYSQL_DBNAME, host: env.CONFIG_MYSQL_HOST, reachable: await checkDatabase()} : null,
  }
  res.writeHead(200, {'content-type': 'application/json'})
  res.end(JSON.stringify(body) + '\n')
})

server.listen(Number(env.PORT ?? 8080), () => console.log(`hello ${version} (${env.NODESET_RELEASE}) listening on ${env.PORT} on ${env.NODESET_NODE}`))

// Stop taking connections, finish the requests in flight, then exit.
process.on('SIGTERM', () => {
  server.close(() => process.exit(0))
  server.closeIdleConnections()
  setTimeout(() => process.exit(0), 10_000).unref()
})

// Config server benchmark (not a test). Needs `npm run build` first: it runs dist/.
//
//   node bench/configserver/run.js [--instances 10000] [--concurrency 64]
//
// 1. Phone-home throughput and latency of the config server (its own process, SQLite WAL, each
//    answer after the fsync of its commit, request logging off) against a bare node:http server in its own process that
//    reads the same request and answers a fixed JSON: the ratio is the cost of validation, auth,
//    durable storage and resolution over plain HTTP on this machine. Between the two, the durable floor:
//    the bare server that also writes each phone-home's row durably, as the config server does, and
//    nothing else; what the config server costs over it is all but the durable write.
//    In the same run, when PostgreSQL answers (NODESET_BENCH_PG, default postgresql://postgres@127.0.0.1:5432;
//    a database is created and dropped): the config server over PostgreSQL, one replica, and two
//    replicas sharing the database with the phone-homes split between them.
// 2. Every app long-polls its config; the db phones home; the time from that phone-home to each
//    app's complete 200 (whole body received): p50 / p99 / last.
import {spawn} from 'node:child_process'
import fs from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {parseArgs} from 'node:util'
import {record, round} from '../results.js'

const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.resolve(here, '../..')
const {values: args} = parseArgs({
  options: {
    instances: {type: 'string', default: '10000'},
    concurrency: {type: 'string', default: '64'},
    child: {type: 'string'},
  },
})

const ms = (v) => `${v.toFixed(2)} ms`
const children = []
process.on('exit', () => children.forEach((c) => c.kill('SIGKILL')))

if (args.child) {
  // A server child ends with the benchmark, even when the benchmark fails.
  const servers = {bare: bareServer, durable: durableServer, fanout: fanoutServer, pg: pgServer, config: configServer}
  const stop = await servers[args.child]()
  const end = async () => {
    await stop()
    process.exit(0)
  }
  process.stdin.on('end', end).resume()
  process.on('SIGTERM', end)
} else {
  await main()
}

// --- the two servers, each run in its own process ---------------------------------------------

async function bareServer() {
  const answer = Buffer.from(JSON.stringify({deployment: 'bench', instance: 'app1', ip: '127.0.0.1'}))
  const server = http.createServer((request, response) => {
    const chunks = []
    request.on('data', (c) => chunks.push(c))
    request.on('end', () => {
      JSON.parse(Buffer.concat(chunks).toString() || '{}')
      response.writeHead(200, {'content-type': 'application/json; charset=utf-8', 'content-length': answer.length})
      response.end(answer)
    })
  })
  server.listen(0, '127.0.0.1', 4096, () =>
    process.stdout.write(JSON.stringify({url: `http://127.0.0.1:${server.address().port}`}) + '\n'),
  )
  return async () => {
    server.closeAllConnections()
    server.close()
  }
}

/**
 * The durable floor: the bare server plus the least any phone-home answered only once durable must
 * do, done the config server's way: one UPDATE of the instance's row by its key, the updates of one
 * event-loop turn committed together (SQLite WAL, synchronous=NORMAL), the WAL fdatasync'd on the
 * thread pool before their answers. No auth, no validation, no merge, no memory kept; it commits
 * while a sync runs, which the config server does not. What it costs over bare is what durability
 * costs on this machine.
 */
async function durableServer() {
  const {default: Database} = await import('better-sqlite3')
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-bench-floor-'))
  const file = path.join(dir, 'floor.db')
  const db = new Database(file)
  db.pragma('journal_mode = WAL')
  db.pragma('synchronous = NORMAL')
  db.pragma('wal_autocheckpoint = 10000')
  db.exec(`CREATE TABLE instances (deployment TEXT NOT NULL, id TEXT NOT NULL, facts TEXT NOT NULL DEFAULT '{}',
    address TEXT, last_contact INTEGER, PRIMARY KEY (deployment, id))`)
  const insert = db.prepare("INSERT INTO instances (deployment, id) VALUES ('bench', ?)")
  db.transaction(() => {
    for (let i = 1; i < Number(process.env.NODESET_BENCH_INSTANCES); i++) insert.run(`app${i}.bench.test`)
  })()
  const update = db.prepare(
    'UPDATE instances SET facts = ?, address = ?, last_contact = ? WHERE deployment = ? AND id = ?',
  )
  const wal = fs.openSync(`${file}-wal`, 'r+')
  const answer = Buffer.from(JSON.stringify({deployment: 'bench', instance: 'app1', ip: '127.0.0.1'}))
  const respond = ({response, changes}) => {
    // An unknown instance (nothing updated) is a 404, which stops the benchmark: the floor writes for real.
    response.writeHead(changes === 1 ? 200 : 404, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': answer.length,
    })
    response.end(answer)
  }
  let queued = []
  let unsynced = []
  let syncing = false
  const commit = db.transaction((batch) => {
    const now = Date.now()
    for (const w of batch) w.changes = update.run(w.facts, w.address, now, 'bench', w.id).changes
  })
  const sync = () => {
    if (syncing || unsynced.length === 0) return
    const covered = unsynced
    unsynced = []
    syncing = true
    fs.fdatasync(wal, (error) => {
      // A sync that failed made nothing durable: the floor stops rather than answer as if it had.
      if (error) throw error
      syncing = false
      for (const w of covered) respond(w)
      sync()
    })
  }
  const flush = () => {
    const batch = queued
    queued = []
    commit(batch)
    unsynced.push(...batch)
    sync()
  }
  const server = http.createServer((request, response) => {
    const chunks = []
    request.on('data', (c) => chunks.push(c))
    request.on('end', () => {
      const {facts} = JSON.parse(Buffer.concat(chunks).toString())
      const id = request.url.split('/')[5]
      if (queued.length === 0) setImmediate(flush)
      queued.push({id, facts: JSON.stringify(facts), address: request.socket.remoteAddress, response})
    })
  })
  server.listen(0, '127.0.0.1', 4096, () =>
    process.stdout.write(JSON.stringify({url: `http://127.0.0.1:${server.address().port}`}) + '\n'),
  )
  return async () => {
    server.closeAllConnections()
    server.close()
    db.close()
    fs.rmSync(dir, {recursive: true, force: true})
  }
}

/**
 * The long-poll baseline: holds every GET; a PUT {answer, id} answers it, then every held request,
 * each with `answer` where `id` is replaced by the instance id of its path.
 */
async function fanoutServer() {
  const held = []
  const type = 'application/json; charset=utf-8'
  const server = http.createServer((request, response) => {
    if (request.method === 'GET') return void held.push({url: request.url, response})
    const chunks = []
    request.on('data', (c) => chunks.push(c))
    request.on('end', () => {
      const {answer, id} = JSON.parse(Buffer.concat(chunks).toString())
      response.writeHead(200, {'content-type': type, 'content-length': 2})
      response.end('{}')
      // Like the config server: the waiters are answered after the event's own answer.
      setImmediate(() => {
        for (const {url, response} of held.splice(0)) {
          const body = Buffer.from(answer.replaceAll(id, /\/instances\/([^/]+)\//.exec(url)[1]))
          response.writeHead(200, {'content-type': type, 'content-length': body.length})
          response.end(body)
        }
      })
    })
  })
  server.listen(0, '127.0.0.1', 4096, () =>
    process.stdout.write(JSON.stringify({url: `http://127.0.0.1:${server.address().port}`}) + '\n'),
  )
  return async () => {
    server.closeAllConnections()
    server.close()
  }
}

async function configServer() {
  const entry = path.join(root, 'dist/configserver/server.js')
  if (!fs.existsSync(entry)) throw new Error(`${entry} is missing: run npm run build first`)
  const {startConfigServer} = await import(entry)
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-bench-cs-'))
  // Every simulated node connects from 127.0.0.1: lift the per-address cap (a real cloud has an address per node).
  const server = await startConfigServer({stateDir, logger: false, maxConnectionsPerAddress: 1_000_000})
  process.stdout.write(JSON.stringify({url: server.url, adminToken: server.adminToken}) + '\n')
  return async () => {
    await server.close()
    fs.rmSync(stateDir, {recursive: true, force: true})
  }
}

async function pgServer() {
  const {startConfigServer} = await import(path.join(root, 'dist/configserver/server.js'))
  const server = await startConfigServer({
    store: process.env.NODESET_BENCH_STORE,
    adminToken: process.env.NODESET_BENCH_ADMIN,
    logger: false,
    maxConnectionsPerAddress: 1_000_000,
  })
  process.stdout.write(JSON.stringify({url: server.url, adminToken: server.adminToken}) + '\n')
  return () => server.close()
}

/** A new database on the machine's PostgreSQL, or undefined when it does not answer. */
async function pgDatabase() {
  const base = process.env.NODESET_BENCH_PG ?? 'postgresql://postgres@127.0.0.1:5432'
  const {default: pg} = await import('pg')
  const name = `nodeset_bench_${process.pid}`
  const client = new pg.Client({connectionString: `${base}/postgres`, connectionTimeoutMillis: 3000})
  try {
    await client.connect()
    await client.query(`CREATE DATABASE ${name}`)
  } catch (error) {
    console.log(`(no PostgreSQL runs: ${error.message})`)
    return undefined
  } finally {
    await client.end().catch(() => {})
  }
  return {
    url: `${base}/${name}`,
    async drop() {
      const admin = new pg.Client({connectionString: `${base}/postgres`})
      await admin.connect()
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
      await admin.end()
    },
  }
}

function startChild(kind, env = {}) {
  const flags =
    kind === 'config' && process.env.NODESET_BENCH_PROFILE
      ? ['--cpu-prof', `--cpu-prof-dir=${process.env.NODESET_BENCH_PROFILE}`]
      : []
  const child = spawn(process.execPath, [...flags, fileURLToPath(import.meta.url), '--child', kind], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: {...process.env, ...env},
  })
  children.push(child)
  return new Promise((resolve, reject) => {
    let out = ''
    child.stdout.on('data', (c) => {
      out += c
      if (out.includes('\n')) resolve({child, ...JSON.parse(out.split('\n')[0])})
    })
    child.on('exit', (code) => reject(new Error(`${kind} server exited with ${code}`)))
  })
}

// --- the client ---------------------------------------------------------------------------------

function send(agent, url, method, pathname, token, body) {
  const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body))
  const target = new URL(url)
  return new Promise((resolve, reject) => {
    const request = http.request(
      {
        host: target.hostname,
        port: target.port,
        path: pathname,
        method,
        agent,
        headers: {
          authorization: `Bearer ${token}`,
          ...(data ? {'content-type': 'application/json', 'content-length': data.length} : {}),
        },
      },
      (response) => {
        const chunks = []
        response.on('data', (c) => chunks.push(c))
        response.on('end', () => resolve({status: response.statusCode, body: Buffer.concat(chunks)}))
      },
    )
    request.on('error', reject)
    request.end(data)
  })
}

/**
 * `requests` (whole HTTP/1.1 requests, as bytes) over `concurrency` keep-alive connections, one in
 * flight on each: each one's latency, and the wall time. A bare client over net, far cheaper per
 * request than node:http, so that the servers and not the client set the pace.
 */
async function closedLoop(url, requests, concurrency) {
  const {hostname, port} = new URL(url)
  const latencies = new Float64Array(requests.length)
  let next = 0
  const started = performance.now()
  await Promise.all(
    Array.from(
      {length: Math.min(concurrency, requests.length)},
      () =>
        new Promise((resolve, reject) => {
          const socket = net.connect(Number(port), hostname)
          socket.setNoDelay(true)
          let pending = Buffer.alloc(0)
          let current = -1
          let sentAt = 0
          const sendNext = () => {
            if (next >= requests.length) return (socket.end(), resolve())
            current = next++
            sentAt = performance.now()
            socket.write(requests[current])
          }
          socket.on('connect', sendNext)
          socket.on('data', (chunk) => {
            pending = pending.length ? Buffer.concat([pending, chunk]) : chunk
            const headEnd = pending.indexOf('\r\n\r\n')
            if (headEnd < 0) return
            const head = pending.toString('latin1', 0, headEnd)
            const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? NaN)
            if (pending.length < headEnd + 4 + length) return
            if (!head.startsWith('HTTP/1.1 200'))
              return reject(new Error(`request ${current}: ${head.split('\r\n')[0]}`))
            latencies[current] = performance.now() - sentAt
            pending = pending.subarray(headEnd + 4 + length)
            sendNext()
          })
          socket.on('error', reject)
        }),
    ),
  )
  return {latencies, seconds: (performance.now() - started) / 1000}
}

/** A PUT of facts as raw bytes. */
function phoneHomeRequest(url, id, token, body) {
  const data = JSON.stringify(body)
  const {host} = new URL(url)
  return Buffer.from(
    `PUT /v1/deployments/bench/instances/${id}/facts HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer ${token}\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(data)}\r\n\r\n${data}`,
  )
}

function summary(runs) {
  const latencies = Float64Array.from(runs.flatMap((r) => [...r.latencies]))
  const seconds = runs.reduce((sum, r) => sum + r.seconds, 0)
  return {perSecond: latencies.length / seconds, seconds, p50: quantile(latencies, 0.5), p99: quantile(latencies, 0.99)}
}

function quantile(values, q) {
  const sorted = Float64Array.from(values).sort()
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]
}

async function main() {
  const n = Number(args.instances)
  const concurrency = Number(args.concurrency)
  const apps = Array.from({length: n - 1}, (_, i) => `app${i + 1}.bench.test`)
  const facts = (id) => ({
    facts: {
      hostname: id.split('.')[0],
      private_ip: '10.1.2.3',
      ssh_host_keys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBenchBenchBenchBenchBenchBenchBenchBenchBench root@host'],
    },
  })

  console.log(
    `config server: ${n.toLocaleString('en')} instances (1 db, ${(n - 1).toLocaleString('en')} apps that use its ip); ${concurrency} connections; node ${process.version}, ${os.cpus().length} CPUs`,
  )

  const bare = await startChild('bare')
  const durable = await startChild('durable', {NODESET_BENCH_INSTANCES: String(n)})
  const server = await startChild('config')
  const registration = {
    instances: [
      {id: 'db.bench.test', role: 'service:db', services: [{name: 'db', provides: ['password']}]},
      ...apps.map((id) => ({
        id,
        role: 'appserver',
        services: [{name: 'app', params: {db_host: {template: '{{ip "service:db"}}'}, name: {value: id}}}],
      })),
    ],
  }
  const adminAgent = new http.Agent({keepAlive: true})
  const t = performance.now()
  const registered = await send(adminAgent, server.url, 'PUT', '/v1/deployments/bench', server.adminToken, registration)
  const registerMs = performance.now() - t
  if (registered.status !== 201) throw new Error(`registration: HTTP ${registered.status} ${registered.body}`)
  const {tokens} = JSON.parse(registered.body)

  // Phone-homes, one per app, bare and SQLite in turn, chunk by chunk, so that other work on the
  // machine weighs on both alike; PostgreSQL only after (its servers' background work, a checkpoint
  // or a vacuum after thousands of updates, would otherwise land in the next chunk of the others).
  // Each warmed up first.
  const bareRequests = apps.map((id) => phoneHomeRequest(bare.url, id, 'x'.repeat(43), facts(id)))
  const durableRequests = apps.map((id) => phoneHomeRequest(durable.url, id, 'x'.repeat(43), facts(id)))
  const configRequests = apps.map((id) => phoneHomeRequest(server.url, id, tokens[id], facts(id)))
  await closedLoop(bare.url, bareRequests.slice(0, 1000), concurrency)
  await closedLoop(durable.url, durableRequests.slice(0, 1000), concurrency)
  await closedLoop(server.url, configRequests.slice(0, 1000), concurrency)
  const bareRuns = []
  const durableRuns = []
  const configRuns = []
  const phoneHomeCpuMs = {bare: 0, durable: 0, config: 0}
  const mainCpuMs = {bare: 0, durable: 0, config: 0}
  for (let start = 0; start < apps.length; start += 2000) {
    // Each server's CPU time over its own runs: on a busy machine, a steadier figure than req/s. The
    // main thread's share apart from the rest (V8's compiler and GC threads, libuv's fdatasync), which
    // shares the two cores with the client too.
    for (const [kind, target, requests, runs] of [
      ['bare', bare, bareRequests, bareRuns],
      ['durable', durable, durableRequests, durableRuns],
      ['config', server, configRequests, configRuns],
    ]) {
      const cpuBefore = cpuMs(target.child.pid)
      const mainBefore = mainThreadCpuMs(target.child.pid)
      runs.push(await closedLoop(target.url, requests.slice(start, start + 2000), concurrency))
      phoneHomeCpuMs[kind] += cpuMs(target.child.pid) - cpuBefore
      mainCpuMs[kind] += mainThreadCpuMs(target.child.pid) - mainBefore
    }
  }
  bare.child.kill('SIGTERM')
  durable.child.kill('SIGTERM')

  // PostgreSQL: two replicas over one new database, registered through the first; one replica and
  // then two in turn, chunk by chunk.
  const database = await pgDatabase()
  let replicas = []
  let pgTokens = {}
  if (database) {
    const env = {NODESET_BENCH_STORE: database.url, NODESET_BENCH_ADMIN: server.adminToken}
    replicas = [await startChild('pg', env), await startChild('pg', env)]
    const answer = await send(
      adminAgent,
      replicas[0].url,
      'PUT',
      '/v1/deployments/bench',
      server.adminToken,
      registration,
    )
    if (answer.status !== 201) throw new Error(`registration on PostgreSQL: HTTP ${answer.status} ${answer.body}`)
    pgTokens = JSON.parse(answer.body).tokens
  }
  const pgRequests = replicas.map((replica) =>
    apps.map((id) => phoneHomeRequest(replica.url, id, pgTokens[id], facts(id))),
  )
  for (const [i, replica] of replicas.entries())
    await closedLoop(replica.url, pgRequests[i].slice(0, 1000), concurrency)
  const pgOneRuns = []
  const pgTwoRuns = []
  for (let start = 0; start < apps.length && replicas.length > 0; start += 2000) {
    pgOneRuns.push(await closedLoop(replicas[0].url, pgRequests[0].slice(start, start + 2000), concurrency))
    // Two replicas: the same chunk, odd apps to one and even to the other, the connections split between them.
    const halves = await Promise.all(
      replicas.map((replica, i) =>
        closedLoop(
          replica.url,
          pgRequests[i].slice(start, start + 2000).filter((_, k) => k % 2 === i),
          Math.max(1, concurrency / 2),
        ),
      ),
    )
    pgTwoRuns.push({
      latencies: Float64Array.from(halves.flatMap((h) => [...h.latencies])),
      seconds: Math.max(...halves.map((h) => h.seconds)),
    })
  }
  const baseline = summary(bareRuns)
  const floor = summary(durableRuns)
  const measured = summary(configRuns)

  console.log(`\nregistration of ${n.toLocaleString('en')} instances (checks included): ${ms(registerMs)}`)
  console.log('\nphone-home (PUT facts), one per app:')
  console.log(`  ${'server'.padEnd(44)}${'req/s'.padStart(10)}${'p50'.padStart(12)}${'p99'.padStart(12)}`)
  const rows = [
    ['bare node:http (fixed JSON)', baseline],
    ['bare + durable SQLite write (the floor)', floor],
    ['nodeset config server, SQLite', measured],
    ...(replicas.length
      ? [
          ['nodeset config server, PostgreSQL, 1 replica', summary(pgOneRuns)],
          ['nodeset config server, PostgreSQL, 2 replicas', summary(pgTwoRuns)],
        ]
      : []),
  ]
  for (const [name, r] of rows) {
    console.log(
      `  ${name.padEnd(44)}${Math.round(r.perSecond).toLocaleString('en').padStart(10)}${ms(r.p50).padStart(12)}${ms(r.p99).padStart(12)}`,
    )
  }
  const toBare = measured.perSecond / baseline.perSecond
  const cpuPerRequest = (kind) => (phoneHomeCpuMs[kind] * 1000) / apps.length
  const mainPerRequest = (kind) => (mainCpuMs[kind] * 1000) / apps.length
  console.log(
    `  config server on SQLite / bare: throughput ${toBare.toFixed(2)}x, p50 ${(measured.p50 / baseline.p50).toFixed(2)}x, p99 ${(measured.p99 / baseline.p99).toFixed(2)}x; ` +
      `server CPU per phone-home ${cpuPerRequest('config').toFixed(0)} us against ${cpuPerRequest('bare').toFixed(0)} us ` +
      `(main thread ${mainPerRequest('config').toFixed(0)} us against ${mainPerRequest('bare').toFixed(0)} us)`,
  )
  const floorToBare = floor.perSecond / baseline.perSecond
  const toFloor = measured.perSecond / floor.perSecond
  console.log(
    `  the durable floor / bare: throughput ${floorToBare.toFixed(2)}x, server CPU per phone-home ${cpuPerRequest('durable').toFixed(0)} us ` +
      `(main thread ${mainPerRequest('durable').toFixed(0)} us); config server on SQLite / the floor: throughput ${toFloor.toFixed(2)}x`,
  )
  const pgFigures = replicas.length
    ? {
        pgOneReplicaPerSecond: round(rows.at(-2)[1].perSecond, 0),
        pgTwoReplicasPerSecond: round(rows.at(-1)[1].perSecond, 0),
      }
    : {}
  record({
    phoneHomeToBare: round(toBare),
    phoneHomePerSecond: round(measured.perSecond, 0),
    barePerSecond: round(baseline.perSecond, 0),
    phoneHomeP99Ms: round(measured.p99),
    phoneHomeCpuUs: round(cpuPerRequest('config'), 0),
    bareCpuUs: round(cpuPerRequest('bare'), 0),
    durableFloorToBare: round(floorToBare),
    phoneHomeToDurableFloor: round(toFloor),
    durableFloorCpuUs: round(cpuPerRequest('durable'), 0),
    durableFloorMainThreadCpuUs: round(mainPerRequest('durable'), 0),
    phoneHomeMainThreadCpuUs: round(mainPerRequest('config'), 0),
    bareMainThreadCpuUs: round(mainPerRequest('bare'), 0),
    ...pgFigures,
  })
  for (const replica of replicas) replica.child.kill('SIGTERM')
  if (database) {
    await new Promise((resolve) => setTimeout(resolve, 500))
    await database.drop()
  }

  // Long-poll fan-out: every app waits for its config (?wait=120); one event answers them all; each
  // app's complete 200 is timed from that event. Three kinds of round, the same client code in each:
  // - the config server without the role map (?roles=false), the event the db's phone-home;
  // - the baseline: a bare node:http server in its own process that holds as many requests and, on
  //   one request to it, answers them all, each with the config server's answer (its id substituted);
  // - the config server with the role map as an app asks for it: each app holds the map as it was
  //   before the db phoned home (its version fetched once, untimed) and asks what changed since
  //   (?roles=since:VERSION); each answer must let it rebuild the current map.
  // The kinds take turns, REPEATS times, so that other work on the machine weighs on all alike; the
  // figures are each kind's best round. Three rounds: on a shared machine a whole round (of either
  // kind) can run at half speed, and with two a single such round on each side decided the ratio.
  const repeats = Number(process.env.NODESET_BENCH_FANOUT_REPEATS ?? 3)
  console.log(
    `\nlong-poll fan-out: ${apps.length.toLocaleString('en')} apps waiting (?wait=120), then one event (the db's phone-home); time from that event to each app's complete 200 (${repeats} rounds of each, in turn):`,
  )
  // The phone-homes exchanged every app's bootstrap token for a node token: reissue them for the long-polls.
  const reissued = await send(adminAgent, server.url, 'PUT', '/v1/deployments/bench', server.adminToken, {
    ...registration,
    reissueTokens: apps,
  })
  Object.assign(tokens, JSON.parse(reissued.body).tokens)
  let dbToken = tokens['db.bench.test']
  let dbPhoned = false
  const dbPhonesHome = () => {
    dbPhoned = true
    return send(
      adminAgent,
      server.url,
      'PUT',
      '/v1/deployments/bench/instances/db.bench.test/facts',
      dbToken,
      facts('db.bench.test'),
    )
  }
  // Forget the db and register it again: every app's config waits for its address once more.
  const dbForgotten = async () => {
    if (!dbPhoned) return
    const forgotten = await send(
      adminAgent,
      server.url,
      'DELETE',
      '/v1/deployments/bench/instances/db.bench.test',
      server.adminToken,
    )
    if (forgotten.status !== 204) throw new Error('cannot forget the db')
    const again = await send(adminAgent, server.url, 'PUT', '/v1/deployments/bench', server.adminToken, registration)
    dbToken = JSON.parse(again.body).tokens['db.bench.test']
  }
  const configPath = (id, roles) => `/v1/deployments/bench/instances/${id}/config?wait=120&roles=${roles}`
  const authorization = (id) => ({authorization: `Bearer ${tokens[id]}`})
  const adminConfig = async () =>
    JSON.parse(
      (
        await send(
          adminAgent,
          server.url,
          'GET',
          '/v1/deployments/bench/instances/app1.bench.test/config',
          server.adminToken,
        )
      ).body,
    )
  const {applyRolesDelta, rolesVersionOf} = await import(path.join(root, 'dist/configserver/rolemap.js'))
  const labels = {
    plain: 'config server, without the role map (?roles=false)',
    bare: 'bare node:http, the same answers',
    roles: 'config server, with the role map (?roles=since:VERSION)',
  }
  const rounds = {plain: [], bare: [], roles: []}
  const report = (kind, r) =>
    console.log(
      `  ${labels[kind].padEnd(56)} p50 ${ms(quantile(r.done, 0.5)).padStart(11)}, p99 ${ms(quantile(r.done, 0.99)).padStart(11)}, last ${ms(quantile(r.done, 1)).padStart(11)}  (event answered in ${ms(r.triggerMs)}; ${(r.bytes / 2 ** 20).toFixed(1)} MiB received; server CPU ${r.serverCpuMs.toFixed(0)} ms)`,
    )
  let sample
  for (let repeat = 0; repeat < repeats; repeat++) {
    await dbForgotten()
    const plain = await longPollRound({
      url: server.url,
      pid: server.child.pid,
      apps,
      path: (id) => configPath(id, 'false'),
      headers: authorization,
      check: plainAnswer,
      trigger: dbPhonesHome,
    })
    rounds.plain.push(plain)
    report('plain', plain)

    sample ??= await send(adminAgent, server.url, 'GET', configPath(apps[0], 'false'), tokens[apps[0]])
    if (sample.status !== 200) throw new Error(`${apps[0]}: HTTP ${sample.status} after the round`)
    const fanout = await startChild('fanout')
    const bare = await longPollRound({
      url: fanout.url,
      pid: fanout.child.pid,
      apps,
      path: (id) => configPath(id, 'false'),
      headers: authorization,
      check: plainAnswer,
      trigger: () => send(adminAgent, fanout.url, 'PUT', '/answer', 'x', {answer: sample.body.toString(), id: apps[0]}),
    })
    fanout.child.kill('SIGTERM')
    rounds.bare.push(bare)
    report('bare', bare)

    await dbForgotten()
    // The map every app holds: the one of before the db phones home (the db without an address).
    const held = await adminConfig()
    if (!held.rolesVersion || held.roles['service:db']?.[0]?.ip !== undefined)
      throw new Error(`the map before the db phones home: ${JSON.stringify(held).slice(0, 300)}`)
    const withRoles = await longPollRound({
      url: server.url,
      pid: server.child.pid,
      apps,
      path: (id) => configPath(id, `since:${held.rolesVersion}`),
      headers: authorization,
      check: (id, head, whole) => plainAnswer(id, head) ?? rebuildsTheMap(held.rolesVersion, head, whole),
      trigger: dbPhonesHome,
    })
    rounds.roles.push(withRoles)
    report('roles', withRoles)
    // Untimed: a delta applied to the held map gives exactly the map the server now holds.
    const now = await adminConfig()
    const rebuilt = applyRolesDelta(held.roles, withRoles.sample.rolesDelta)
    if (rolesVersionOf(rebuilt) !== now.rolesVersion || JSON.stringify(rebuilt) !== JSON.stringify(now.roles))
      throw new Error('the delta applied to the held map is not the current map')
    if (repeat === 0) {
      const rolesBytes = JSON.stringify(now.roles).length
      console.log(
        `  (the role map of ${n.toLocaleString('en')} instances is ${(rolesBytes / 1024).toFixed(0)} KiB: in full, the ${apps.length.toLocaleString('en')} answers would carry ${((rolesBytes * apps.length) / 2 ** 30).toFixed(2)} GiB)`,
      )
    }
  }
  const best = (kind) => Math.min(...rounds[kind].map((r) => quantile(r.done, 0.99)))
  console.log(
    `  best p99: config server ${ms(best('plain'))}, bare ${ms(best('bare'))} (${(best('plain') / best('bare')).toFixed(2)}x); with the role map ${ms(best('roles'))} (${(best('roles') / best('plain')).toFixed(2)}x without)`,
  )
  record({
    fanoutP99Ms: round(best('plain')),
    bareFanoutP99Ms: round(best('bare')),
    fanoutP99ToBare: round(best('plain') / best('bare')),
    roleMapFanoutP99Ms: round(best('roles')),
    roleMapFanoutToPlain: round(best('roles') / best('plain')),
  })

  adminAgent.destroy()
  server.child.kill('SIGTERM')
}

/** CPU time (user + system) a process has used, in ms, as Linux counts it (NaN elsewhere). */
function cpuMs(pid, stat = `/proc/${pid}/stat`) {
  try {
    const fields = fs.readFileSync(stat, 'utf8').split(') ')[1].split(' ')
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100
  } catch {
    return NaN
  }
}

/** The same for its main thread alone (its thread id is the process id). */
function mainThreadCpuMs(pid) {
  return cpuMs(pid, `/proc/${pid}/task/${pid}/stat`)
}

/** Why a config answer is wrong (undefined: it is right): the app's own part comes first. */
function plainAnswer(id, head) {
  if (!head.includes(`"instance":"${id}"`) || !head.includes('"db_host":"127.0.0.1"'))
    return `db_host is not the db's address: ${head.slice(0, 300)}`
  return undefined
}

/** Why the answer does not let an app that holds map `version` rebuild the current one (undefined: it does). */
function rebuildsTheMap(version, head, whole) {
  if (whole) {
    const {rolesDelta: delta} = JSON.parse(head)
    if (!delta) return 'no rolesDelta in a short answer'
    if (delta.from !== version || delta.to === version) return `rolesDelta from ${delta.from} to ${delta.to}`
    const db =
      delta.addresses?.['db.bench.test'] ?? delta.roles?.['service:db']?.find((m) => m.name === 'db.bench.test')?.ip
    return db === '127.0.0.1' ? undefined : `the delta does not give the db's address: ${JSON.stringify(delta)}`
  }
  return 'the whole role map was sent'
}

/**
 * Every app long-polls `path(id)` on `url`; once all are waiting, `trigger` runs; resolves when every
 * app has its complete 200, each checked by `check(id, head, whole)` (the first 4 KiB of the body;
 * `whole` when that is all of it): the client reads no more, so that it is not the bottleneck.
 */
async function longPollRound({url, pid, apps, path, headers, check, trigger}) {
  const agent = new http.Agent({keepAlive: false, maxSockets: Infinity})
  const port = new URL(url).port
  const done = new Float64Array(apps.length)
  let bytes = 0
  let sent = 0
  let t0 = 0
  let sample
  const polls = []
  for (let start = 0; start < apps.length; start += 500) {
    for (let i = start; i < Math.min(start + 500, apps.length); i++) {
      const id = apps[i]
      polls.push(
        new Promise((resolve, reject) => {
          const request = http.request(
            {host: '127.0.0.1', port, path: path(id), agent, headers: headers(id)},
            (response) => {
              let head = ''
              let length = 0
              response.on('data', (c) => {
                if (head.length < 4096) head += c.toString('utf8', 0, Math.min(c.length, 4096))
                length += c.length
              })
              response.on('end', () => {
                done[i] = performance.now() - t0
                bytes += length
                if (response.statusCode !== 200) return reject(new Error(`${id}: HTTP ${response.statusCode}`))
                if (length !== Number(response.headers['content-length']))
                  return reject(new Error(`${id}: body cut short`))
                const whole = head.length === length
                const problem = check(id, head, whole)
                if (problem) return reject(new Error(`${id}: ${problem}`))
                if (whole) sample ??= JSON.parse(head)
                resolve()
              })
            },
          )
          request.on('error', (error) => reject(new Error(`${id}: ${error.message}`)))
          request.on('finish', () => sent++)
          request.end()
        }),
      )
    }
    // Open connections 500 at a time, so the listen backlog never overflows.
    while (sent < Math.min(start + 500, apps.length)) await new Promise((resolve) => setTimeout(resolve, 5))
  }
  // Let the server take in the last requests before the event.
  await new Promise((resolve) => setTimeout(resolve, 1000))
  const cpuBefore = cpuMs(pid)
  t0 = performance.now()
  const triggered = await trigger()
  const triggerMs = performance.now() - t0
  if (triggered.status !== 200) throw new Error(`the event: HTTP ${triggered.status} ${triggered.body}`)
  await Promise.all(polls)
  const serverCpuMs = cpuMs(pid) - cpuBefore
  agent.destroy()
  return {done, triggerMs, bytes, sample, serverCpuMs}
}

// Config server benchmark (not a test). Needs `npm run build` first: it runs dist/.
//
//   node bench/configserver/run.js [--instances 10000] [--concurrency 64]
//
// 1. Phone-home throughput and latency of the config server (its own process, SQLite WAL with
//    synchronous=FULL, request logging off) against a bare node:http server in its own process that
//    reads the same request and answers a fixed JSON: the ratio is the cost of validation, auth,
//    durable storage and resolution over plain HTTP on this machine.
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
  const stop = await (args.child === 'bare' ? bareServer() : args.child === 'pg' ? pgServer() : configServer())
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

  // PostgreSQL: two replicas over one new database, registered through the first.
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

  // Phone-homes, one per app, against every server in turn, chunk by chunk, so that other work on
  // the machine weighs on all alike. Warm them up first.
  const bareRequests = apps.map((id) => phoneHomeRequest(bare.url, id, 'x'.repeat(43), facts(id)))
  const configRequests = apps.map((id) => phoneHomeRequest(server.url, id, tokens[id], facts(id)))
  const pgRequests = replicas.map((replica) =>
    apps.map((id) => phoneHomeRequest(replica.url, id, pgTokens[id], facts(id))),
  )
  await closedLoop(bare.url, bareRequests.slice(0, 1000), concurrency)
  await closedLoop(server.url, configRequests.slice(0, 1000), concurrency)
  for (const [i, replica] of replicas.entries())
    await closedLoop(replica.url, pgRequests[i].slice(0, 1000), concurrency)
  const bareRuns = []
  const configRuns = []
  const pgOneRuns = []
  const pgTwoRuns = []
  for (let start = 0; start < apps.length; start += 2000) {
    bareRuns.push(await closedLoop(bare.url, bareRequests.slice(start, start + 2000), concurrency))
    configRuns.push(await closedLoop(server.url, configRequests.slice(start, start + 2000), concurrency))
    if (replicas.length === 0) continue
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
  bare.child.kill('SIGTERM')
  const baseline = summary(bareRuns)
  const measured = summary(configRuns)

  console.log(`\nregistration of ${n.toLocaleString('en')} instances (checks included): ${ms(registerMs)}`)
  console.log('\nphone-home (PUT facts), one per app:')
  console.log(`  ${'server'.padEnd(44)}${'req/s'.padStart(10)}${'p50'.padStart(12)}${'p99'.padStart(12)}`)
  const rows = [
    ['bare node:http (fixed JSON)', baseline],
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
  console.log(
    `  ratio (bare / config server on SQLite): throughput ${(baseline.perSecond / measured.perSecond).toFixed(2)}x, p50 ${(measured.p50 / baseline.p50).toFixed(2)}x, p99 ${(measured.p99 / baseline.p99).toFixed(2)}x`,
  )
  for (const replica of replicas) replica.child.kill('SIGTERM')
  if (database) {
    await new Promise((resolve) => setTimeout(resolve, 500))
    await database.drop()
  }

  // Long-poll: every app waits for its config; the db phones home; each app's 200 is timed. First
  // without the role map in each answer (?roles=false), then with it (the default).
  console.log(
    `\nlong-poll: ${apps.length.toLocaleString('en')} apps waiting (?wait=120), then the db phones home; time from that phone-home to each app's complete 200:`,
  )
  // The phone-homes exchanged every app's bootstrap token for a node token: reissue them for the long-polls.
  const reissued = await send(adminAgent, server.url, 'PUT', '/v1/deployments/bench', server.adminToken, {
    ...registration,
    reissueTokens: apps,
  })
  Object.assign(tokens, JSON.parse(reissued.body).tokens)
  let dbToken = tokens['db.bench.test']
  for (const withRoles of [false, true]) {
    if (withRoles) {
      // Forget the db and register it again: every app's config waits for its address once more.
      if (
        (
          await send(
            adminAgent,
            server.url,
            'DELETE',
            '/v1/deployments/bench/instances/db.bench.test',
            server.adminToken,
          )
        ).status !== 204
      )
        throw new Error('cannot forget the db')
      const again = await send(adminAgent, server.url, 'PUT', '/v1/deployments/bench', server.adminToken, registration)
      dbToken = JSON.parse(again.body).tokens['db.bench.test']
    }
    const round = await longPollRound(server, apps, tokens, withRoles, () =>
      send(
        adminAgent,
        server.url,
        'PUT',
        '/v1/deployments/bench/instances/db.bench.test/facts',
        dbToken,
        facts('db.bench.test'),
      ),
    )
    const label = withRoles ? 'with the role map (the default)   ' : 'without the role map (?roles=false)'
    console.log(
      `  ${label.padEnd(40)} p50 ${ms(quantile(round.done, 0.5)).padStart(11)}, p99 ${ms(quantile(round.done, 0.99)).padStart(11)}, last ${ms(quantile(round.done, 1)).padStart(11)}  (db's PUT answered in ${ms(round.putMs)}; ${(round.bytes / 2 ** 20).toFixed(0)} MiB received)`,
    )
  }
  const rolesBytes = JSON.stringify(
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
    ).roles,
  ).length
  console.log(
    `  (the role map of ${n.toLocaleString('en')} instances is ${(rolesBytes / 1024).toFixed(0)} KiB, so with it the ${apps.length.toLocaleString('en')} answers carry ${((rolesBytes * apps.length) / 2 ** 30).toFixed(2)} GiB)`,
  )

  adminAgent.destroy()
  server.child.kill('SIGTERM')
}

/** Every app long-polls; once all are waiting, `phoneHome` runs; resolves when every app has its complete config. */
async function longPollRound(server, apps, tokens, withRoles, phoneHome) {
  const agent = new http.Agent({keepAlive: false, maxSockets: Infinity})
  const port = new URL(server.url).port
  const done = new Float64Array(apps.length)
  let bytes = 0
  let sent = 0
  let t0 = 0
  const polls = []
  for (let start = 0; start < apps.length; start += 500) {
    for (let i = start; i < Math.min(start + 500, apps.length); i++) {
      const id = apps[i]
      polls.push(
        new Promise((resolve, reject) => {
          const path = `/v1/deployments/bench/instances/${id}/config?wait=120${withRoles ? '' : '&roles=false'}`
          const request = http.request(
            {host: '127.0.0.1', port, path, agent, headers: {authorization: `Bearer ${tokens[id]}`}},
            (response) => {
              // The app's own part comes first; the shared role map follows. Check the value and the
              // length without parsing the whole body: the client must not be the bottleneck.
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
                if (!head.includes(`"instance":"${id}"`) || !head.includes('"db_host":"127.0.0.1"'))
                  return reject(new Error(`${id}: db_host is not the db's address: ${head.slice(0, 300)}`))
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
  // Let the server take in the last requests before the db phones home.
  await new Promise((resolve) => setTimeout(resolve, 1000))
  t0 = performance.now()
  const phoned = await phoneHome()
  const putMs = performance.now() - t0
  if (phoned.status !== 200) throw new Error(`db phone-home: HTTP ${phoned.status}`)
  await Promise.all(polls)
  agent.destroy()
  return {done, putMs, bytes}
}

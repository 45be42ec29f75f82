// Federation benchmark (not a test). Needs `npm run build` first (it runs dist/) and the broker set up
// by scripts/broker-setup.sh (the vhosts nodeset-fed-a and nodeset-fed-b, federated both ways).
//
//   node bench/federation/run.js [--rounds 200]
//
// The time from a database's phone-home (PUT facts) at one site to the 200 of an app's long-poll
// waiting for its address at the other site: the hop through both config servers, the outbox and
// publisher confirms, RabbitMQ and its federation link, signature checks and the apply. Next to it,
// in the same run and interleaved round by round, the same hop within one site (both nodes on one
// config server): the baseline. Both servers run in this process, on SQLite (synchronous=FULL).
import {generateKeyPairSync, randomBytes} from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {parseArgs} from 'node:util'

const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.resolve(here, '../..')
const {values: args} = parseArgs({options: {rounds: {type: 'string', default: '200'}}})
const rounds = Number(args.rounds)
const WARMUP = 10

const entry = path.join(root, 'dist/configserver/server.js')
if (!fs.existsSync(entry)) throw new Error(`${entry} is missing: run npm run build first`)
const {startConfigServer} = await import(entry)
const {ConfigServerClient} = await import(path.join(root, 'dist/configserver/client.js'))
const amqp = (await import('amqplib')).default

const broker = (site) => `amqp://nodeset-${site}:nodeset-${site}-pw@127.0.0.1:5672/nodeset-${site}`
const pair = () => {
  const {privateKey, publicKey} = generateKeyPairSync('ed25519')
  return {
    private: privateKey.export({type: 'pkcs8', format: 'pem'}).toString(),
    public: publicKey.export({type: 'spki', format: 'pem'}).toString(),
  }
}
const keys = {'fed-a': pair(), 'fed-b': pair()}
const sealKey = randomBytes(32).toString('base64')
const dirs = []
const tmp = () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-bench-fed-'))
  dirs.push(dir)
  return dir
}

const total = rounds + WARMUP
const cross = `benchfed${randomBytes(3).toString('hex')}`
const local = `${cross}local`
const pairs = (siteOfDb, siteOfApp) =>
  Array.from({length: total}, (_, i) => [
    {id: `db${i}`, role: 'db', services: [], ...(siteOfDb ? {site: siteOfDb} : {})},
    {
      id: `app${i}`,
      role: 'app',
      services: [{name: 'web', params: {db_host: {template: `{{ip "db${i}"}}`}}}],
      ...(siteOfApp ? {site: siteOfApp} : {}),
    },
  ]).flat()
const federated = (site) => ({
  instances: pairs('fed-a', 'fed-b'),
  federation: {
    site,
    signingKey: keys[site].private,
    peers: site === 'fed-a' ? {'fed-b': keys['fed-b'].public} : {'fed-a': keys['fed-a'].public},
    sealKey,
  },
})

const a = await startConfigServer({stateDir: tmp(), site: 'fed-a', broker: {url: broker('fed-a')}})
const b = await startConfigServer({stateDir: tmp(), site: 'fed-b', broker: {url: broker('fed-b')}})
const client = (server, deployment) =>
  new ConfigServerClient({url: server.url, deployment, token: server.adminToken, timeoutMs: 60_000})
const atA = client(a, cross)
const atB = client(b, cross)
const localA = client(a, local)
try {
  await atA.register(federated('fed-a'))
  await atB.register(federated('fed-b'))
  await localA.register({instances: pairs()})
  // The first messages may precede the federation link's bindings; wait until the link is up both ways.
  for (const [admin, peer] of [
    [atA, 'fed-b'],
    [atB, 'fed-a'],
  ])
    for (let i = 0; ; i++) {
      const link = (await admin.status()).federation?.links.find((l) => l.site === peer)
      if (link?.state === 'up') break
      if (i > 300) throw new Error(`the link to ${peer} never came up`)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }

  /** One hop: a long-poll waits at `poller`, the database phones home at `writer`; ms to the 200. */
  const hop = async (writer, poller, i) => {
    const waiting = poller.getConfig(`app${i}`, {wait: 30, roles: false})
    await new Promise((resolve) => setTimeout(resolve, 15))
    const start = performance.now()
    await writer.putFacts(`db${i}`, {hostname: `db${i}`})
    const answer = await waiting
    const ms = performance.now() - start
    if (answer.status !== 200) throw new Error(`app${i}: ${answer.status}`)
    return ms
  }
  const times = {cross: [], local: []}
  for (let i = 0; i < total; i++) {
    const c = await hop(atA, atB, i)
    const l = await hop(localA, localA, i)
    if (i >= WARMUP) {
      times.cross.push(c)
      times.local.push(l)
    }
  }
  const pct = (list, p) =>
    [...list].sort((x, y) => x - y)[Math.min(list.length - 1, Math.floor((list.length * p) / 100))]
  const line = (name, list) =>
    `${name.padEnd(26)} p50 ${pct(list, 50).toFixed(2).padStart(7)} ms   p99 ${pct(list, 99).toFixed(2).padStart(7)} ms`
  console.log(`${rounds} rounds, interleaved; phone-home PUT at one site -> long-poll 200`)
  console.log(line('within one site', times.local))
  console.log(line('across sites (RabbitMQ)', times.cross))
  console.log(
    `ratio across / within: p50 ${(pct(times.cross, 50) / pct(times.local, 50)).toFixed(1)}x, p99 ${(pct(times.cross, 99) / pct(times.local, 99)).toFixed(1)}x`,
  )
} finally {
  for (const c of [atA, atB, localA]) c.close()
  await a.close()
  await b.close()
  for (const site of ['fed-a', 'fed-b']) {
    const connection = await amqp.connect(`amqp://guest:guest@127.0.0.1:5672/nodeset-${site}`)
    const channel = await connection.createChannel()
    for (const queue of [`nodeset.${cross}.fed-a`, `nodeset.${cross}.fed-b`])
      await channel.deleteQueue(queue).catch(() => {})
    await channel.deleteExchange(`nodeset.${cross}`).catch(() => {})
    await connection.close().catch(() => {})
  }
  for (const dir of dirs) fs.rmSync(dir, {recursive: true, force: true})
}

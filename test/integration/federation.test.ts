/**
 * Federated config servers over the machine's RabbitMQ (scripts/broker-setup.sh made its vhosts
 * nodeset-fed-a and nodeset-fed-b, each federating the other's nodeset.* exchanges): site fed-a's
 * server runs in this process and reaches its broker through a TCP relay the test can cut; site
 * fed-b's is `nodeset config-server` in a child process, so it can be killed. One deployment spans
 * both: a database (and a spare) at fed-a, an app at fed-b that needs the database's address, a
 * secret output of it, and a later output. Nodes phone home over HTTP with their own tokens.
 */
import {type ChildProcess, spawn} from 'node:child_process'
import {generateKeyPairSync, randomBytes, sign} from 'node:crypto'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import amqp, {type Channel, type ChannelModel} from 'amqplib'
import Database from 'better-sqlite3'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {ConfigServerClient, ConfigServerError} from '../../src/configserver/client.js'
import type {DeploymentStatus, RegisterRequest} from '../../src/configserver/protocol.js'
import {tempDir, testServer, type TestServer} from './configserver-fixtures.js'

const root = path.resolve(__dirname, '../..')
const bin = path.join(root, 'bin/run.js')
const BROKER_PORT = 5672
const vhostUrl = (site: string, port = BROKER_PORT) =>
  `amqp://nodeset-${site}:nodeset-${site}-pw@127.0.0.1:${port}/nodeset-${site}`
const ADMIN_URL = (site: string) => `amqp://guest:guest@127.0.0.1:${BROKER_PORT}/nodeset-${site}`

const dep = `fed${randomBytes(4).toString('hex')}`
const exchange = `nodeset.${dep}`
const PASSWORD = `pw-${randomBytes(12).toString('hex')}`
const LATE_TOKEN = `late-${randomBytes(12).toString('hex')}`

const keyPair = () => {
  const {privateKey, publicKey} = generateKeyPairSync('ed25519')
  return {
    key: privateKey,
    private: privateKey.export({type: 'pkcs8', format: 'pem'}).toString(),
    public: publicKey.export({type: 'spki', format: 'pem'}).toString(),
  }
}
const keysA = keyPair()
const keysB = keyPair()
const sealKey = randomBytes(32).toString('base64')

const instances: RegisterRequest['instances'] = [
  {
    id: 'db',
    role: 'db',
    site: 'fed-a',
    services: [
      {name: 'mysql', provides: ['password'], params: {}, after: []},
      {name: 'final', provides: ['token'], params: {}, after: []},
    ],
  },
  {id: 'spare', role: 'spare', site: 'fed-a', services: []},
  {
    id: 'app',
    role: 'app',
    site: 'fed-b',
    services: [
      {name: 'wire', params: {db_host: {template: '{{ip "db"}}'}}, provides: [], after: []},
      {
        name: 'secret',
        params: {db_password: {template: '{{output "db" "password"}}', secret: true}},
        provides: [],
        after: [],
      },
      {name: 'last', params: {token: {template: '{{output "db" "token"}}'}}, provides: [], after: []},
    ],
  },
]
const bodyFor = (site: 'fed-a' | 'fed-b'): RegisterRequest => ({
  instances,
  federation: {
    site,
    signingKey: site === 'fed-a' ? keysA.private : keysB.private,
    peers: site === 'fed-a' ? {'fed-b': keysB.public} : {'fed-a': keysA.public},
    sealKey,
  },
})

/** A loopback TCP relay to the broker; `cut` drops every connection through it (new ones are let through). */
async function relay(): Promise<{port: number; connections: () => number; cut(): void; close(): Promise<void>}> {
  const pairs = new Set<net.Socket>()
  let connections = 0
  const server = net.createServer((client) => {
    connections++
    const upstream = net.connect(BROKER_PORT, '127.0.0.1')
    pairs.add(client).add(upstream)
    const drop = () => {
      client.destroy()
      upstream.destroy()
      pairs.delete(client)
      pairs.delete(upstream)
    }
    client.on('error', drop).on('close', drop)
    upstream.on('error', drop).on('close', drop)
    client.pipe(upstream)
    upstream.pipe(client)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as net.AddressInfo).port,
    connections: () => connections,
    cut: () => pairs.forEach((socket) => socket.destroy()),
    close: () =>
      new Promise((resolve) => {
        pairs.forEach((socket) => socket.destroy())
        server.close(() => resolve())
      }),
  }
}

interface Child {
  child: ChildProcess
  url: string
  adminToken: string
  exited: Promise<NodeJS.Signals | number | null>
}

/** Site fed-b's server: `nodeset config-server --site fed-b --broker …` as an operator runs it. */
function startB(stateDir: string): Promise<Child> {
  const child = spawn(
    process.execPath,
    [
      bin,
      'config-server',
      '--listen',
      '127.0.0.1:0',
      '--state',
      stateDir,
      '--site',
      'fed-b',
      '--broker',
      vhostUrl('fed-b'),
    ],
    {cwd: root, stdio: ['ignore', 'ignore', 'pipe']},
  )
  let err = ''
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) =>
    child.on('exit', (code, signal) => resolve(signal ?? code)),
  )
  return new Promise((resolve, reject) => {
    child.stderr!.on('data', (chunk: Buffer) => {
      err += chunk
      const match = /config server at (\S+); admin token in (\S+)/.exec(err)
      if (match) resolve({child, url: match[1], adminToken: fs.readFileSync(match[2], 'utf8').trim(), exited})
    })
    void exited.then((code) => reject(new Error(`config-server exited (${code}) before listening:\n${err}`)))
  })
}

const clients: ConfigServerClient[] = []
const client = (url: string, token: string, localAddress?: string) => {
  const made = new ConfigServerClient({
    url,
    deployment: dep,
    token,
    timeoutMs: 30_000,
    ...(localAddress ? {localAddress} : {}),
  })
  clients.push(made)
  return made
}

/** Poll until `check` returns a value (not undefined); fail naming `what` after `ms`. */
async function until<T>(what: string, check: () => Promise<T | undefined> | T | undefined, ms = 20_000): Promise<T> {
  const end = Date.now() + ms
  let last: unknown
  for (;;) {
    try {
      const value = await check()
      if (value !== undefined) return value
    } catch (error) {
      last = error
    }
    if (Date.now() > end)
      throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${String(last)})` : ''}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

const linkOf = (status: DeploymentStatus, site: string) => status.federation?.links.find((l) => l.site === site)

let broker: Awaited<ReturnType<typeof relay>>
let a: TestServer
let b: Child
let bState: string
let adminA: ConfigServerClient
let adminB: ConfigServerClient
let dbNode: ConfigServerClient
let appNode: ConfigServerClient
let appNodeToken: string
let observer: {
  connection: ChannelModel
  channel: Channel
  seen: Buffer[]
  captured: Array<{content: Buffer; headers: object; key: string}>
}
const children: ChildProcess[] = []

beforeAll(async () => {
  const built = path.join(root, 'dist/configserver/federation/federation.js')
  if (!fs.existsSync(built)) throw new Error(`${built} is missing: run npm run build first (npm test does)`)
  // A copy of everything fed-a publishes, as fed-b's broker holds it: what a broker operator could read.
  const connection = await amqp.connect(ADMIN_URL('fed-b'))
  const channel = await connection.createChannel()
  await channel.assertExchange(exchange, 'topic', {durable: true})
  const {queue} = await channel.assertQueue('', {exclusive: true})
  await channel.bindQueue(queue, exchange, 'fed-a.#')
  observer = {connection, channel, seen: [], captured: []}
  await channel.consume(
    queue,
    (message) => {
      if (!message) return
      observer.seen.push(message.content)
      observer.captured.push({
        content: message.content,
        headers: message.properties.headers ?? {},
        key: message.fields.routingKey,
      })
    },
    {noAck: true},
  )

  broker = await relay()
  a = await testServer({site: 'fed-a', broker: {url: vhostUrl('fed-a', broker.port), heartbeatMs: 200}})
  bState = tempDir('nodeset-fed-b-')
  b = await startB(bState)
  children.push(b.child)
  adminA = client(a.url, a.adminToken)
  adminB = client(b.url, b.adminToken)
}, 60_000)

afterAll(async () => {
  for (const c of clients.splice(0)) c.close()
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  await a?.close()
  await broker?.close()
  if (observer) {
    // The deployment's exchanges and queues on both vhosts: nothing of this run stays on the broker.
    await observer.connection.close().catch(() => {})
    for (const site of ['fed-a', 'fed-b']) {
      const connection = await amqp.connect(ADMIN_URL(site))
      const channel = await connection.createChannel()
      for (const queue of [`${exchange}.fed-a`, `${exchange}.fed-b`]) await channel.deleteQueue(queue).catch(() => {})
      await channel.deleteExchange(exchange).catch(() => {})
      await connection.close().catch(() => {})
    }
  }
}, 30_000)

describe('federated config servers', () => {
  it('registers the deployment at each site; tokens only for that site, 400 where it cannot be served', async () => {
    const atA = await adminA.register(bodyFor('fed-a'))
    const atB = await adminB.register(bodyFor('fed-b'))
    expect(Object.keys(atA.tokens).sort()).toEqual(['db', 'spare'])
    expect(Object.keys(atB.tokens)).toEqual(['app'])
    dbNode = client(a.url, atA.tokens.db, '127.0.0.2')
    appNode = client(b.url, atB.tokens.app)

    const wrongSite = await adminA.register(bodyFor('fed-b')).catch((error: unknown) => error)
    expect(wrongSite).toBeInstanceOf(ConfigServerError)
    expect((wrongSite as ConfigServerError).status).toBe(400)
    expect((wrongSite as Error).message).toMatch(/serves site fed-a/)

    const plain = await testServer()
    try {
      const refused = await client(plain.url, plain.adminToken)
        .register(bodyFor('fed-a'))
        .catch((error: unknown) => error)
      expect((refused as ConfigServerError).status).toBe(400)
      expect((refused as Error).message).toMatch(/not federated/)
    } finally {
      await plain.close()
    }
  })

  it("a fact put at fed-a reaches a long-poll waiting at fed-b; another site's instance cannot be written", async () => {
    appNodeToken = (await appNode.putFacts('app', {hostname: 'app'})).token!
    const waiting = appNode.getConfig('app', {service: 'wire', wait: 20})
    await new Promise((resolve) => setTimeout(resolve, 300))
    const seen = await dbNode.putFacts('db', {
      hostname: 'db',
      ssh_host_keys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFed'],
    })
    expect(seen.ip).toBe('127.0.0.2')
    const answer = await waiting
    expect(answer.status).toBe(200)
    expect(answer.config.services.wire.params.db_host).toBe('127.0.0.2')

    const state = await adminB.state()
    expect(state.instances.find((i) => i.id === 'db')?.facts.ssh_host_keys).toEqual([
      'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFed',
    ])
    const refused = await adminA.putFacts('app', {hostname: 'forged'}).catch((error: unknown) => error)
    expect((refused as ConfigServerError).status).toBe(409)
  })

  it('a secret output crosses, and the broker carries only its ciphertext', async () => {
    const waiting = appNode.getConfig('app', {service: 'secret', wait: 20})
    await dbNode.reportService('db', 'mysql', {state: 'succeeded', exitCode: 0, outputs: {password: PASSWORD}})
    const answer = await waiting
    expect(answer.status).toBe(200)
    expect(answer.config.services.secret.params.db_password).toBe(PASSWORD)
    const copies = await until('the report on the broker', () =>
      observer.seen.some((m) => m.includes('"mysql"')) ? observer.seen : undefined,
    )
    expect(copies.some((m) => m.includes('"sealed"'))).toBe(true)
    for (const content of copies) {
      expect(content.includes(PASSWORD)).toBe(false)
      expect(content.includes(Buffer.from(PASSWORD).toString('base64'))).toBe(false)
      expect(content.toString()).not.toMatch(/token_hash|tokenHash|"inputs"/)
    }
  })

  it('status at both sites: links up, lag under a second, remote instances with their age', async () => {
    for (const [admin, peer] of [
      [adminA, 'fed-b'],
      [adminB, 'fed-a'],
    ] as const) {
      const status = await until(`the link to ${peer} up`, async () => {
        const s = await admin.status()
        return linkOf(s, peer)?.state === 'up' && linkOf(s, peer)?.lagMs !== undefined ? s : undefined
      })
      expect(linkOf(status, peer)!.lagMs).toBeLessThan(1000)
      expect(linkOf(status, peer)!.lastHeartbeatAt).toBeDefined()
    }
    const atB = await adminB.status()
    const db = atB.instances.find((i) => i.id === 'db')!
    expect(db.site).toBe('fed-a')
    expect(db.factsAgeMs).toBeGreaterThanOrEqual(0)
    expect(atB.instances.find((i) => i.id === 'app')!.factsAgeMs).toBeUndefined()
    expect(atB.state).toBe('pending')
  })

  it('refuses a forged signature and a message about an instance its sender does not own, counting both', async () => {
    const before = (await adminB.status()).federation!.refused
    const connection = await amqp.connect(ADMIN_URL('fed-b'))
    const channel = await connection.createConfirmChannel()
    const message = (instance: string) =>
      Buffer.from(
        JSON.stringify({
          v: 1,
          deployment: dep,
          origin: 'fed-a',
          epoch: 'forged',
          sentAt: Date.now(),
          kind: 'instance',
          seq: 1,
          instance,
          state: {facts: {hostname: 'forged'}, address: '10.66.6.6', runs: {}},
        }),
      )
    const publish = async (content: Buffer, signature: Buffer) => {
      channel.publish(exchange, 'fed-a.instance', content, {
        persistent: true,
        headers: {'x-nodeset-signature': signature.toString('base64')},
      })
      await channel.waitForConfirms()
    }
    const forger = generateKeyPairSync('ed25519').privateKey
    await publish(message('db'), sign(null, message('db'), forger))
    // fed-a's own key, speaking for fed-b's instance.
    const notOwned = message('app')
    await publish(notOwned, sign(null, notOwned, keysA.key))
    await connection.close()

    const refused = await until('both refusals counted', async () => {
      const r = (await adminB.status()).federation!.refused
      return r.badSignature > before.badSignature && r.notOwner > before.notOwner ? r : undefined
    })
    expect(refused.badSignature).toBe(before.badSignature + 1)
    expect(refused.notOwner).toBe(before.notOwner + 1)
    const state = await adminB.state()
    expect(state.instances.find((i) => i.id === 'db')!.facts.ip).toBe('127.0.0.2')
    expect(state.instances.find((i) => i.id === 'app')!.facts.hostname).toBe('app')
  })

  it('a replayed message is applied once', async () => {
    const before = linkOf(await adminB.status(), 'fed-a')!
    const refusedBefore = (await adminB.status()).federation!.refused.replayed
    const original = observer.captured.find((m) => m.key === 'fed-a.instance' && m.content.includes('"mysql"'))!
    expect(original).toBeDefined()
    const connection = await amqp.connect(ADMIN_URL('fed-b'))
    const channel = await connection.createConfirmChannel()
    channel.publish(exchange, original.key, original.content, {persistent: true, headers: original.headers})
    await channel.waitForConfirms()
    await connection.close()
    await until('the replay counted', async () =>
      (await adminB.status()).federation!.refused.replayed > refusedBefore ? true : undefined,
    )
    expect(linkOf(await adminB.status(), 'fed-a')!.applied).toBe(before.applied)
  })

  it('the broker connection cut mid-burst: nothing acknowledged is lost, nothing applied twice', async () => {
    const dbFile = path.join(a.stateDir, 'configserver.sqlite')
    const stateA = new Database(dbFile, {readonly: true})
    const lastSeq = () =>
      stateA.prepare('SELECT last_seq FROM federation WHERE deployment = ?').pluck().get(dep) as number
    const outbox = () =>
      stateA.prepare('SELECT COUNT(*) FROM fed_outbox WHERE deployment = ?').pluck().get(dep) as number
    try {
      const seqBefore = lastSeq()
      const appliedBefore = linkOf(await adminB.status(), 'fed-a')!.applied
      const burst = 60
      const connectionsBefore = broker.connections()
      for (let n = 1; n <= burst; n++) {
        await dbNode.putFacts('db', {burst: n})
        if (n === burst / 2) broker.cut()
      }
      await until('fed-b holding the last fact of the burst', async () => {
        const db = (await adminB.state()).instances.find((i) => i.id === 'db')!
        return db.facts.burst === burst ? true : undefined
      })
      await until('the outbox emptied by confirms', () => (outbox() === 0 ? true : undefined))
      // The cut was real: fed-a's server connected again through the relay.
      expect(broker.connections()).toBeGreaterThan(connectionsBefore)
      const applied = linkOf(await adminB.status(), 'fed-a')!.applied - appliedBefore
      // Each sequence number is applied at most once (a snapshot stands for many).
      expect(applied).toBeGreaterThan(0)
      expect(applied).toBeLessThanOrEqual(lastSeq() - seqBefore)
      const stateB = new Database(path.join(bState, 'configserver.sqlite'), {readonly: true})
      try {
        const position = stateB.prepare('SELECT seq FROM fed_applied WHERE deployment = ? AND origin = ?').pluck()
        expect(position.get(dep, 'fed-a')).toBe(lastSeq())
      } finally {
        stateB.close()
      }
    } finally {
      stateA.close()
    }
  })

  it('fed-b killed (SIGKILL) while fed-a publishes, then restarted: it catches up and its waiting node completes', async () => {
    b.child.kill('SIGKILL')
    expect(await b.exited).toBe('SIGKILL')
    await dbNode.putFacts('db', {while_down: 'yes'})
    await dbNode.reportService('db', 'final', {state: 'succeeded', exitCode: 0, outputs: {token: LATE_TOKEN}})
    b = await startB(bState)
    children.push(b.child)
    adminB = client(b.url, b.adminToken)
    const node = client(b.url, appNodeToken)
    const answer = await node.getConfig('app', {service: 'last', wait: 20})
    expect(answer.status).toBe(200)
    expect(answer.config.services.last.params.token).toBe(LATE_TOKEN)
    const db = (await adminB.state()).instances.find((i) => i.id === 'db')!
    expect(db.facts.while_down).toBe('yes')
    await until('the link to fed-a up again', async () =>
      linkOf(await adminB.status(), 'fed-a')?.state === 'up' ? true : undefined,
    )
  })

  it('messages lost on the way (a stale link) are noticed and caught up by snapshot', async () => {
    const connection = await amqp.connect(ADMIN_URL('fed-b'))
    const channel = await connection.createChannel()
    const queue = `${exchange}.fed-b`
    const stateA = new Database(path.join(a.stateDir, 'configserver.sqlite'), {readonly: true})
    try {
      // fed-b's queue no longer gets fed-a's messages: what fed-a publishes now is lost for fed-b.
      await channel.unbindQueue(queue, exchange, 'fed-a.#')
      await dbNode.putFacts('db', {lost_on_the_way: 'yes'})
      await until('the message confirmed by the broker', () =>
        stateA.prepare('SELECT COUNT(*) FROM fed_outbox WHERE deployment = ?').pluck().get(dep) === 0
          ? true
          : undefined,
      )
      await until("fed-b seeing fed-a's link down (no heartbeats reach it)", async () =>
        linkOf(await adminB.status(), 'fed-a')?.state === 'down' ? true : undefined,
      )
      expect((await adminB.state()).instances.find((i) => i.id === 'db')!.facts.lost_on_the_way).toBeUndefined()
      await channel.bindQueue(queue, exchange, 'fed-a.#')
      await until('fed-b caught up', async () =>
        (await adminB.state()).instances.find((i) => i.id === 'db')!.facts.lost_on_the_way === 'yes' ? true : undefined,
      )
      const link = await until('the link up again with little lag', async () => {
        const l = linkOf(await adminB.status(), 'fed-a')
        return l?.state === 'up' && (l.lagMs ?? Infinity) < 1000 ? l : undefined
      })
      expect(link.applied).toBeGreaterThan(0)
    } finally {
      stateA.close()
      await connection.close()
    }
  })

  it('an instance removed at its site disappears at the other', async () => {
    expect((await adminB.status()).instances.map((i) => i.id)).toContain('spare')
    await adminA.forgetInstance('spare')
    await until('spare gone at fed-b', async () =>
      (await adminB.status()).instances.some((i) => i.id === 'spare') ? undefined : true,
    )
  })

  it("the deployment settles at a site only once every site's services have succeeded", async () => {
    // fed-a's own part has settled; fed-b's app has not reported.
    const pending = await adminA.status()
    expect(pending.state).toBe('pending')
    expect(pending.instances.find((i) => i.id === 'app')!.services[0]).toMatchObject({
      status: 'waiting',
      waitingFor: ['site fed-b to report it'],
    })
    const app = client(b.url, appNodeToken)
    for (const service of ['wire', 'secret', 'last'])
      await app.reportService('app', service, {state: 'succeeded', exitCode: 0})
    for (const admin of [adminA, adminB])
      await until('settled', async () => ((await admin.status()).state === 'settled' ? true : undefined))
  })
})

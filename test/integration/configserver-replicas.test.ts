/**
 * Replicas: config-server processes sharing one PostgreSQL database (each test file its own database).
 * With CI=true a missing PostgreSQL fails these tests; elsewhere they are skipped.
 */
import {type ChildProcess, spawn} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {afterEach, describe, expect, it} from 'vitest'
import type {RegisterRequest} from '../../src/configserver/protocol.js'
import {startConfigServer} from '../../src/configserver/server.js'
import {newToken} from '../../src/configserver/tokens.js'
import {
  pgDatabase,
  pgQuery,
  postgresAvailable,
  raw,
  seed000,
  tempDir,
  type TestServer,
  testServer,
} from './configserver-fixtures.js'

const available = await postgresAvailable()
const servers: TestServer[] = []
const children: ChildProcess[] = []
afterEach(async () => {
  for (const child of children.splice(0)) child.kill('SIGKILL')
  for (const server of servers.splice(0)) await server.close()
})

/** Two replicas over one new database, with one admin token. */
async function replicas(opts: {authFailureLimit?: number} = {}): Promise<[TestServer, TestServer, string]> {
  const store = await pgDatabase()
  const adminToken = newToken()
  const a = await testServer({store, adminToken, ...opts})
  servers.push(a)
  const b = await testServer({store, adminToken, ...opts})
  servers.push(b)
  return [a, b, store]
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe.skipIf(!available)('replicas on PostgreSQL', () => {
  it('a phone-home on A answers the long-poll held by B', async () => {
    const [a, b] = await replicas()
    const {tokens} = await a.admin('wp').register(seed000)
    const onB = b.as('wp', tokens['app.wp.test'])
    const waiting = onB.getConfig('app.wp.test', {wait: 20})
    await sleep(300)
    const start = performance.now()
    await a.as('wp', tokens['db.wp.test'], '127.0.0.7').putFacts('db.wp.test', {hostname: 'db'})
    const answer = await waiting
    const elapsed = performance.now() - start
    console.log(`long-poll on B answered ${elapsed.toFixed(1)} ms after the phone-home on A`)
    expect(answer.status).toBe(200)
    expect(answer.config.services.wordpress.params).toEqual({db_host: '127.0.0.7', site: 'blog'})
    // Generous: the wake-up comes from NOTIFY, not from the 20 s timeout or a poll.
    expect(elapsed).toBeLessThan(5000)
  })

  it('honours on B the token exchange done on A, and refuses the bootstrap token once the node token is used', async () => {
    const [a, b] = await replicas()
    const {tokens} = await a.admin('wp').register(seed000)
    const onA = a.as('wp', tokens['db.wp.test'])
    const {token} = await onA.putFacts('db.wp.test', {hostname: 'db'})
    expect(token).toBeDefined()
    const onB = b.as('wp', token!)
    expect((await onB.getConfig('db.wp.test')).status).toBe(200)
    const again = await raw(b.url, '/v1/deployments/wp/instances/db.wp.test/facts', {
      method: 'PUT',
      token: tokens['db.wp.test'],
      body: JSON.stringify({facts: {hostname: 'db'}}),
    })
    expect(again.status).toBe(401)
    expect(again.json().error).toMatch(/exchanged/)
  })

  it('counts authentication failures across replicas', async () => {
    const [a, b] = await replicas({authFailureLimit: 4})
    await a.admin('wp').register(seed000)
    const bad = newToken()
    const statuses: number[] = []
    for (const server of [a, b, a, b, a, b])
      statuses.push((await raw(server.url, '/v1/deployments/wp/instances/db.wp.test/config', {token: bad})).status)
    expect(statuses).toEqual([401, 401, 401, 401, 429, 429])
  })

  it('re-reads after losing its listening connection: a waiter on B is answered', async () => {
    const [a, b, store] = await replicas()
    const {tokens} = await a.admin('wp').register(seed000)
    const waiting = b.as('wp', tokens['app.wp.test']).getConfig('app.wp.test', {wait: 20})
    await sleep(300)
    // Both replicas lose their listening connections; the phone-home's NOTIFY may reach no one.
    const name = new URL(store).pathname.slice(1)
    const killed = await pgQuery(
      store,
      `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE datname = $1 AND application_name = 'nodeset-config-server-listen'`,
      [name],
    )
    expect(killed.length).toBe(2)
    await a.as('wp', tokens['db.wp.test'], '127.0.0.7').putFacts('db.wp.test', {hostname: 'db'})
    const answer = await waiting
    expect(answer.status).toBe(200)
    expect(answer.config.services.wordpress.params.db_host).toBe('127.0.0.7')
  })

  it('refuses a database of a newer schema, saying what to do', async () => {
    const store = await pgDatabase()
    const adminToken = newToken()
    servers.push(await testServer({store, adminToken}))
    await servers.pop()!.close()
    await pgQuery(store, 'UPDATE nodeset_schema SET version = 99')
    await expect(startConfigServer({store, adminToken})).rejects.toThrow(
      /holds config server schema 99, newer than this nodeset's \(1\): upgrade nodeset/,
    )
  })

  it('survives PostgreSQL ending its connections in a burst of writes, and serves again after', async () => {
    const [a, , store] = await replicas()
    const n = 100
    const request: RegisterRequest = {
      instances: Array.from({length: n}, (_, i) => ({id: `n${i}`, role: 'worker', services: []})),
    }
    const {tokens} = await a.admin('burst').register(request)
    const name = new URL(store).pathname.slice(1)
    // What a database restart or an administrator does: every backend of the database is ended, again and again,
    // while connections are checked out of the pool between the statements of a commit.
    let terminating = true
    let ended = 0
    const terminator = (async () => {
      while (terminating) {
        const rows = await pgQuery(
          store,
          `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`,
          [name],
        )
        ended += rows.length
        await sleep(2)
      }
    })()
    // Each node uses its bootstrap token until an answer brings it a node token, as the agent does.
    const held = Array.from({length: n}, (_, i) => tokens[`n${i}`])
    const statuses: number[] = []
    const until = Date.now() + 2000
    while (Date.now() < until) {
      const answers = await Promise.all(
        held.map((token, i) =>
          raw(a.url, `/v1/deployments/burst/instances/n${i}/facts`, {
            method: 'PUT',
            token,
            body: JSON.stringify({facts: {round: String(statuses.length)}}),
          }),
        ),
      )
      answers.forEach((answer, i) => {
        statuses.push(answer.status)
        const {token} = answer.status === 200 ? (answer.json() as {token?: string}) : {}
        if (token) held[i] = token
      })
    }
    terminating = false
    await terminator
    expect(ended).toBeGreaterThan(0)
    // A write the database dropped is answered 503 (retry): never a 500, never an unanswered request.
    expect(statuses.filter((status) => status !== 200 && status !== 503)).toEqual([])
    // As an agent does: a 503 is retried (a connection ended last may be noticed only by its next statement).
    let after: {ip: string; token?: string} | undefined
    for (let attempt = 0; attempt < 20 && !after; attempt++) {
      after = await a
        .as('burst', held[0], '127.0.0.9')
        .putFacts('n0', {round: 'after'})
        .catch((error: {status?: number}) => {
          if (error.status !== 503) throw error
          return sleep(100).then(() => undefined)
        })
    }
    expect(after?.ip).toBe('127.0.0.9')
    expect((await a.as('burst', after?.token ?? held[0]).getConfig('n0')).status).toBe(200)
  }, 60_000)

  it('1,000 concurrent phone-homes over two replicas: all recorded, every dependent completed', async () => {
    const [a, b] = await replicas()
    const n = 500
    const request: RegisterRequest = {
      instances: Array.from({length: n}, (_, i) => [
        {id: `db${i}`, role: `db${i}`, services: [{name: 'mysql', params: {}, provides: [], after: []}]},
        {
          id: `app${i}`,
          role: 'app',
          services: [{name: 'web', params: {db_host: {template: `{{ip "db${i}"}}`}}, provides: [], after: []}],
        },
      ]).flat(),
    }
    const {tokens} = await a.admin('big').register(request)
    const half = (i: number) => (i % 2 === 0 ? a : b)
    const other = (i: number) => (i % 2 === 0 ? b : a)
    // Each app long-polls on the replica its database does not phone home to.
    const waits = Array.from({length: n}, (_, i) =>
      raw(other(i).url, `/v1/deployments/big/instances/app${i}/config?wait=60`, {token: tokens[`app${i}`]}),
    )
    await sleep(500)
    const homes = Array.from({length: 2 * n}, (_, k) => {
      const i = k % n
      const id = k < n ? `db${i}` : `app${i}`
      return raw(half(k).url, `/v1/deployments/big/instances/${id}/facts`, {
        method: 'PUT',
        token: tokens[id],
        body: JSON.stringify({facts: {hostname: id}}),
      })
    })
    const answered = await Promise.all(homes)
    expect(answered.filter((r) => r.status !== 200).map((r) => r.body)).toEqual([])
    const configs = await Promise.all(waits)
    expect(configs.filter((r) => r.status !== 200).length).toBe(0)
    const state = (await b.admin('big').state()) as unknown as {instances: Array<{id: string; facts: object}>}
    expect(state.instances.filter((i) => 'hostname' in i.facts).length).toBe(2 * n)
  }, 120_000)
})

describe.skipIf(!available)('a replica killed in a burst of writes', () => {
  it('every write it acknowledged is visible through the other', async () => {
    const root = path.resolve(__dirname, '../..')
    const entry = path.join(root, 'dist/configserver/server.js')
    if (!fs.existsSync(entry)) throw new Error(`${entry} is missing: run npm run build first (npm test does)`)
    const store = await pgDatabase()
    const adminToken = newToken()
    const b = await testServer({store, adminToken})
    servers.push(b)
    const script = path.join(tempDir(), 'serve.mjs')
    fs.writeFileSync(
      script,
      `import {startConfigServer} from ${JSON.stringify(entry)}\n` +
        `const s = await startConfigServer({store: process.argv[2], adminToken: process.argv[3]})\n` +
        `process.stderr.write('listening ' + s.url + '\\n')\n`,
    )
    const child = spawn(process.execPath, [script, store, adminToken], {stdio: ['ignore', 'ignore', 'pipe']})
    children.push(child)
    let err = ''
    const url = await new Promise<string>((resolve, reject) => {
      child.stderr!.on('data', (c: Buffer) => {
        err += c
        const match = /listening (\S+)/.exec(err)
        if (match) resolve(match[1])
      })
      child.on('exit', (code) => reject(new Error(`replica A exited (${code}):\n${err}`)))
    })
    const n = 200
    const request: RegisterRequest = {
      instances: Array.from({length: n}, (_, i) => ({
        id: `n${i}`,
        role: 'node',
        services: [{name: 's', params: {}, provides: ['out'], after: []}],
      })),
    }
    const {tokens} = await b.admin('burst').register(request)
    const acknowledged: Array<{id: string; kind: 'facts' | 'output'}> = []
    const writes = Array.from({length: n}, (_, i) => {
      const id = `n${i}`
      const facts = raw(url, `/v1/deployments/burst/instances/${id}/facts`, {
        method: 'PUT',
        token: tokens[id],
        body: JSON.stringify({facts: {hostname: id}}),
      })
        .then((r) => {
          if (r.status === 200) acknowledged.push({id, kind: 'facts'})
          const node = (r.json().token as string | undefined) ?? tokens[id]
          return raw(url, `/v1/deployments/burst/instances/${id}/services/s`, {
            method: 'PUT',
            token: node,
            body: JSON.stringify({state: 'succeeded', outputs: {out: `v${i}`}}),
          })
        })
        .then((r) => r.status === 200 && acknowledged.push({id, kind: 'output'}))
        .catch(() => undefined)
      return facts
    })
    // Kill A once some writes are acknowledged, while others are in flight.
    while (acknowledged.length < 40) await sleep(2)
    child.kill('SIGKILL')
    await Promise.all(writes)
    expect(acknowledged.length).toBeGreaterThan(0)
    const state = (await b.admin('burst').state()) as unknown as {
      instances: Array<{id: string; facts: Record<string, unknown>; outputs: Record<string, Record<string, string>>}>
    }
    const byId = new Map(state.instances.map((i) => [i.id, i]))
    const missing = acknowledged.filter(({id, kind}) => {
      const instance = byId.get(id)!
      return kind === 'facts' ? instance.facts.hostname !== id : instance.outputs.s?.out !== `v${id.slice(1)}`
    })
    expect(missing).toEqual([])
    console.log(`${acknowledged.length} writes acknowledged by A before SIGKILL, all visible through B`)
  }, 60_000)
})

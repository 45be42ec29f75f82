/** Shared by the config server's integration tests: a real server on loopback, real SQLite in a temp dir. */
import fs from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import {ConfigServerClient, ConfigServerError} from '../../src/configserver/client.js'
import type {RegisterRequest} from '../../src/configserver/protocol.js'
import {afterAll} from 'vitest'
import {newToken} from '../../src/configserver/tokens.js'
import {type ConfigServerOptions, type RunningConfigServer, startConfigServer} from '../../src/configserver/server.js'

const made: string[] = []

/** A temp dir, deleted when the test file is done (servers started in it must be closed by then). */
export function tempDir(prefix = 'nodeset-cs-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  made.push(dir)
  return dir
}

afterAll(() => {
  for (const dir of made.splice(0)) fs.rmSync(dir, {recursive: true, force: true})
})

export interface TestServer extends RunningConfigServer {
  stateDir: string
  /** The store's URL, for a PostgreSQL server. */
  store?: string
  admin(deployment: string): ConfigServerClient
  as(deployment: string, token: string, localAddress?: string): ConfigServerClient
}

const clients: ConfigServerClient[] = []

export async function testServer(opts: Partial<ConfigServerOptions> = {}): Promise<TestServer> {
  const stateDir = opts.stateDir ?? tempDir()
  const server = await startConfigServer({stateDir, ...opts})
  const make = (deployment: string, token: string, localAddress?: string) => {
    const client = new ConfigServerClient({url: server.url, deployment, token, ...(localAddress ? {localAddress} : {})})
    clients.push(client)
    return client
  }
  return {
    ...server,
    stateDir,
    ...(opts.store ? {store: opts.store} : {}),
    admin: (deployment) => make(deployment, server.adminToken),
    as: make,
    async close() {
      await server.close()
      for (const client of clients.splice(0)) client.close()
    },
  }
}

/** The error a call fails with (the test fails if it succeeds). */
export async function failure(promise: Promise<unknown>): Promise<ConfigServerError> {
  try {
    await promise
  } catch (error) {
    if (error instanceof ConfigServerError) return error
    throw error
  }
  throw new Error('expected the call to fail, but it succeeded')
}

/** Raw HTTP with the path sent as written (no URL normalisation), for what the typed client cannot send. */
export function raw(
  base: string,
  pathAndQuery: string,
  init: {
    method?: string
    token?: string
    body?: string | Buffer
    headers?: Record<string, string>
    localAddress?: string
  } = {},
): Promise<{status: number; headers: http.IncomingHttpHeaders; body: string; json: () => Record<string, unknown>}> {
  const url = new URL(base)
  return new Promise((resolve, reject) => {
    const request = http.request(
      {
        host: url.hostname,
        port: url.port,
        path: pathAndQuery,
        method: init.method ?? 'GET',
        agent: false,
        ...(init.localAddress ? {localAddress: init.localAddress} : {}),
        headers: {
          ...(init.token ? {authorization: `Bearer ${init.token}`} : {}),
          ...(init.body !== undefined ? {'content-type': 'application/json'} : {}),
          ...init.headers,
        },
      },
      (response) => {
        const chunks: Buffer[] = []
        response.on('data', (c: Buffer) => chunks.push(c))
        response.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8')
          resolve({
            status: response.statusCode ?? 0,
            headers: response.headers,
            body,
            json: () => JSON.parse(body) as Record<string, unknown>,
          })
        })
      },
    )
    request.on('error', reject)
    request.end(init.body)
  })
}

/** Bytes written straight to the socket (paths no HTTP client would send); the status code of the answer. */
export function rawBytes(base: string, bytes: Buffer): Promise<number> {
  const url = new URL(base)
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(url.port), url.hostname, () => socket.end(bytes))
    let text = ''
    socket.on('data', (c: Buffer) => (text += c.toString('latin1')))
    socket.on('end', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0)))
    socket.on('error', reject)
  })
}

/** Seed 000: a database and an app that needs its address. */
export const seed000: RegisterRequest = {
  instances: [
    {id: 'db.wp.test', role: 'service:mysql', services: [{name: 'mysql', params: {}, provides: [], after: []}]},
    {
      id: 'app.wp.test',
      role: 'appserver',
      services: [
        {
          name: 'wordpress',
          params: {db_host: {template: '{{ip "service:mysql"}}'}, site: {value: 'blog'}},
          provides: [],
          after: [],
        },
      ],
    },
  ],
}

/** Seed 004: I1.S1 needs an output of I2.S2, I2.S1 needs one of I1.S2. */
export const seed004: RegisterRequest = {
  startupTimeoutSec: 3600,
  instances: ['I1', 'I2'].map((id, i): RegisterRequest['instances'][number] => {
    const other = i === 0 ? 'I2' : 'I1'
    return {
      id,
      role: `role${i + 1}`,
      services: [
        {
          name: 'S1',
          params: {
            peer_token: {template: `{{output "${other}" "S2" "token"}}`, source: {file: 'deploy.conf', line: 10 + i}},
          },
          provides: [],
          after: [],
        },
        {name: 'S2', params: {}, provides: ['token'], after: []},
      ],
    }
  }),
}

/** The machine's PostgreSQL (trust auth for postgres on loopback); NODESET_TEST_PG overrides it. */
export const PG_SERVER = process.env.NODESET_TEST_PG ?? 'postgresql://postgres@127.0.0.1:5432'

/** Whether PostgreSQL answers. With CI=true its absence fails the tests that need it instead of skipping them. */
export async function postgresAvailable(): Promise<boolean> {
  const {default: pg} = await import('pg')
  const client = new pg.Client({connectionString: `${PG_SERVER}/postgres`, connectionTimeoutMillis: 3000})
  try {
    await client.connect()
    await client.end()
    return true
  } catch (error) {
    if (process.env.CI === 'true')
      throw new Error(`PostgreSQL at ${PG_SERVER} is needed (CI=true): ${String(error)}`, {cause: error})
    return false
  }
}

/** A new, empty database, dropped when the test file is done; its URL. */
export async function pgDatabase(): Promise<string> {
  const {default: pg} = await import('pg')
  const name = `nodeset_test_${process.pid}_${Math.random().toString(36).slice(2, 10)}`
  const client = new pg.Client({connectionString: `${PG_SERVER}/postgres`})
  await client.connect()
  await client.query(`CREATE DATABASE ${name}`)
  await client.end()
  databases.push(name)
  return `${PG_SERVER}/${name}`
}

/** SQL on a test database, as its owner. */
export async function pgQuery(url: string, sql: string, params: unknown[] = []): Promise<Record<string, unknown>[]> {
  const {default: pg} = await import('pg')
  const client = new pg.Client({connectionString: url})
  await client.connect()
  try {
    return (await client.query(sql, params)).rows as Record<string, unknown>[]
  } finally {
    await client.end()
  }
}

const databases: string[] = []

afterAll(async () => {
  if (databases.length === 0) return
  const {default: pg} = await import('pg')
  const client = new pg.Client({connectionString: `${PG_SERVER}/postgres`})
  await client.connect()
  for (const name of databases.splice(0)) await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
  await client.end()
})

/** The stores the contract tests run against: SQLite always, PostgreSQL when it answers (always with CI=true). */
export async function stores(): Promise<Array<'sqlite' | 'postgresql'>> {
  return (await postgresAvailable()) ? ['sqlite', 'postgresql'] : ['sqlite']
}

/** A server over a store of this kind: a fresh temp dir, or a fresh database. */
export async function serverOn(kind: 'sqlite' | 'postgresql', opts: Partial<ConfigServerOptions> = {}) {
  if (kind === 'sqlite') return testServer(opts)
  return testServer({store: await pgDatabase(), adminToken: newToken(), ...opts})
}

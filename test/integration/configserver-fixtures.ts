/** Shared by the config server's integration tests: a real server on loopback, real SQLite in a temp dir. */
import fs from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import {ConfigServerClient, ConfigServerError} from '../../src/configserver/client.js'
import type {RegisterRequest} from '../../src/configserver/protocol.js'
import {type ConfigServerOptions, type RunningConfigServer, startConfigServer} from '../../src/configserver/server.js'

export function tempDir(prefix = 'nodeset-cs-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix))
}

export interface TestServer extends RunningConfigServer {
  stateDir: string
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

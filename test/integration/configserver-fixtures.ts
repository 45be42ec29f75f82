/** Shared by the config server's integration tests: a real server on loopback, real SQLite in a temp dir. */
import fs from 'node:fs'
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

/** Raw HTTP, for what the typed client cannot send (odd paths, bad bodies, headers). */
export async function raw(url: string, init: RequestInit & {token?: string} = {}): Promise<{status: number; headers: Headers; body: string; json: () => Record<string, unknown>}> {
  const headers = new Headers(init.headers)
  if (init.token) headers.set('authorization', `Bearer ${init.token}`)
  const response = await fetch(url, {...init, headers})
  const body = await response.text()
  return {status: response.status, headers: response.headers, body, json: () => JSON.parse(body) as Record<string, unknown>}
}

/** Seed 000: a database and an app that needs its address. */
export const seed000: RegisterRequest = {
  instances: [
    {id: 'db.wp.test', role: 'service:mysql', services: [{name: 'mysql', params: {}, provides: [], after: []}]},
    {
      id: 'app.wp.test',
      role: 'appserver',
      services: [{name: 'wordpress', params: {db_host: {template: '{{ip "service:mysql"}}'}, site: {value: 'blog'}}, provides: [], after: []}],
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
        {name: 'S1', params: {peer_token: {template: `{{output "${other}" "S2" "token"}}`, source: {file: 'deploy.conf', line: 10 + i}}}, provides: [], after: []},
        {name: 'S2', params: {}, provides: ['token'], after: []},
      ],
    }
  }),
}

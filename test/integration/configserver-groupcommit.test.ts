/**
 * Group commit over real HTTP and a real SQLite file: many phone-homes at once share commits and
 * syncs, each is answered with its own outcome, and every answered one is on disk.
 */
import {type ChildProcess, spawn} from 'node:child_process'
import http from 'node:http'
import path from 'node:path'
import Database from 'better-sqlite3'
import {afterEach, describe, expect, it} from 'vitest'
import type {RegisterRequest} from '../../src/configserver/protocol.js'
import {tempDir, testServer} from './configserver-fixtures.js'

const root = path.resolve(__dirname, '../..')

function deployment(n: number): RegisterRequest {
  return {instances: Array.from({length: n}, (_, i) => ({id: `n${i}`, role: 'worker', services: []}))}
}

const agents: http.Agent[] = []
afterEach(() => {
  for (const agent of agents.splice(0)) agent.destroy()
})

/** A PUT of facts (a raw body, so that invalid ones can be sent) over a shared keep-alive agent. */
function putFacts(
  agent: http.Agent,
  base: string,
  id: string,
  token: string,
  body: string,
): Promise<{status: number; json: Record<string, unknown>}> {
  const url = new URL(base)
  return new Promise((resolve, reject) => {
    const request = http.request(
      {
        host: url.hostname,
        port: url.port,
        path: `/v1/deployments/d/instances/${id}/facts`,
        method: 'PUT',
        agent,
        headers: {authorization: `Bearer ${token}`, 'content-type': 'application/json'},
      },
      (response) => {
        const chunks: Buffer[] = []
        response.on('data', (c: Buffer) => chunks.push(c))
        response.on('end', () =>
          resolve({status: response.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString())}),
        )
      },
    )
    request.on('error', reject)
    request.end(body)
  })
}

/** The facts as the state file holds them, read after the server is gone. */
function storedFacts(stateDir: string): Map<string, Record<string, unknown>> {
  const db = new Database(path.join(stateDir, 'configserver.sqlite'), {readonly: true})
  try {
    const rows = db.prepare(`SELECT id, facts FROM instances WHERE deployment = 'd'`).all() as Array<{
      id: string
      facts: string
    }>
    return new Map(rows.map((row) => [row.id, JSON.parse(row.facts) as Record<string, unknown>]))
  } finally {
    db.close()
  }
}

describe('config server: group commit', () => {
  it('300 phone-homes at once over 64 connections: each answered with its own instance and node token, all on disk', async () => {
    const server = await testServer({maxConnectionsPerAddress: 1000})
    const {tokens} = await server.admin('d').register(deployment(300))
    const agent = new http.Agent({keepAlive: true, maxSockets: 64})
    agents.push(agent)
    const answers = await Promise.all(
      Object.entries(tokens).map(([id, token]) =>
        putFacts(agent, server.url, id, token, JSON.stringify({facts: {hostname: id, seq: Number(id.slice(1))}})),
      ),
    )
    const ids = Object.keys(tokens)
    answers.forEach((answer, i) => {
      expect(answer.status).toBe(200)
      expect(answer.json).toMatchObject({deployment: 'd', instance: ids[i], ip: '127.0.0.1'})
      expect(answer.json.token).toMatch(/^[A-Za-z0-9_-]{43}$/)
    })
    expect(new Set(answers.map((a) => a.json.token)).size).toBe(300)
    // Each node token works for its own instance.
    const again = await putFacts(agent, server.url, 'n7', answers[7].json.token as string, '{"facts":{"again":true}}')
    expect(again.status).toBe(200)
    await server.close()
    const stored = storedFacts(server.stateDir)
    for (const id of ids) expect(stored.get(id)).toMatchObject({hostname: id, seq: Number(id.slice(1))})
    expect(stored.get('n7')?.again).toBe(true)
  })

  it('an invalid phone-home among valid ones fails alone: 400 and 413 for them, 200 and on disk for the rest', async () => {
    const server = await testServer({maxConnectionsPerAddress: 1000})
    const {tokens} = await server.admin('d').register(deployment(41))
    const agent = new http.Agent({keepAlive: true, maxSockets: 64})
    agents.push(agent)
    const tooMany = Object.fromEntries(Array.from({length: 300}, (_, i) => [`k${i}`, i]))
    const bodies: Record<string, string> = {
      n10: JSON.stringify({facts: {bad: {nested: true}}}),
      n20: JSON.stringify({facts: tooMany}),
      n30: JSON.stringify({facts: {ip: '10.9.9.9'}}),
    }
    const ids = Object.keys(tokens)
    const answers = await Promise.all(
      ids.map((id) => putFacts(agent, server.url, id, tokens[id], bodies[id] ?? JSON.stringify({facts: {mine: id}}))),
    )
    const status = Object.fromEntries(ids.map((id, i) => [id, answers[i].status]))
    expect(status.n10).toBe(400)
    expect(status.n20).toBe(413)
    expect(status.n30).toBe(400)
    for (const id of ids.filter((id) => !(id in bodies))) expect(status[id]).toBe(200)
    // The refused ones exchanged nothing: their bootstrap token still phones home.
    expect((await putFacts(agent, server.url, 'n20', tokens.n20, '{"facts":{"fixed":1}}')).status).toBe(200)
    await server.close()
    const stored = storedFacts(server.stateDir)
    for (const id of ids.filter((id) => !(id in bodies))) expect(stored.get(id)).toEqual({mine: id})
    expect(stored.get('n10')).toEqual({})
    expect(stored.get('n20')).toEqual({fixed: 1})
    expect(stored.get('n30')).toEqual({})
  })

  it('killed (SIGKILL) while batches are in flight: every answered phone-home is on disk', async () => {
    const stateDir = tempDir()
    const child: ChildProcess = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        // The built server (npm run build), as the CLI runs it.
        `import('${path.join(root, 'dist/configserver/server.js')}').then(async ({startConfigServer}) => {
           const server = await startConfigServer({stateDir: ${JSON.stringify(stateDir)}, maxConnectionsPerAddress: 1000})
           process.stdout.write(JSON.stringify({url: server.url, adminToken: server.adminToken}) + '\\n')
         })`,
      ],
      {cwd: root, stdio: ['ignore', 'pipe', 'inherit']},
    )
    try {
      const started = await new Promise<{url: string; adminToken: string}>((resolve, reject) => {
        let out = ''
        child.stdout!.on('data', (c: Buffer) => {
          out += c
          if (out.includes('\n')) resolve(JSON.parse(out.split('\n')[0]))
        })
        child.on('exit', (code) => reject(new Error(`the server exited (${code}) before listening`)))
      })
      const agent = new http.Agent({keepAlive: true, maxSockets: 64})
      agents.push(agent)
      const admin = await putRegistration(started.url, started.adminToken, deployment(64))
      const acked = new Map<string, number>()
      let killed = false
      const writer = async (id: string) => {
        let token = admin[id]
        for (let seq = 1; !killed; seq++) {
          try {
            const answer = await putFacts(agent, started.url, id, token, JSON.stringify({facts: {seq}}))
            if (answer.status !== 200) throw new Error(`HTTP ${answer.status}`)
            if (typeof answer.json.token === 'string') token = answer.json.token
            acked.set(id, seq)
          } catch {
            return
          }
        }
      }
      const load = Promise.all(Object.keys(admin).map(writer))
      while ([...acked.values()].reduce((a, b) => a + b, 0) < 2000)
        await new Promise((resolve) => setTimeout(resolve, 10))
      child.kill('SIGKILL')
      killed = true
      await load
      await new Promise((resolve) => (child.exitCode === null ? child.once('exit', resolve) : resolve(undefined)))
      const stored = storedFacts(stateDir)
      for (const [id, seq] of acked) expect([seq, seq + 1]).toContain(stored.get(id)?.seq)
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL')
    }
  })
})

async function putRegistration(base: string, adminToken: string, body: RegisterRequest) {
  const url = new URL(base)
  const answer = await new Promise<string>((resolve, reject) => {
    const request = http.request(
      {
        host: url.hostname,
        port: url.port,
        path: '/v1/deployments/d',
        method: 'PUT',
        headers: {authorization: `Bearer ${adminToken}`, 'content-type': 'application/json'},
      },
      (response) => {
        let text = ''
        response.on('data', (c: Buffer) => (text += c))
        response.on('end', () => (response.statusCode === 201 ? resolve(text) : reject(new Error(text))))
      },
    )
    request.on('error', reject)
    request.end(JSON.stringify(body))
  })
  return (JSON.parse(answer) as {tokens: Record<string, string>}).tokens
}

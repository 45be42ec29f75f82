import {type ChildProcess, spawn} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {afterEach, beforeAll, describe, expect, it} from 'vitest'
import {ConfigServerClient} from '../../src/configserver/client.js'
import type {RegisterRequest} from '../../src/configserver/protocol.js'
import {failure, tempDir, type TestServer, testServer} from './configserver-fixtures.js'

const root = path.resolve(__dirname, '../..')
const bin = path.join(root, 'bin/run.js')

/** The CLI runs from dist/: it must be at least as new as the sources it is built from. */
beforeAll(() => {
  const built = path.join(root, 'dist/commands/config-server.js')
  if (!fs.existsSync(built)) throw new Error(`${built} is missing: run npm run build first (npm test does)`)
  const sources = [
    ...fs.readdirSync(path.join(root, 'src/configserver')).map((f) => path.join(root, 'src/configserver', f)),
    path.join(root, 'src/commands/config-server.ts'),
  ]
  const stale = sources.filter((f) => fs.statSync(f).mtimeMs > fs.statSync(built).mtimeMs)
  if (stale.length > 0)
    throw new Error(
      `dist/ is older than ${stale.map((f) => path.relative(root, f)).join(', ')}: run npm run build first (npm test does)`,
    )
})

interface Cli {
  child: ChildProcess
  url: string
  adminToken: string
  stdout: () => string
  stderr: () => string
  exited: Promise<{code: number | null; signal: NodeJS.Signals | null}>
}

const children: ChildProcess[] = []
afterEach(() => {
  for (const child of children.splice(0))
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
})

/** `nodeset config-server` as a user runs it; resolves once it says where it listens. */
function startCli(stateDir: string): Promise<Cli> {
  const child = spawn(
    process.execPath,
    ['--enable-source-maps', bin, 'config-server', '--listen', '127.0.0.1:0', '--state', stateDir],
    {cwd: root, stdio: ['ignore', 'pipe', 'pipe']},
  )
  children.push(child)
  let out = ''
  let err = ''
  child.stdout!.on('data', (c: Buffer) => (out += c))
  const exited = new Promise<{code: number | null; signal: NodeJS.Signals | null}>((resolve) =>
    child.on('exit', (code, signal) => resolve({code, signal})),
  )
  return new Promise((resolve, reject) => {
    child.stderr!.on('data', (c: Buffer) => {
      err += c
      const match = /config server at (\S+); admin token in (\S+)/.exec(err)
      if (match)
        resolve({
          child,
          url: match[1],
          adminToken: fs.readFileSync(match[2], 'utf8').trim(),
          stdout: () => out,
          stderr: () => err,
          exited,
        })
    })
    void exited.then(({code}) => reject(new Error(`config-server exited (${code}) before listening:\n${err}`)))
  })
}

const clients: ConfigServerClient[] = []
const client = (url: string, deployment: string, token: string, localAddress?: string) => {
  const c = new ConfigServerClient({url, deployment, token, timeoutMs: 10_000, ...(localAddress ? {localAddress} : {})})
  clients.push(c)
  return c
}
afterEach(() => {
  for (const c of clients.splice(0)) c.close()
})

function deployment(n: number, prefix = 'n'): RegisterRequest {
  return {
    instances: Array.from({length: n}, (_, i) => ({
      id: `${prefix}${i}`,
      role: 'worker',
      services: [{name: 'work', params: {next: {template: `{{ip "${prefix}${(i + 1) % n}"}}`}}, provides: ['seq']}],
    })),
  }
}

describe('config server: durability', () => {
  it('every acknowledged registration, fact and output survives SIGKILL mid-deployment', async () => {
    const stateDir = tempDir()
    const first = await startCli(stateDir)
    const admin = client(first.url, 'k', first.adminToken)
    const {tokens} = await admin.register(deployment(50))

    // 50 nodes write in a loop (a phone-home, then a service report, each with a rising counter)
    // while the admin replaces the deployment again and again; the server is killed mid-stream.
    const acked = {
      facts: new Map<string, number>(),
      outputs: new Map<string, number>(),
      registrations: [] as number[],
      nodeTokens: new Map<string, string>(),
    }
    let killed = false
    const writer = async (id: string) => {
      const c = client(first.url, 'k', tokens[id])
      for (let seq = 1; !killed; seq++) {
        try {
          const {token} = await c.putFacts(id, {seq})
          if (token !== undefined) acked.nodeTokens.set(id, token)
          acked.facts.set(id, seq)
          await c.reportService(id, 'work', {state: 'running', outputs: {seq: String(seq)}})
          acked.outputs.set(id, seq)
        } catch {
          return
        }
      }
    }
    const registrar = async () => {
      for (let extra = 1; !killed; extra++) {
        try {
          const request = deployment(50)
          request.instances.push(...deployment(extra, 'extra').instances)
          await admin.register(request)
          acked.registrations.push(extra)
        } catch {
          return
        }
      }
    }
    const load = Promise.all([...Object.keys(tokens).map(writer), registrar()])
    while (acked.facts.size < 50 || [...acked.outputs.values()].reduce((a, b) => a + b, 0) < 500)
      await new Promise((resolve) => setTimeout(resolve, 20))
    first.child.kill('SIGKILL')
    killed = true
    expect((await first.exited).signal).toBe('SIGKILL')
    await load

    const second = await startCli(stateDir)
    expect(second.adminToken).toBe(first.adminToken)
    const state = await client(second.url, 'k', second.adminToken).state()
    const byId = new Map(state.instances.map((i) => [i.id, i]))
    for (const [id, seq] of acked.facts) {
      // The last acknowledged write is there; at most the one in flight when killed went further.
      const stored = byId.get(id)?.facts.seq as number
      expect([seq, seq + 1]).toContain(stored)
      expect(byId.get(id)?.facts.ip).toBe('127.0.0.1')
    }
    for (const [id, seq] of acked.outputs) expect([seq, seq + 1]).toContain(Number(byId.get(id)?.outputs.work?.seq))
    const lastRegistration = acked.registrations.at(-1) ?? 0
    const extras = state.instances.filter((i) => i.id.startsWith('extra')).length
    expect([lastRegistration, lastRegistration + 1]).toContain(extras)
    // The token exchanges survived too: every node token still works, its config resolves from the
    // stored facts, and the bootstrap tokens stay exchanged.
    expect(acked.nodeTokens.size).toBe(50)
    const answer = await client(second.url, 'k', acked.nodeTokens.get('n0')!).getConfig('n0')
    expect(answer.status).toBe(200)
    expect(answer.config.services.work.params.next).toBe('127.0.0.1')
    for (const [id, token] of acked.nodeTokens)
      expect((await client(second.url, 'k', token).putFacts(id, {after: 'restart'})).token).toBeUndefined()
    const refused = await failure(client(second.url, 'k', tokens.n1).getConfig('n1'))
    expect(refused.status).toBe(401)
    expect(refused.message).toContain('this bootstrap token was exchanged; use the node token stored on the node')
    second.child.kill('SIGTERM')
    expect((await second.exited).code).toBe(0)
  })

  it('the CLI logs JSON lines, and on SIGTERM answers pending long-polls and exits 0', async () => {
    const stateDir = tempDir()
    const cli = await startCli(stateDir)
    expect(cli.stderr()).toContain(`admin token in ${path.join(path.resolve(stateDir), 'admin-token')}`)
    const admin = client(cli.url, 'wp', cli.adminToken)
    const {tokens} = await admin.register({
      instances: [
        {id: 'db', role: 'service:db', services: [{name: 'db'}]},
        {id: 'app', role: 'appserver', services: [{name: 'app', params: {db: {template: '{{ip "db"}}'}}}]},
      ],
    })
    const waiting = client(cli.url, 'wp', tokens.app).getConfig('app', {wait: 60})
    await new Promise((resolve) => setTimeout(resolve, 200))
    const started = performance.now()
    cli.child.kill('SIGTERM')
    const answer = await waiting
    expect(answer.status).toBe(202)
    expect(performance.now() - started).toBeLessThan(5000)
    expect(await cli.exited).toEqual({code: 0, signal: null})
    expect(cli.stderr()).toContain('SIGTERM: closing the config server')
    const lines = cli
      .stdout()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as {msg: string; req?: {url: string}})
    expect(lines.some((l) => l.req?.url === '/v1/deployments/wp')).toBe(true)
    expect(cli.stdout()).not.toContain(cli.adminToken)
    expect(cli.stdout()).not.toContain(tokens.app)
  })
})

describe('config server: 1,000 nodes at once', () => {
  let server: TestServer
  afterEach(async () => {
    await server.close()
  })

  it('1,000 concurrent phone-homes from 1,000 addresses: all recorded, every dependent config complete', async () => {
    server = await testServer()
    const n = 1000
    const {tokens} = await server.admin('big').register(deployment(n))
    const address = (i: number) => `127.0.${1 + Math.floor(i / 250)}.${1 + (i % 250)}`
    const nodes = Array.from({length: n}, (_, i) => client(server.url, 'big', tokens[`n${i}`], address(i)))
    // Every node asks first and waits; then all phone home at once.
    const configs = Promise.all(nodes.map((c, i) => c.getConfig(`n${i}`, {wait: 60})))
    await new Promise((resolve) => setTimeout(resolve, 300))
    const seen = await Promise.all(nodes.map((c, i) => c.putFacts(`n${i}`, {hostname: `n${i}`})))
    expect(seen.map((s) => s.ip)).toEqual(nodes.map((_, i) => address(i)))
    // Each phone-home exchanged its node's bootstrap token for a node token of its own.
    expect(new Set(seen.map((s) => s.token)).size).toBe(n)
    expect(seen.every((s) => /^[A-Za-z0-9_-]{43}$/.test(s.token ?? ''))).toBe(true)

    const answers = await configs
    for (let i = 0; i < n; i++) {
      expect(answers[i].status).toBe(200)
      expect(answers[i].config.services.work.params.next).toBe(address((i + 1) % n))
    }
    const state = await server.admin('big').state()
    expect(state.instances).toHaveLength(n)
    for (const instance of state.instances) {
      const i = Number(instance.id.slice(1))
      expect(instance.facts).toEqual({hostname: instance.id, ip: address(i)})
    }
    const status = await server.admin('big').status()
    expect(status.instances.every((i) => i.firstContact && i.services[0].status === 'ready')).toBe(true)
  })
})

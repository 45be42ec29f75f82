/**
 * The agent (rendered user data) run by sh against the real config server on loopback. Every path the
 * agent writes is moved under a temp root with NODESET_AGENT_ROOT, so this runs without a node.
 */
import {type ChildProcess, execFileSync, spawn} from 'node:child_process'
import {existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {createServer} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {ConfigServerClient} from '../../src/configserver/client.js'
import {failure} from './configserver-fixtures.js'
import type {RegisterRequest} from '../../src/configserver/protocol.js'
import {type RunningConfigServer, startConfigServer} from '../../src/configserver/server.js'
import {renderUserData, type UserDataOptions} from '../../src/providers/userdata.js'

const work = mkdtempSync(join(tmpdir(), 'nodeset-agent-'))
const has = (tool: string): boolean => ['/usr/bin', '/bin', '/usr/local/bin'].some((dir) => existsSync(join(dir, tool)))
// The agent supports both; CI must have both (a missing one fails there instead of being skipped).
const httpClients = (['curl', 'wget'] as const).filter((tool) => process.env.CI === 'true' || has(tool))
let server: RunningConfigServer
const clients: ConfigServerClient[] = []

function client(deployment: string, token = server.adminToken): ConfigServerClient {
  const c = new ConfigServerClient({url: server.url, deployment, token})
  clients.push(c)
  return c
}

function wordpress(deployment: string): RegisterRequest {
  return {
    instances: [
      {id: `db.${deployment}`, role: 'service:mysql', services: [{name: 'mysql'}]},
      {
        id: `app.${deployment}`,
        role: 'appserver',
        services: [{name: 'wordpress', params: {db_host: {template: '{{ip "service:mysql"}}'}, site: {value: 'blog'}}}],
      },
    ],
  }
}

interface FakeNode {
  root: string
  script: string
  hostKeys: string[]
}

/** A directory that stands for a node's root: /etc/ssh host keys and an /etc/hosts with lines of its own. */
function nodeRoot(name: string, opts: UserDataOptions): FakeNode {
  const root = join(work, name)
  mkdirSync(join(root, 'etc/ssh'), {recursive: true})
  for (const type of ['ed25519', 'ecdsa']) {
    execFileSync('ssh-keygen', [
      '-q',
      '-t',
      type,
      '-N',
      '',
      '-C',
      `root@${name}`,
      '-f',
      join(root, `etc/ssh/ssh_host_${type}_key`),
    ])
  }
  writeFileSync(
    join(root, 'etc/hosts'),
    `127.0.0.1 localhost\n# BEGIN nodeset ${opts.deployment}\n10.9.9.9 stale.example\n# END nodeset ${opts.deployment}\n192.0.2.50 kept.example # the operator's own line\n`,
  )
  writeFileSync(join(root, 'etc/ssh/sshd_config'), "# the node's sshd\nPort 2222\n")
  const script = join(work, `${name}.sh`)
  writeFileSync(script, renderUserData(opts), {mode: 0o700})
  const hostKeys = ['ecdsa', 'ed25519'].map((t) =>
    readFileSync(join(root, `etc/ssh/ssh_host_${t}_key.pub`), 'utf8')
      .split(' ')
      .slice(0, 2)
      .join(' '),
  )
  return {root, script, hostKeys}
}

function startAgent(node: FakeNode, http: 'curl' | 'wget' = 'curl'): ChildProcess & {done: Promise<number>} {
  const child = spawn('sh', [node.script, 'run'], {
    env: {
      PATH: '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin',
      NODESET_AGENT_ROOT: node.root,
      NODESET_AGENT_HTTP: http,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const done = new Promise<number>((resolve) => child.on('exit', (code) => resolve(code ?? -1)))
  return Object.assign(child, {done})
}

const read = (node: FakeNode, path: string): string => readFileSync(join(node.root, path), 'utf8')
const agentLog = (node: FakeNode): string => read(node, 'var/log/nodeset-agent.log')

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`)
    await sleep(50)
  }
}

async function freePort(): Promise<number> {
  const probe = createServer()
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
  const port = (probe.address() as {port: number}).port
  await new Promise((resolve) => probe.close(resolve))
  return port
}

beforeAll(async () => {
  // Several tests are refused on purpose (401), all from 127.0.0.1: keep them under the failure limit.
  server = await startConfigServer({
    stateDir: join(work, 'server'),
    listen: {host: '127.0.0.1', port: 0},
    authFailureLimit: 1000,
  })
})

afterAll(async () => {
  for (const c of clients) c.close()
  await server?.close()
  rmSync(work, {recursive: true, force: true})
})

describe.each(httpClients)('the agent with %s', (http) => {
  it('phones home, waits for the database, then writes config, role map and hosts block', async () => {
    const deployment = `wp-${http}`
    const admin = client(deployment)
    const {tokens} = await admin.register(wordpress(deployment))
    const opts = (id: string): UserDataOptions => ({
      deployment,
      node: id,
      token: tokens[id],
      serverUrl: server.url,
      extraFacts: {rack: 'r7'},
    })
    const app = nodeRoot(`app-${http}`, opts(`app.${deployment}`))
    const db = nodeRoot(`db-${http}`, opts(`db.${deployment}`))

    const appAgent = startAgent(app, http)
    await until('the app phoned home', () => existsSync(join(app.root, 'etc/nodeset/phoned-home')))
    await sleep(300)
    expect(appAgent.exitCode).toBeNull()
    expect(read(app, 'etc/nodeset/agent.state')).toBe('waiting')
    expect(existsSync(join(app.root, 'etc/nodeset/config.json'))).toBe(false)
    const seen = (await admin.state()).instances.find((i) => i.id === `app.${deployment}`)
    // sshd_port is the node's own (its sshd_config says Port 2222); rack came with the user data.
    expect(seen?.facts).toMatchObject({hostname: expect.any(String), sshd_port: 2222, rack: 'r7', ip: '127.0.0.1'})
    expect([...(seen?.facts.ssh_host_keys as string[])].sort()).toEqual([...app.hostKeys].sort())

    const dbAgent = startAgent(db, http)
    expect(await dbAgent.done).toBe(0)
    expect(await appAgent.done).toBe(0)

    const config = JSON.parse(read(app, 'etc/nodeset/config.json')) as {
      complete: boolean
      services: Record<string, {params: Record<string, string>}>
    }
    expect(config.complete).toBe(true)
    expect(config.services.wordpress.params).toEqual({db_host: '127.0.0.1', site: 'blog'})
    expect(statSync(join(app.root, 'etc/nodeset/config.json')).mode & 0o777).toBe(0o600)
    expect(read(app, 'etc/nodeset/agent.state')).toBe('complete')
    expect(Date.parse(read(app, 'etc/nodeset/phoned-home').trim())).toBeGreaterThan(Date.now() - 60_000)
    expect(read(app, 'etc/nodeset/roles')).toBe(await admin.roleMap(`app.${deployment}`))
    expect(read(app, 'etc/nodeset/roles')).toMatch(
      new RegExp(`^service\\.mysql = db\\.${deployment} 127\\.0\\.0\\.1$`, 'm'),
    )

    const block = await admin.hostsBlock(`app.${deployment}`)
    expect(block).toContain(`127.0.0.1 db.${deployment}`)
    expect(read(app, 'etc/hosts')).toBe(
      `127.0.0.1 localhost\n${block}192.0.2.50 kept.example # the operator's own line\n`,
    )
    expect(statSync(join(app.root, 'etc/hosts')).mode & 0o777).toBe(0o644)

    const nodeTokens = [app, db].map((node) => read(node, 'var/lib/nodeset/token').trim())
    for (const [i, node] of [app, db].entries()) {
      const log = agentLog(node)
      expect(log).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ nodeset-agent\[\d+\]: starting/)
      expect(log).toContain('complete')
      expect(log).toContain('stored the node token in')
      for (const token of [...Object.values(tokens), ...nodeTokens]) expect(log).not.toContain(token)
      // The node token the bootstrap token was exchanged for: its own 0600 file, and nowhere else.
      expect(nodeTokens[i]).toMatch(/^[A-Za-z0-9_-]{43}$/)
      expect(Object.values(tokens)).not.toContain(nodeTokens[i])
      expect(statSync(join(node.root, 'var/lib/nodeset/token')).mode & 0o777).toBe(0o600)
      // The stored agent is the user data as it came: it holds only the bootstrap token.
      expect(read(node, 'var/lib/nodeset/agent.sh')).toBe(readFileSync(node.script, 'utf8'))
      expect(read(node, 'var/lib/nodeset/agent.sh')).not.toContain(nodeTokens[i])
      expect(existsSync(join(node.root, 'var/lib/nodeset/work'))).toBe(false)
      expect(existsSync(join(node.root, 'var/lib/nodeset/agent.lock'))).toBe(false)
    }

    // The token in the user data is useless now: whoever reads it cannot phone home or read the config.
    const bootstrap = client(deployment, tokens[`app.${deployment}`])
    for (const call of [
      bootstrap.getConfig(`app.${deployment}`),
      bootstrap.putFacts(`app.${deployment}`, {hostname: 'intruder'}),
    ]) {
      const error = await failure(call)
      expect(error.status).toBe(401)
      expect(error.message).toContain('this bootstrap token was exchanged; use the node token stored on the node')
    }
    expect((await client(deployment, nodeTokens[0]).getConfig(`app.${deployment}`)).status).toBe(200)

    // At the next boot it runs again, with the stored node token: same files, still one block.
    const hostsBefore = read(app, 'etc/hosts')
    expect(await startAgent(app, http).done).toBe(0)
    expect(read(app, 'etc/hosts')).toBe(hostsBefore)
    expect(agentLog(app).match(/: configuration complete$/gm)).toHaveLength(2)
    expect(agentLog(app).match(/: using the node token in .*\/var\/lib\/nodeset\/token$/gm)).toHaveLength(1)
    expect(read(app, 'var/lib/nodeset/token').trim()).toBe(nodeTokens[0])
  })

  it('stops at once with a clear reason when the server refuses its token', async () => {
    const deployment = `refused-${http}`
    await client(deployment).register(wordpress(deployment))
    const wrongToken = 'WrongTokenWrongTokenWrongToken12'
    const node = nodeRoot(`refused-${http}`, {
      deployment,
      node: `app.${deployment}`,
      token: wrongToken,
      serverUrl: server.url,
    })
    const started = Date.now()
    expect(await startAgent(node, http).done).toBe(1)
    expect(Date.now() - started).toBeLessThan(5000)
    expect(read(node, 'etc/nodeset/agent.state')).toMatch(
      /^failed: phoning home: the config server refused this node's token \(HTTP 401: /,
    )
    expect(agentLog(node)).toContain('HTTP 401')
    expect(agentLog(node)).not.toContain(wrongToken)
    expect(existsSync(join(node.root, 'etc/nodeset/phoned-home'))).toBe(false)
  })
})

describe('the agent and its tokens', () => {
  it('a phone-home whose answer was lost: the agent retries with the bootstrap token and gets a fresh node token', async () => {
    const deployment = 'lost'
    const {tokens} = await client(deployment).register(wordpress(deployment))
    const id = `db.${deployment}`
    // The server exchanged the bootstrap token, but its answer never reached the node.
    const lost = (await client(deployment, tokens[id]).putFacts(id, {hostname: 'db'})).token
    const node = nodeRoot('lost', {deployment, node: id, token: tokens[id], serverUrl: server.url})
    expect(await startAgent(node).done).toBe(0)
    const nodeToken = read(node, 'var/lib/nodeset/token').trim()
    expect(nodeToken).not.toBe(lost)
    expect((await failure(client(deployment, lost!).getConfig(id))).status).toBe(401)
    expect((await client(deployment, nodeToken).getConfig(id)).status).toBe(200)
  })

  it('a node recreated with reissued tokens: its old node token is refused, so it exchanges the new bootstrap token', async () => {
    const deployment = 'reissued'
    const admin = client(deployment)
    const id = `db.${deployment}`
    const {tokens} = await admin.register(wordpress(deployment))
    const node = nodeRoot('reissued', {deployment, node: id, token: tokens[id], serverUrl: server.url})
    expect(await startAgent(node).done).toBe(0)
    const oldNodeToken = read(node, 'var/lib/nodeset/token').trim()

    const {tokens: reissued} = await admin.register({...wordpress(deployment), reissueTokens: [id]})
    writeFileSync(node.script, renderUserData({deployment, node: id, token: reissued[id], serverUrl: server.url}), {
      mode: 0o700,
    })
    expect(await startAgent(node).done).toBe(0)
    expect(agentLog(node)).toContain('the node token was refused; trying the bootstrap token')
    const newNodeToken = read(node, 'var/lib/nodeset/token').trim()
    expect(newNodeToken).not.toBe(oldNodeToken)
    expect((await client(deployment, newNodeToken).getConfig(id)).status).toBe(200)
    for (const token of [oldNodeToken, newNodeToken, tokens[id], reissued[id]])
      expect(agentLog(node)).not.toContain(token)
  })

  it('a node that lost its node token after the exchange stops with what to do', async () => {
    const deployment = 'forgot'
    const id = `db.${deployment}`
    const {tokens} = await client(deployment).register(wordpress(deployment))
    const node = nodeRoot('forgot', {deployment, node: id, token: tokens[id], serverUrl: server.url})
    expect(await startAgent(node).done).toBe(0)
    rmSync(join(node.root, 'var/lib/nodeset/token'))
    expect(await startAgent(node).done).toBe(1)
    expect(read(node, 'etc/nodeset/agent.state')).toMatch(
      /^failed: phoning home: the config server refused this node's token \(HTTP 401: .*this bootstrap token was exchanged; use the node token stored on the node.*\); .*recreate the node/,
    )
  })
})

describe('the agent', () => {
  it('stops when the server does not know its instance (404)', async () => {
    const deployment = 'ghosts'
    await client(deployment).register(wordpress(deployment))
    const node = nodeRoot('ghost', {deployment, node: 'ghost.ghosts', token: server.adminToken, serverUrl: server.url})
    expect(await startAgent(node).done).toBe(1)
    expect(read(node, 'etc/nodeset/agent.state')).toMatch(
      /does not know ghost\.ghosts in deployment ghosts \(HTTP 404\)/,
    )
    expect(agentLog(node)).not.toContain(server.adminToken)
  })

  it('retries an unreachable server with growing, jittered delays until its deadline', async () => {
    const port = await freePort()
    const node = nodeRoot('unreachable', {
      deployment: 'gone',
      node: 'app.gone',
      token: 'TokenTokenTokenToken',
      serverUrl: `http://127.0.0.1:${port}`,
      bootDeadlineSec: 10,
    })
    const started = Date.now()
    expect(await startAgent(node).done).toBe(1)
    const elapsed = Date.now() - started
    expect(elapsed).toBeGreaterThanOrEqual(8000)
    expect(elapsed).toBeLessThan(15_000)
    const delays = [...agentLog(node).matchAll(/no answer from .*; retrying in (\d+)s/g)].map((m) => Number(m[1]))
    expect(delays.length).toBeGreaterThanOrEqual(3)
    // Backoff 1, 2, 4 … with equal jitter: each delay within [backoff/2, backoff] (the last one is cut at the deadline).
    delays.slice(0, 3).forEach((d, i) => {
      expect(d).toBeGreaterThanOrEqual(Math.max(1, 2 ** i / 2))
      expect(d).toBeLessThanOrEqual(2 ** i)
    })
    expect(read(node, 'etc/nodeset/agent.state')).toMatch(/^failed: gave up after 10s: phoning home: no answer from/)
  })

  it('runs once at a time and leaves /etc/hosts alone when told to', async () => {
    const deployment = 'single'
    const {tokens} = await client(deployment).register(wordpress(deployment))
    const node = nodeRoot('single', {
      deployment,
      node: `app.${deployment}`,
      token: tokens[`app.${deployment}`],
      serverUrl: server.url,
    })
    mkdirSync(join(node.root, 'etc/nodeset'), {recursive: true})
    writeFileSync(join(node.root, 'etc/nodeset/no-etc-hosts'), '')
    const hostsBefore = read(node, 'etc/hosts')
    const first = startAgent(node)
    await until('the first agent phoned home', () => existsSync(join(node.root, 'etc/nodeset/phoned-home')))
    expect(await startAgent(node).done).toBe(0)
    expect(agentLog(node)).toMatch(/another agent \(pid \d+\) is running/)
    expect(first.exitCode).toBeNull()
    // The database phones home (as its agent would), so the app's config completes.
    const db = client(deployment, tokens[`db.${deployment}`])
    await db.putFacts(`db.${deployment}`, {hostname: 'db'})
    expect(await first.done).toBe(0)
    expect(read(node, 'etc/hosts')).toBe(hostsBefore)
    expect(agentLog(node)).toContain('left')
  })
})

/**
 * Seed 002 on this machine: a copy of examples/federated.conf (site `inside`: two appservers and
 * MariaDB; site `outside`: the balancer; each a local provider on its own subnet with its own embedded
 * config server), brought up by `nodeset up` with the demo app. The two servers federate through the
 * machine's RabbitMQ, one vhost per site (scripts/broker-setup.sh). The balancer forwards to both
 * appservers although no `inside` node ever spoke to outside's server, and the app reaches its database.
 * Needs root, iproute2, openssh-server, nginx, mariadb-server and RabbitMQ with its federation plugin;
 * with CI=true a missing one fails the run. Runs the built CLI (npm run build).
 */
import {execFile as execFileCb} from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {promisify} from 'node:util'
import amqp from 'amqplib'
import Database from 'better-sqlite3'
import {type CliResult, runCli} from '../helpers/cli.js'
import {httpGet} from '../helpers/http.js'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {localProviderProblem} from '../../src/providers/local-system.js'

const execFile = promisify(execFileCb)
const mustRun = process.env.CI === 'true' || (await localProviderProblem()) === undefined

const root = path.resolve(__dirname, '../..')
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-federated-'))
const conf = path.join(work, 'federated.conf')
const DEPLOYMENT = 'fed-up'
const workspace = path.join(work, '.nodeset', DEPLOYMENT)
const INSIDE = ['app1.federated.test', 'app2.federated.test', 'mysql.federated.test']
const BALANCER = 'balancer.federated.test'
const FORWARD = '/proc/sys/net/ipv4/ip_forward'
const forwardBefore = fs.existsSync(FORWARD) ? fs.readFileSync(FORWARD, 'utf8') : undefined

type Run = CliResult

/** The CLI, run from the test's folder as a user would. */
function nodeset(...args: string[]): Promise<Run> {
  return runCli(args, {cwd: work, timeoutMs: 600_000})
}

const get = (url: string) => httpGet(url)

/** The rows a site's server keeps of the deployment's instances (read while no command runs). */
function serverRecords(site: string) {
  const db = new Database(path.join(workspace, site, 'configserver', 'configserver.sqlite'), {readonly: true})
  try {
    return db
      .prepare('SELECT id, site, address, exchanged_at, fed_at FROM instances WHERE deployment = ? ORDER BY id')
      .all(DEPLOYMENT) as Array<{
      id: string
      site: string | null
      address: string | null
      exchanged_at: number | null
      fed_at: number | null
    }>
  } finally {
    db.close()
  }
}

interface SitesStatusJson {
  state: string
  instances: Array<{id: string; site: string; address?: string}>
  sites: Array<{
    site: string
    configServer: string
    links: Array<{site: string; state: string; lagMs?: number}>
    remote: Array<{id: string; site: string; factsAgeMs?: number}>
  }>
}

async function status(): Promise<SitesStatusJson> {
  const run = await nodeset('status', conf, '--json')
  expect(run.stderr).toBe('')
  expect(run.code).toBe(0)
  return JSON.parse(run.stdout) as SitesStatusJson
}

let up: Run
let balancerUrl = ''

describe.runIf(mustRun)('a deployment across two sites, federated through RabbitMQ', () => {
  beforeAll(async () => {
    // The same file as the example, on the subnets of this test.
    const text = fs
      .readFileSync(path.join(root, 'examples/federated.conf'), 'utf8')
      .replace('name = federated', `name = ${DEPLOYMENT}`)
      .replace('10.86.1.0/24', '10.87.1.0/24')
      .replace('10.86.2.0/24', '10.87.2.0/24')
    fs.writeFileSync(conf, text)
    await execFile(path.join(root, 'scripts/broker-setup.sh'), [], {timeout: 120_000})
    up = await nodeset('up', conf, path.join(root, 'examples/hello-app'))
    balancerUrl = /is up: (\S+)/.exec(up.stdout)?.[1] ?? ''
  }, 900_000)

  afterAll(async () => {
    const destroyed = await nodeset('destroy-node', conf, '--yes')
    if (destroyed.code !== 0) console.error(destroyed.stderr)
    if (forwardBefore !== undefined) fs.writeFileSync(FORWARD, forwardBefore)
    // What the two servers declared on their vhosts goes with the deployment.
    for (const site of ['inside', 'outside']) {
      const connection = await amqp.connect(`amqp://guest:guest@127.0.0.1:5672/nodeset-${site}`).catch(() => undefined)
      const channel = await connection?.createChannel().catch(() => undefined)
      await channel?.deleteQueue(`nodeset.${DEPLOYMENT}.${site}`).catch(() => undefined)
      await channel?.deleteExchange(`nodeset.${DEPLOYMENT}`).catch(() => undefined)
      await connection?.close().catch(() => undefined)
    }
    fs.rmSync(work, {recursive: true, force: true})
  }, 600_000)

  it('comes up with nodeset up, each site with its own config server', () => {
    expect(up.stderr).not.toMatch(/nodeset-(inside|outside)-pw/)
    expect(up.code, up.stderr).toBe(0)
    expect(balancerUrl).toMatch(/^http:\/\/10\.87\.2\.\d+(:\d+)?\//)
    for (const site of ['inside', 'outside'])
      expect(fs.existsSync(path.join(workspace, site, 'configserver', 'configserver.sqlite'))).toBe(true)
    const keys = path.join(workspace, 'federation-keys.json')
    expect((fs.statSync(keys).mode & 0o777).toString(8)).toBe('600')
  })

  it('forwards from the balancer outside to both appservers inside, and the app reaches its database', async () => {
    const nodes = new Set<string>()
    for (let i = 0; i < 12; i++) {
      const {status: code, body} = await get(balancerUrl)
      expect(code).toBe(200)
      const answer = JSON.parse(body) as {node: string; database: {reachable: boolean} | null}
      expect(answer.database?.reachable).toBe(true)
      nodes.add(answer.node)
    }
    expect([...nodes].sort()).toEqual(['app1.federated.test', 'app2.federated.test'])
  })

  it("learns the inside nodes at outside's server only through the broker: only the balancer phoned home there", () => {
    const outside = serverRecords('outside')
    expect(outside.map((r) => r.id)).toEqual([...INSIDE, BALANCER].sort())
    // A phone-home exchanges the node's bootstrap token: at outside, only the balancer's was.
    expect(outside.filter((r) => r.exchanged_at !== null).map((r) => r.id)).toEqual([BALANCER])
    for (const r of outside.filter((r) => r.id !== BALANCER)) {
      expect(r.site).toBe('inside')
      expect(r.fed_at).not.toBeNull()
      expect(r.address).toMatch(/^10\.87\.1\.\d+$/)
    }
    const inside = serverRecords('inside')
    expect(inside.filter((r) => r.exchanged_at !== null).map((r) => r.id)).toEqual([...INSIDE].sort())
  })

  it('shows both sites, their links up and lag under a second, and remote instances with their facts age', async () => {
    let current = await status()
    // A link is up once the peer's heartbeat has come; the servers of this command just started.
    for (let i = 0; i < 30 && !current.sites.every((s) => s.links.every((l) => l.state === 'up')); i++) {
      await new Promise((resolve) => setTimeout(resolve, 1000))
      current = await status()
    }
    expect(current.state).toBe('settled')
    expect(current.sites.map((s) => s.site)).toEqual(['inside', 'outside'])
    expect(current.sites[0].configServer).toMatch(/^http:\/\/10\.87\.1\.1:\d+$/)
    expect(current.sites[1].configServer).toMatch(/^http:\/\/10\.87\.2\.1:\d+$/)
    for (const site of current.sites) {
      expect(site.links).toHaveLength(1)
      expect(site.links[0].state).toBe('up')
      expect(site.links[0].lagMs).toBeLessThan(1000)
    }
    expect(current.sites[1].remote.map((r) => r.id).sort()).toEqual([...INSIDE].sort())
    expect(current.sites[1].remote.every((r) => r.site === 'inside' && typeof r.factsAgeMs === 'number')).toBe(true)
    expect(current.instances.map((i) => [i.id, i.site]).sort()).toEqual(
      [...INSIDE.map((id) => [id, 'inside']), [BALANCER, 'outside']].sort(),
    )
  }, 120_000)

  it("tells every node only its own site's config server", async () => {
    const [inside, outside] = (await status()).sites.map((s) => s.configServer)
    const run = await nodeset(
      'exec',
      conf,
      'appserver',
      'service:mysql',
      'balancer',
      '--json',
      '--',
      'sed',
      '-n',
      's/^SERVER=//p',
      '/var/lib/nodeset/agent.sh',
    )
    expect(run.code, run.stderr).toBe(0)
    const told = (JSON.parse(run.stdout) as {nodes: Array<{node: string; stdout: string}>}).nodes
      .map((n) => [n.node, n.stdout.trim().replace(/^'|'$/g, '')])
      .sort()
    expect(told).toEqual([...INSIDE.map((node) => [node, inside]), [BALANCER, outside]].sort())
  }, 120_000)
})

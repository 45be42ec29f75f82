/**
 * Local nodes that really boot (`[provider] boot = systemd`): the Debian image under systemd-nspawn,
 * cloud-init running the user data from a NoCloud seed, the agent as a systemd unit, the image's own
 * sshd. Two nodes go through the seed-000 flow and one reboots; meanwhile `nodeset up` of the demo
 * with boot = systemd serves the demo app through its balancer. Needs root, iproute2, util-linux,
 * openssh-server, debootstrap and systemd-container, and the image (scripts/install.sh builds it
 * once; otherwise the first run here builds it). With CI=true a missing one fails the run.
 */
import {execFile as execFileCb, execFileSync} from 'node:child_process'
import {existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join, resolve} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {promisify} from 'node:util'
import {type CliResult, runCli} from '../helpers/cli.js'
import {httpGet} from '../helpers/http.js'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {ConfigServerClient} from '../../src/configserver/client.js'
import {type RunningConfigServer, startConfigServer} from '../../src/configserver/server.js'
import {CGROUP_HIERARCHIES, CGROUP_PARENT} from '../../src/providers/local-boot-commands.js'
import {bootModeProblem, ensureImage} from '../../src/providers/local-image-build.js'
import {aptSource} from '../../src/providers/local-image.js'
import {hostVethName, namespaceName} from '../../src/providers/local-network.js'
import {localProviderProblem} from '../../src/providers/local-system.js'
import {LocalProvider} from '../../src/providers/local.js'
import type {NodeRecord} from '../../src/providers/provider.js'
import {renderUserData} from '../../src/providers/userdata.js'
import {HostKeyStore} from '../../src/ssh/hostkeys.js'
import {processes} from '../helpers/sshd.js'

const execFile = promisify(execFileCb)
const problem = (await localProviderProblem()) ?? (await bootModeProblem())
const mustRun = process.env.CI === 'true' || problem === undefined

const root = resolve(__dirname, '../..')
const work = mkdtempSync(join(tmpdir(), 'nodeset-local-boot-'))
const key = join(work, 'id_ed25519')
const deployment = 'lb-flow'
const APP = 'app1.lb-flow.test'
const DB = 'db1.lb-flow.test'
const DEMO = 'lb-demo'
const demoConf = join(work, 'demo', 'local.conf')
let provider: LocalProvider
let server: RunningConfigServer | undefined
let admin: ConfigServerClient
let tokens: Record<string, string>
let demoUp: Promise<Run> | undefined
const nodes = new Map<string, NodeRecord>()

type Run = CliResult

/** The CLI, run from the demo's folder as a user would. */
function nodeset(...args: string[]): Promise<Run> {
  return runCli(args, {cwd: join(work, 'demo'), timeoutMs: 300_000})
}

async function until(what: string, check: () => boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`)
    await sleep(100)
  }
}

const readIfThere = (path: string): string => (existsSync(path) ? readFileSync(path, 'utf8') : '')
/** A file of the node as its writable layer holds it (what the node wrote). */
const inLayer = (name: string, path: string): string => join(provider.nodeDir(deployment, name), 'layer', path)
const agentLog = (name: string): string => readIfThere(inLayer(name, 'var/log/nodeset-agent.log'))
const count = (text: string, pattern: RegExp): number => (text.match(pattern) ?? []).length

/** A command inside the node (every namespace of its PID 1); its stdout. */
async function inside(name: string, ...argv: string[]): Promise<string> {
  const [cmd, ...args] = await provider.enterCommand(nodes.get(name)!)
  return (await execFile(cmd, [...args, ...argv], {timeout: 120_000})).stdout
}

/** ssh as the operator, the host key checked against exactly these known_hosts lines. */
async function ssh(address: string, knownHosts: string, command: string): Promise<string> {
  const file = join(work, `known_hosts-${address}`)
  writeFileSync(file, knownHosts)
  const options = ['-F', '/dev/null', '-i', key, '-o', `UserKnownHostsFile=${file}`, '-o', 'BatchMode=yes']
  options.push('-o', 'GlobalKnownHostsFile=/dev/null', '-o', 'StrictHostKeyChecking=yes')
  return (await execFile('ssh', [...options, `root@${address}`, command], {timeout: 30_000})).stdout
}

const get = (url: string) => httpGet(url)

const text = (argv: string[]): string => execFileSync(argv[0], argv.slice(1), {encoding: 'utf8'})

describe.runIf(mustRun)('local nodes that boot Debian with systemd and cloud-init', () => {
  beforeAll(async () => {
    if (problem) throw new Error(problem)
    await ensureImage((line) => console.log(line)) // at once when cached
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key])
    // The demo, as its README line says, in systemd mode: it runs beside the provider tests below.
    const demo = readFileSync(join(root, 'examples/local.conf'), 'utf8')
      .replace(/^name = .*$/m, `name = ${DEMO}`)
      .replace(/^subnet = .*$/m, 'subnet = 10.92.1.128/25\nboot = systemd')
    execFileSync('mkdir', ['-p', join(work, 'demo')])
    writeFileSync(demoConf, demo)
    demoUp = nodeset('up', demoConf, join(root, 'examples/hello-app'))

    provider = new LocalProvider({
      deployment,
      boot: 'systemd',
      hostKeys: HostKeyStore.inStateDir(work),
      subnet: '10.92.1.0/25',
      stateRoot: join(work, 'state'),
      authorizedKeys: [readFileSync(`${key}.pub`, 'utf8')],
    })
    const {operatorAddress} = await provider.prepare()
    server = await startConfigServer({stateDir: join(work, 'server'), listen: {host: operatorAddress, port: 0}})
    admin = new ConfigServerClient({url: server.url, deployment, token: server.adminToken})
    ;({tokens} = await admin.register({
      instances: [
        {
          id: APP,
          role: 'appserver',
          index: 1,
          services: [{name: 'app', params: {db_host: {template: '{{ip "service:mysql"}}'}}}],
        },
        {id: DB, role: 'service:mysql', index: 1, services: [{name: 'mysql'}]},
      ],
    }))
  }, 1_200_000)

  afterAll(async () => {
    await demoUp?.catch(() => undefined)
    if (existsSync(demoConf)) await nodeset('destroy-node', demoConf, '--yes')
    if (provider) await provider.destroy(await provider.list()).catch(() => undefined)
    admin?.close()
    await server?.close()
    rmSync(work, {recursive: true, force: true})
  }, 300_000)

  const userData = (name: string): string =>
    renderUserData({deployment, node: name, token: tokens[name], serverUrl: server!.url})
  const create = async (name: string, role: string): Promise<NodeRecord> => {
    const [node] = await provider.create([{deployment, name, role, index: 1, userData: userData(name)}])
    nodes.set(name, node)
    return node
  }

  it('the app boots: cloud-init runs its user data and is done while the agent waits as an enabled systemd unit', async () => {
    const app = await create(APP, 'appserver')
    expect(app.state).toBe('running')
    // The seed holds the user data byte for byte, as EC2 would get it; cloud-init took it from there.
    const seed = join(provider.nodeDir(deployment, APP), 'seed')
    expect(readFileSync(join(seed, 'user-data'), 'utf8')).toBe(userData(APP))
    expect(readFileSync(join(seed, 'meta-data'), 'utf8')).toMatch(/^instance-id: "i-[0-9a-f]{17}"\n/)
    expect(await inside(APP, 'cloud-init', 'status', '--wait')).toMatch(/^status: done$/m)
    expect(await inside(APP, 'cat', '/var/lib/cloud/instance/user-data.txt')).toBe(userData(APP))
    expect((await inside(APP, 'cat', '/proc/1/comm')).trim()).toBe('systemd')
    await until('the app phoned home', () => existsSync(inLayer(APP, 'etc/nodeset/phoned-home')))
    expect((await inside(APP, 'systemctl', 'is-enabled', 'nodeset-agent.service')).trim()).toBe('enabled')
    expect((await inside(APP, 'systemctl', 'is-active', 'nodeset-agent.service')).trim()).toBe('active')
    expect(readFileSync(inLayer(APP, 'etc/nodeset/agent.state'), 'utf8')).toBe('waiting')
    expect(agentLog(APP)).toMatch(/started the service \/etc\/systemd\/system\/nodeset-agent\.service/)
    expect(await inside(APP, 'hostname')).toBe(`${APP}\n`)
  })

  it('the database phones home; the app gets its address; setup reaches the image sshd by the key it reported', async () => {
    const db = await create(DB, 'service:mysql')
    await until('the app is configured', () => readIfThere(inLayer(APP, 'etc/nodeset/agent.state')) === 'complete')
    const state = await admin.state()
    const facts = (id: string) => state.instances.find((i) => i.id === id)!.facts
    expect(facts(DB)).toMatchObject({ip: db.address, private_ip: db.address, hostname: DB})
    const config = JSON.parse(readFileSync(inLayer(APP, 'etc/nodeset/config.json'), 'utf8')) as {
      services: Record<string, {params: Record<string, string>}>
    }
    expect(config.services.app.params.db_host).toBe(db.address)
    // The host keys it phoned home are those cloud-init made for it, and its sshd proves it holds them.
    const reported = [...(facts(DB).ssh_host_keys as string[])].sort()
    expect(reported).toEqual([...(await provider.readHostKeys(db))].sort())
    expect(reported.length).toBeGreaterThanOrEqual(2)
    const knownHosts = reported.map((k) => `${db.address} ${k}\n`).join('')
    const seen = await ssh(db.address!, knownHosts, 'cat /proc/1/comm; systemctl is-active ssh.service; hostname')
    expect(seen).toBe(`systemd\nactive\n${DB}\n`)
    const wrong = execFileSync('ssh-keygen', ['-y', '-f', key], {encoding: 'utf8'}).trim()
    await expect(ssh(db.address!, `${db.address} ${wrong}\n`, 'true')).rejects.toThrow(/Host key verification failed/)
  })

  it('a reboot runs the agent from its unit with the stored node token; nothing else changes', async () => {
    const app = nodes.get(APP)!
    const token = readFileSync(inLayer(APP, 'var/lib/nodeset/token'), 'utf8')
    const keys = await provider.readHostKeys(app)
    const machineId = readFileSync(inLayer(APP, 'etc/machine-id'), 'utf8')
    const hosts = readFileSync(inLayer(APP, 'etc/hosts'), 'utf8')
    const bootId = await inside(APP, 'cat', '/proc/sys/kernel/random/boot_id')
    await provider.stop([app])
    expect((await provider.list()).find((n) => n.name === APP)!.state).toBe('stopped')
    const [again] = await provider.start([app])
    expect(again).toMatchObject({state: 'running', address: app.address})
    await until('the agent completed again', () => count(agentLog(APP), /: complete$/gm) === 2)
    expect(await inside(APP, 'cat', '/proc/sys/kernel/random/boot_id')).not.toBe(bootId)
    const log = agentLog(APP)
    expect(log).toMatch(/: using the node token in \/var\/lib\/nodeset\/token$/m)
    // The user data ran once (the first boot); the unit ran the agent at each boot.
    expect(count(log, /: starting for /g)).toBe(1)
    expect(count(log, /: starting: node /g)).toBe(2)
    const unit = await inside(APP, 'systemctl', 'show', '-p', 'Result', '-p', 'ExecMainStatus', 'nodeset-agent')
    expect(unit.split('\n').sort().filter(Boolean)).toEqual(['ExecMainStatus=0', 'Result=success'])
    expect(readFileSync(inLayer(APP, 'var/lib/nodeset/token'), 'utf8')).toBe(token)
    expect(log).not.toContain(token.trim())
    expect(await provider.readHostKeys(app)).toEqual(keys)
    expect(readFileSync(inLayer(APP, 'etc/machine-id'), 'utf8')).toBe(machineId)
    expect(readFileSync(inLayer(APP, 'etc/hosts'), 'utf8')).toBe(hosts)
  })

  it('nodeset up of the demo with boot = systemd serves the demo app through the balancer', async () => {
    const up = await demoUp!
    expect(up.stderr).toBe('')
    expect(up.code).toBe(0)
    const url = /is up: (\S+)/.exec(up.stdout)![1]
    expect(url).toMatch(/^http:\/\/10\.92\.1\.\d+:80\/$/)
    // Its nodes are machines booted from the image, not fast-mode namespaces.
    const machine = `--machine=${namespaceName(DEMO, 'balancer.nodeset.test')}`
    expect(processes().filter((p) => p.commandLine.includes(machine))).toHaveLength(1)
    const served = new Set<string>()
    for (let i = 0; i < 6; i++) {
      const {status, body} = await get(url)
      expect(status).toBe(200)
      const answer = JSON.parse(body) as {node: string; database: {reachable: boolean} | null}
      expect(answer.database?.reachable).toBe(true)
      served.add(answer.node)
    }
    expect([...served].sort()).toEqual(['app1.nodeset.test', 'app2.nodeset.test'])
  }, 300_000)

  it('destroy leaves nothing: processes, mounts, cgroups, namespaces, links, files', async () => {
    const listed = await provider.list()
    const namespaces = listed.map((n) => n.id)
    const nodeDirs = listed.map((n) => provider.nodeDir(deployment, n.name))
    await provider.destroy(listed)
    const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
    const netns = text(['ip', 'netns', 'list'])
    const links = text(['ip', '-o', 'link', 'show'])
    for (const [i, ns] of namespaces.entries()) {
      expect(processes().filter((p) => p.commandLine.includes(ns))).toEqual([])
      expect(netns).not.toContain(ns)
      expect(links).not.toContain(hostVethName(deployment, listed[i].name))
      expect(existsSync(join('/etc/netns', ns))).toBe(false)
      for (const h of CGROUP_HIERARCHIES) expect(existsSync(join(h, CGROUP_PARENT, ns))).toBe(false)
    }
    expect(mounts).not.toContain(work)
    for (const dir of nodeDirs) expect(existsSync(dir)).toBe(false)
    expect(links).not.toContain(provider.bridge)
    expect(readdirSync(join(work, 'state')).filter((f) => f.startsWith(deployment))).toEqual([])
    expect([...namespaces].sort()).toEqual([APP, DB].map((n) => namespaceName(deployment, n)).sort())
  })

  it('names the Debian packages of the tools it misses', async () => {
    expect(await bootModeProblem(async () => false)).toBe(
      "the local provider's systemd mode needs debootstrap (Debian package debootstrap) and systemd-nspawn " +
        '(Debian package systemd-container): install with apt-get install debootstrap systemd-container',
    )
    expect(await bootModeProblem(async (path) => path.endsWith('debootstrap'))).toMatch(
      /needs systemd-nspawn \(Debian package systemd-container\): install with apt-get install systemd-container$/,
    )
  })

  it('reads the mirror and suite from one-line and deb822 apt sources', () => {
    expect(aptSource([{path: 'a.list', text: '# x\ndeb [arch=amd64] http://m.example/debian trixie main\n'}])).toEqual({
      mirror: 'http://m.example/debian',
      suite: 'trixie',
    })
    const deb822 =
      'Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n\n' +
      'Types: deb\nURIs: http://deb.debian.org/debian/\nSuites: bookworm bookworm-updates\nComponents: main\n'
    expect(aptSource([{path: 'debian.sources', text: deb822}])).toEqual({
      mirror: 'http://deb.debian.org/debian',
      suite: 'bookworm',
    })
    expect(() => aptSource([{path: 'x.list', text: ''}])).toThrow(/no Debian mirror/)
  })
})

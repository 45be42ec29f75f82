/**
 * The local provider makes real hosts on this machine: network namespaces on a bridge, each with its
 * own hostname, private directories and sshd. Needs root, iproute2, util-linux and openssh-server;
 * with CI=true a missing one fails the run instead of skipping it.
 */
import {execFile as execFileCb, execFileSync} from 'node:child_process'
import {existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {promisify} from 'node:util'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {hostVethName, namespaceName} from '../../src/providers/local-network.js'
import {localProviderProblem, processAlive} from '../../src/providers/local-system.js'
import {LocalProvider} from '../../src/providers/local.js'
import type {NodeRecord, NodeRequest} from '../../src/providers/provider.js'
import {HostKeyStore} from '../../src/ssh/hostkeys.js'
import {processes} from '../helpers/sshd.js'

const execFile = promisify(execFileCb)
const problem = await localProviderProblem()
const mustRun = process.env.CI === 'true' || problem === undefined

const deployment = 'lt-pair'
const subnet = '10.77.11.0/24'
// A service the user data starts in the background: destroy must end it too.
const SERVICE_MARK = '3600.4242'
const userData = `#!/bin/sh\nsleep ${SERVICE_MARK} &\necho "ran on $(cat /proc/sys/kernel/hostname)" > /var/lib/nodeset/ran\n`
const requests: NodeRequest[] = [
  {deployment, name: 'app1.lt-pair.test', role: 'appserver', index: 1, userData},
  {deployment, name: 'db1.lt-pair.test', role: 'service:mysql', index: 1, userData},
]
const HOST_DIRS = ['/etc/netns', '/etc/nodeset', '/srv/nodeset', '/var/lib/nodeset']

const work = mkdtempSync(join(tmpdir(), 'nodeset-local-'))
const stateRoot = join(work, 'state')
const key = join(work, 'id_ed25519')
let provider: LocalProvider
let existedBefore: Record<string, boolean>
const hostKeys = new HostKeyStore(join(work, 'known_hosts'))
/** A provider of this machine's nodes for one deployment, logged in to with the test's key. */
const localProvider = (deployment: string, subnet: string): LocalProvider =>
  new LocalProvider({deployment, subnet, stateRoot, authorizedKeys: [readFileSync(`${key}.pub`, 'utf8')], hostKeys})

/** ssh as the operator, checking the host key against exactly these known_hosts lines. */
async function ssh(address: string, knownHosts: string, command: string): Promise<string> {
  const file = join(work, `known_hosts-${address}-${Math.random().toString(36).slice(2)}`)
  writeFileSync(file, knownHosts)
  const args = [
    '-F',
    '/dev/null',
    '-i',
    key,
    '-o',
    `UserKnownHostsFile=${file}`,
    '-o',
    'GlobalKnownHostsFile=/dev/null',
  ]
  args.push(
    '-o',
    'StrictHostKeyChecking=yes',
    '-o',
    'BatchMode=yes',
    '-o',
    'ConnectTimeout=5',
    `root@${address}`,
    command,
  )
  return (await execFile('ssh', args, {timeout: 20_000})).stdout
}

/** The node's host key as the node itself has it, read inside its mount namespace. */
async function hostKeyInside(node: NodeRecord): Promise<string> {
  const [cmd, ...args] = await provider.enterCommand(node)
  const {stdout} = await execFile(cmd, [...args, 'cat', '/etc/ssh/ssh_host_ed25519_key.pub'])
  return stdout.trim().split(' ').slice(0, 2).join(' ')
}

const netnsList = (): string => execFileSync('ip', ['netns', 'list'], {encoding: 'utf8'})
const links = (): string => execFileSync('ip', ['-o', 'link', 'show'], {encoding: 'utf8'})

describe.runIf(mustRun)('local provider', () => {
  const nodes = new Map<string, NodeRecord>()
  const knownHosts = new Map<string, string>()

  beforeAll(async () => {
    if (problem) throw new Error(problem)
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'operator@test', '-f', key])
    existedBefore = Object.fromEntries(HOST_DIRS.map((d) => [d, existsSync(d)]))
    provider = localProvider(deployment, subnet)
  })

  afterAll(async () => {
    if (provider) await provider.destroy(await provider.list()).catch(() => undefined)
    rmSync(work, {recursive: true, force: true})
  })

  it('creates two nodes quickly, each a host of its own that the operator logs in to with a verified host key', async () => {
    const started = Date.now()
    const created = await provider.create(requests)
    const elapsed = Date.now() - started
    expect(elapsed).toBeLessThan(5000)
    expect(created.map((n) => [n.name, n.state, n.sshUser, n.sshPort])).toEqual(
      requests.map((r) => [r.name, 'running', 'root', 22]),
    )
    for (const n of created) nodes.set(n.name, n)
    const [app, db] = created
    expect(app.address).not.toBe(db.address)
    expect(app.id).not.toBe(db.id)
    for (const n of created) {
      expect(n.address).toMatch(/^10\.77\.11\.(\d+)$/)
      expect(netnsList()).toContain(n.id)
      const key = await hostKeyInside(n)
      expect(await provider.readHostKeys(n)).toContain(key)
      knownHosts.set(n.name, `${n.address} ${key}\n`)
      // Its own hostname, in the kernel (UTS namespace) and in its /etc/hostname.
      expect(await ssh(n.address!, knownHosts.get(n.name)!, 'hostname; cat /etc/hostname')).toBe(
        `${n.name}\n${n.name}\n`,
      )
      // Its user data ran inside it, as a boot runs it.
      expect(await ssh(n.address!, knownHosts.get(n.name)!, 'cat /var/lib/nodeset/ran')).toBe(`ran on ${n.name}\n`)
    }
    expect(existsSync('/var/lib/nodeset/ran')).toBe(false)
  })

  it('gives each node private /etc/nodeset and host keys of its own, and a network where nodes reach each other', async () => {
    const app = nodes.get('app1.lt-pair.test')!
    const db = nodes.get('db1.lt-pair.test')!
    await ssh(app.address!, knownHosts.get(app.name)!, 'echo app-only > /etc/nodeset/marker')
    expect(
      await ssh(
        db.address!,
        knownHosts.get(db.name)!,
        'ls -A /etc/nodeset; test -e /etc/nodeset/marker || echo absent',
      ),
    ).toMatch(/absent\n$/)
    expect(existsSync('/etc/nodeset/marker')).toBe(false)
    expect(readFileSync(join(provider.etcDir(deployment, app.name), 'nodeset/marker'), 'utf8')).toBe('app-only\n')

    // The db's key does not vouch for the app's address: ssh refuses.
    const wrong = `${app.address} ${knownHosts.get(db.name)!.split(' ').slice(1).join(' ')}`
    await expect(ssh(app.address!, wrong, 'true')).rejects.toThrow(
      /Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED/,
    )

    const banner = await ssh(
      app.address!,
      knownHosts.get(app.name)!,
      `bash -c 'exec 3<>/dev/tcp/${db.address}/22; head -c 8 <&3'`,
    )
    expect(banner).toBe('SSH-2.0-')
    // No DNS server reaches the nodes: an unknown name fails at once rather than after resolver timeouts.
    const asked = Date.now()
    expect(
      await ssh(
        app.address!,
        knownHosts.get(app.name)!,
        `getent hosts ${db.name} || echo unknown; getent hosts nothing.invalid || echo unknown`,
      ),
    ).toBe('unknown\nunknown\n')
    expect(Date.now() - asked).toBeLessThan(5000)
    // The host reaches them through the bridge, from the subnet's first address.
    expect(await ssh(app.address!, knownHosts.get(app.name)!, 'echo $SSH_CLIENT')).toMatch(/^10\.77\.11\.1 /)
  })

  it("gives each node a /root of its own: the operator's home (its keys, its shell's start-up files) is not there", async () => {
    const app = nodes.get('app1.lt-pair.test')!
    const db = nodes.get('db1.lt-pair.test')!
    const mark = `nodeset-test-${process.pid}`
    const own = `${mark}-own`
    writeFileSync(`/root/${mark}`, "the operator's\n")
    try {
      const seen = await ssh(
        app.address!,
        knownHosts.get(app.name)!,
        `test -e /root/${mark} && echo seen || echo absent; stat -c %a /root; echo "$HOME"; echo app > /root/${own}`,
      )
      expect(seen).toBe('absent\n700\n/root\n')
      // What a node writes in its home stays in its own directory: not the host's /root, not another node's.
      expect(existsSync(`/root/${own}`)).toBe(false)
      expect(readFileSync(join(stateRoot, deployment, app.name, `fs/root/${own}`), 'utf8')).toBe('app\n')
      const other = await ssh(db.address!, knownHosts.get(db.name)!, `test -e /root/${own} && echo seen || echo absent`)
      expect(other).toBe('absent\n')
    } finally {
      // Both, in case the node's home is the host's after all.
      for (const file of [mark, own]) rmSync(`/root/${file}`, {force: true})
    }
  })

  it('lists its nodes, and a retried create makes nothing twice', async () => {
    const listed = await provider.list()
    expect(listed.map((n) => [n.name, n.role, n.index, n.state, n.address])).toEqual(
      [...nodes.values()]
        .map((n) => [n.name, n.role, n.index, 'running', n.address])
        .sort((a, b) => String(a[1]).localeCompare(String(b[1]))),
    )
    // What runs in the nodes for good: each one's sshd and the service its user data started. (The
    // namespaces' whole pid lists are not compared: sessions of the tests before may still be ending.)
    const running = async () => ({
      sshd: await Promise.all([...nodes.values()].map((n) => provider.enterCommand(n))),
      services: processes()
        .filter((p) => p.commandLine === `sleep ${SERVICE_MARK}`)
        .map((p) => p.pid)
        .sort(),
    })
    const before = await running()
    expect(before.services).toHaveLength(2)
    const again = await provider.create(requests)
    expect(again.map((n) => [n.name, n.address, n.id])).toEqual(
      [...nodes.values()].map((n) => [n.name, n.address, n.id]),
    )
    expect(await running()).toEqual(before)
    expect(
      netnsList()
        .split('\n')
        .filter((l) => l.includes('lt-pair')),
    ).toHaveLength(2)
    await expect(provider.create([{...requests[0], role: 'balancer'}])).rejects.toThrow(
      /already exists as appserver #1: destroy it before/,
    )
  })

  it('reaches at once a node that takes the address of a node just destroyed', async () => {
    const app = nodes.get('app1.lt-pair.test')!
    const reach = async (address: string): Promise<string> =>
      ssh(app.address!, knownHosts.get(app.name)!, `bash -c 'exec 3<>/dev/tcp/${address}/22; head -c 8 <&3'`)
    const [first] = await provider.create([
      {deployment, name: 'tmp1.lt-pair.test', role: 'worker', index: 1, userData: ''},
    ])
    expect(await reach(first.address!)).toBe('SSH-2.0-') // the host and the app now cache its MAC
    await provider.destroy([first])
    const started = Date.now()
    const [second] = await provider.create([
      {deployment, name: 'tmp2.lt-pair.test', role: 'worker', index: 2, userData: ''},
    ])
    expect(second.address).toBe(first.address)
    expect(await reach(second.address!)).toBe('SSH-2.0-')
    expect(Date.now() - started).toBeLessThan(5000)
    await provider.destroy([second])
  })

  it('refuses a subnet that another interface of the host already uses', async () => {
    const other = localProvider('lt-clash', '10.77.11.128/25')
    await expect(
      other.create([{deployment: 'lt-clash', name: 'x1', role: 'appserver', index: 1, userData: ''}]),
    ).rejects.toThrow(
      /subnet 10\.77\.11\.128\/25 overlaps 10\.77\.11\.1\/24 on nsb-lt-pai-[0-9a-f]{4}: give this deployment another subnet/,
    )
    expect(existsSync(join(stateRoot, 'lt-clash'))).toBe(false)
  })

  it('removes a prepared bridge that got no node', async () => {
    const other = localProvider('lt-empty', '10.77.13.0/24')
    const {bridge, hostAddress} = await other.prepareNetwork()
    expect(hostAddress).toBe('10.77.13.1')
    expect(execFileSync('ip', ['-o', '-4', 'addr', 'show', 'dev', bridge], {encoding: 'utf8'})).toContain(
      '10.77.13.1/24',
    )
    await other.release()
    expect(links()).not.toContain(bridge)
    expect(existsSync(join(stateRoot, 'lt-empty'))).toBe(false)
  })

  it('destroys everything it made: processes, namespaces, links, bridge, overlays and files', async () => {
    const listed = await provider.list()
    const pids = listed.flatMap((n) =>
      execFileSync('ip', ['netns', 'pids', n.id], {encoding: 'utf8'}).split(/\s+/).filter(Boolean).map(Number),
    )
    expect(pids.length).toBeGreaterThanOrEqual(4) // per node: sshd and the service the user data started
    const services = (): number[] =>
      processes()
        .filter((p) => p.commandLine === `sleep ${SERVICE_MARK}`)
        .map((p) => p.pid)
    expect(services()).toHaveLength(2)
    const bridge = provider.bridge
    expect(links()).toContain(bridge)

    await provider.destroy(listed)

    expect(pids.filter(processAlive)).toEqual([])
    expect(services()).toEqual([])
    for (const n of requests) {
      expect(netnsList()).not.toContain(namespaceName(deployment, n.name))
      expect(links()).not.toContain(hostVethName(deployment, n.name))
      expect(existsSync(join('/etc/netns', namespaceName(deployment, n.name)))).toBe(false)
    }
    expect(links()).not.toContain(bridge)
    expect(existsSync(join(stateRoot, deployment))).toBe(false)
    expect(await provider.list()).toEqual([])
    // The host directories it made go with the last local node on this machine.
    const otherNodes = existsSync('/etc/netns') && execFileSync('ls', ['/etc/netns'], {encoding: 'utf8'}).trim() !== ''
    if (!otherNodes) {
      for (const dir of HOST_DIRS) if (!existedBefore[dir]) expect(existsSync(dir), dir).toBe(false)
      expect(existsSync(stateRoot)).toBe(false)
      expect(existsSync('/run/nodeset-local')).toBe(false)
    }
  })
})

describe.runIf(mustRun)('this machine', () => {
  it('can run local nodes (root, iproute2, util-linux, openssh-server)', () => {
    expect(problem).toBeUndefined()
  })
})

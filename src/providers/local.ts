/**
 * The `local` provider: real hosts on this machine. Each node is a network namespace on a bridge
 * (one per deployment) with its own hostname, private directories, its own sshd and its user data
 * run as a boot would run it. See docs/local-provider.md.
 */
import {spawn, type ChildProcess} from 'node:child_process'
import {createConnection} from 'node:net'
import {constants as fsConstants} from 'node:fs'
import {
  chmod,
  chown,
  copyFile,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rm,
  rmdir,
  stat,
  writeFile,
} from 'node:fs/promises'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import pLimit from 'p-limit'
import {ID_PATTERN} from '../core/ids.js'
import type {NodeRecord, NodeRequest, Provider} from './provider.js'
import {
  allocateAddress,
  bridgeName,
  hostAddress,
  hostVethName,
  macForAddress,
  namespaceName,
  networkOf,
  parseSubnet,
  subnetsOverlap,
  type Subnet,
} from './local-network.js'
import {
  SYSTEM_ENV,
  assertLocalProviderUsable,
  killNamespaceProcesses,
  processAlive,
  run,
  tryRun,
  withLock,
} from './local-system.js'

export interface LocalProviderOptions {
  /** IPv4 network of the deployment's bridge; the host takes its first address. Default 10.77.0.0/24. */
  subnet?: string
  /** Bridge name (at most 15 characters); default derived from the deployment. */
  bridge?: string
  /** Where nodes are recorded: `<stateRoot>/<deployment>/<node>/node.json`. Default /var/lib/nodeset/local. */
  stateRoot?: string
  /** The operator's SSH public keys, allowed to log in as root. */
  authorizedKeys: string[]
}

/** What a node is, as recorded in its node.json (its "tags"). */
export interface LocalNodeState {
  deployment: string
  name: string
  role: string
  index: number
  namespace: string
  address: string
  subnet: string
  hostAddress: string
  bridge: string
  hostVeth: string
  createdAt: string
  /** `creating` until its sshd first answered. */
  phase: 'creating' | 'created'
}

export const DEFAULT_SUBNET = '10.77.0.0/24'
export const DEFAULT_STATE_ROOT = '/var/lib/nodeset/local'
const NETNS_ETC = '/etc/netns'
/** Directories that must exist on the host so a node can have its own copy mounted over them. */
const HOST_MOUNTPOINTS = ['/etc/nodeset', '/srv/nodeset', '/var/lib/nodeset']
/** Lock and record of the host-side directories the provider made (shared by every deployment). */
const RUNTIME_DIR = '/run/nodeset-local'
const SSH_READY_TIMEOUT_MS = 10_000
const AUTHORIZED_KEY_PATTERN =
  /^(?:ssh-[a-z0-9-]+|ecdsa-sha2-[a-z0-9-]+|sk-[a-z0-9@.-]+) [A-Za-z0-9+/]+={0,3}(?: [^\r\n]*)?$/

/**
 * Runs inside the node's new UTS and mount namespaces (entered with `ip netns exec`, which has
 * already mounted the /etc/netns/<ns>/ overlays): hostname, private directories, then sshd.
 * $1 is the node's directory, $2 its name.
 */
const LAUNCH_SCRIPT = `set -e
[ "$(cat /etc/hostname)" = "$2" ] && [ -e /etc/nodeset/no-boot-hook ] || { echo "the /etc/netns overlay of $2 is not mounted" >&2; exit 1; }
printf '%s\\n' "$2" >/proc/sys/kernel/hostname
mount --bind "$1/fs/srv" /srv/nodeset
mount --bind "$1/fs/var-log" /var/log
mount --bind "$1/fs/var-lib" /var/lib/nodeset
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mkdir -m 0755 /run/sshd
exec /usr/sbin/sshd -D -f /etc/ssh/sshd_config -E /var/log/sshd.log
`

export class LocalProvider implements Provider {
  readonly name = 'local'
  readonly subnet: Subnet
  readonly stateRoot: string
  private readonly bridgeOverride?: string
  private readonly authorizedKeys: string[]

  constructor(opts: LocalProviderOptions) {
    this.subnet = parseSubnet(opts.subnet ?? DEFAULT_SUBNET)
    this.stateRoot = opts.stateRoot ?? DEFAULT_STATE_ROOT
    if (opts.bridge !== undefined && !/^[A-Za-z0-9_.-]{1,15}$/.test(opts.bridge)) {
      throw new Error(`bridge name ${JSON.stringify(opts.bridge)} must be 1-15 letters, digits, _ . or -`)
    }
    this.bridgeOverride = opts.bridge
    const keys = opts.authorizedKeys.map((k) => k.trim()).filter(Boolean)
    const bad = keys.filter((k) => !AUTHORIZED_KEY_PATTERN.test(k))
    if (bad.length > 0)
      throw new Error(
        `not an SSH public key line (type base64 [comment]): ${bad.map((k) => JSON.stringify(k.slice(0, 40))).join(', ')}`,
      )
    if (keys.length === 0)
      throw new Error(
        'the local provider needs at least one SSH public key (authorizedKeys) to let the operator log in to its nodes',
      )
    this.authorizedKeys = keys
  }

  /** The host's address on every bridge of this provider: where nodes reach the operator and the config server. */
  get hostAddress(): string {
    return hostAddress(this.subnet)
  }

  bridgeFor(deployment: string): string {
    return this.bridgeOverride ?? bridgeName(deployment)
  }

  /**
   * Make the deployment's bridge with the host address on it, so a config server can listen there
   * before any node boots. Refuses a subnet that another interface of the host already uses.
   */
  async prepareNetwork(deployment: string): Promise<{bridge: string; hostAddress: string; subnet: string}> {
    checkId('deployment', deployment)
    await assertLocalProviderUsable()
    await ensureHostDirs(this.stateRoot, async () => undefined)
    const bridge = this.bridgeFor(deployment)
    await withLock(this.deploymentLock(deployment), () => this.ensureBridge(bridge))
    return {bridge, hostAddress: this.hostAddress, subnet: this.subnet.cidr}
  }

  /** Provider hook: the bridge exists and nodes reach the operator at the host address. */
  async prepare(deployment: string): Promise<{operatorAddress: string}> {
    return {operatorAddress: (await this.prepareNetwork(deployment)).hostAddress}
  }

  async create(requests: NodeRequest[]): Promise<NodeRecord[]> {
    for (const r of requests) {
      checkId('deployment', r.deployment)
      checkId('node name', r.name)
    }
    const duplicate = requests.find(
      (r, i) => requests.findIndex((o) => o.deployment === r.deployment && o.name === r.name) !== i,
    )
    if (duplicate) throw new Error(`node ${duplicate.name} is requested twice`)
    if (requests.length === 0) return []
    await assertLocalProviderUsable()

    const limit = pLimit(8)
    const failures: string[] = []
    for (const deployment of new Set(requests.map((r) => r.deployment))) {
      await this.prepareNetwork(deployment)
      const batch = requests.filter((r) => r.deployment === deployment)
      const plans = await withLock(this.deploymentLock(deployment), () => this.reserve(batch))
      await Promise.all(
        plans.map((plan) =>
          limit(async () => {
            try {
              if (plan.fresh) await this.bootNode(plan.state, plan.request.userData)
              else if (!(await this.isRunning(plan.state))) await this.bootNode(plan.state, undefined)
            } catch (error) {
              failures.push(`${plan.state.name}: ${(error as Error).message}`)
              if (plan.fresh) await this.removeNode(plan.state).catch(() => undefined)
            }
          }),
        ),
      )
      if (failures.length > 0) await this.release(deployment)
    }
    if (failures.length > 0)
      throw new Error(`could not create ${failures.length} local node(s):\n  ${failures.join('\n  ')}`)
    const wanted = new Set(requests.map((r) => `${r.deployment}\0${r.name}`))
    const all = await Promise.all([...new Set(requests.map((r) => r.deployment))].map((d) => this.list(d)))
    return all.flat().filter((n) => wanted.has(`${n.deployment}\0${n.name}`))
  }

  async list(deployment: string): Promise<NodeRecord[]> {
    checkId('deployment', deployment)
    const states = await this.readStates(deployment)
    const records = await Promise.all(states.map(async (s) => this.toRecord(s, await this.isRunning(s))))
    return records.sort((a, b) => a.role.localeCompare(b.role) || a.index - b.index || a.name.localeCompare(b.name))
  }

  /** Boot stopped nodes again (after the host restarted): network, sshd, then the stored agent. */
  async start(nodes: NodeRecord[]): Promise<NodeRecord[]> {
    await assertLocalProviderUsable()
    for (const deployment of new Set(nodes.map((n) => n.deployment))) await this.prepareNetwork(deployment)
    const states = await Promise.all(nodes.map((n) => this.readState(n.deployment, n.name)))
    await Promise.all(states.map(async (s) => ((await this.isRunning(s)) ? undefined : this.bootNode(s, undefined))))
    return Promise.all(states.map(async (s) => this.toRecord(s, await this.isRunning(s))))
  }

  async destroy(nodes: NodeRecord[]): Promise<void> {
    if (nodes.length === 0) return
    await assertLocalProviderUsable()
    const limit = pLimit(8)
    await Promise.all(
      nodes.map((node) =>
        limit(async () => {
          const state = await this.readState(node.deployment, node.name).catch(() => undefined)
          await this.removeNode(state ?? this.derivedState(node))
        }),
      ),
    )
    for (const deployment of new Set(nodes.map((n) => n.deployment))) await this.release(deployment)
  }

  /** The node's SSH host public keys (`type base64`), read from its private /etc/ssh. */
  async readHostKeys(node: Pick<NodeRecord, 'deployment' | 'name'>): Promise<string[]> {
    const dir = join(NETNS_ETC, namespaceName(node.deployment, node.name), 'ssh')
    const files = (await readdir(dir)).filter((f) => /^ssh_host_.*_key\.pub$/.test(f)).sort()
    const keys = await Promise.all(
      files.map(async (f) => (await readFile(join(dir, f), 'utf8')).trim().split(/\s+/).slice(0, 2).join(' ')),
    )
    return keys.filter(Boolean)
  }

  /** known_hosts lines for the node (its address and its host keys), for `ssh -o StrictHostKeyChecking=yes`. */
  async knownHosts(node: NodeRecord): Promise<string> {
    const keys = await this.readHostKeys(node)
    return keys.map((k) => `${node.address} ${k}\n`).join('')
  }

  /** argv prefix that runs a command inside the node (all its namespaces), e.g. `[...prefix, 'cat', '/etc/hostname']`. */
  async enterCommand(node: Pick<NodeRecord, 'deployment' | 'name'>): Promise<string[]> {
    const pid = await this.sshdPid(node.deployment, node.name)
    if (pid === undefined) throw new Error(`local node ${node.name} is not running: start it with nodeset create-node`)
    return ['nsenter', '-t', String(pid), '-n', '-m', '-u', '--']
  }

  /** The node's directory on the host: node.json, pid files, and `fs/` (its /srv/nodeset, /var/lib/nodeset, /var/log). */
  nodeDir(deployment: string, name: string): string {
    return join(this.stateRoot, deployment, name)
  }

  /** The node's /etc overlay on the host: `hosts`, `hostname`, `ssh/`, `nodeset/`. */
  etcDir(deployment: string, name: string): string {
    return join(NETNS_ETC, namespaceName(deployment, name))
  }

  // ---- reservation and state ----

  private deploymentLock(deployment: string): string {
    return join(this.stateRoot, `${deployment}.lock`)
  }

  /** Record each new node with a free address (under the deployment lock); existing ones are kept. */
  private async reserve(
    batch: NodeRequest[],
  ): Promise<Array<{request: NodeRequest; state: LocalNodeState; fresh: boolean}>> {
    const deployment = batch[0].deployment
    const existing = await this.readStates(deployment)
    const taken = existing.map((s) => s.address)
    const plans = []
    for (const request of batch) {
      const known = existing.find((s) => s.name === request.name)
      if (known) {
        if (known.role !== request.role || known.index !== request.index) {
          throw new Error(
            `local node ${request.name} already exists as ${known.role} #${known.index}: destroy it before creating it as ${request.role} #${request.index}`,
          )
        }
        // A creation that never finished (its process died) starts over with this request's user data.
        plans.push({request, state: known, fresh: known.phase === 'creating' && !(await this.isRunning(known))})
        continue
      }
      const address = allocateAddress(this.subnet, taken)
      taken.push(address)
      const state: LocalNodeState = {
        deployment,
        name: request.name,
        role: request.role,
        index: request.index,
        namespace: namespaceName(deployment, request.name),
        address,
        subnet: this.subnet.cidr,
        hostAddress: this.hostAddress,
        bridge: this.bridgeFor(deployment),
        hostVeth: hostVethName(deployment, request.name),
        createdAt: new Date().toISOString(),
        phase: 'creating',
      }
      await mkdir(this.nodeDir(deployment, request.name), {recursive: true, mode: 0o700})
      await chmod(join(this.stateRoot, deployment), 0o700)
      await this.writeState(state)
      plans.push({request, state, fresh: true})
    }
    return plans
  }

  private async writeState(state: LocalNodeState): Promise<void> {
    const file = join(this.nodeDir(state.deployment, state.name), 'node.json')
    await writeFile(`${file}.tmp`, JSON.stringify(state, null, 2) + '\n', {mode: 0o600})
    await rename(`${file}.tmp`, file)
  }

  private async readState(deployment: string, name: string): Promise<LocalNodeState> {
    const file = join(this.nodeDir(deployment, name), 'node.json')
    try {
      return JSON.parse(await readFile(file, 'utf8')) as LocalNodeState
    } catch (error) {
      throw new Error(`local node ${name} of ${deployment} is not recorded (${file}): ${(error as Error).message}`, {
        cause: error,
      })
    }
  }

  private async readStates(deployment: string): Promise<LocalNodeState[]> {
    const dir = join(this.stateRoot, deployment)
    const entries = await readdir(dir, {withFileTypes: true}).catch(() => [])
    const states = await Promise.all(
      entries.filter((e) => e.isDirectory()).map((e) => this.readState(deployment, e.name).catch(() => undefined)),
    )
    return states.filter((s): s is LocalNodeState => s !== undefined)
  }

  /** What can be known of a node that has no node.json left: enough to remove its remnants. */
  private derivedState(node: NodeRecord): LocalNodeState {
    return {
      deployment: node.deployment,
      name: node.name,
      role: node.role,
      index: node.index,
      namespace: namespaceName(node.deployment, node.name),
      address: node.address ?? '',
      subnet: this.subnet.cidr,
      hostAddress: this.hostAddress,
      bridge: this.bridgeFor(node.deployment),
      hostVeth: hostVethName(node.deployment, node.name),
      createdAt: '',
      phase: 'creating',
    }
  }

  private toRecord(s: LocalNodeState, running: boolean): NodeRecord {
    return {
      deployment: s.deployment,
      name: s.name,
      role: s.role,
      index: s.index,
      id: s.namespace,
      address: s.address,
      privateAddress: s.address,
      state: running ? 'running' : s.phase === 'creating' ? 'pending' : 'stopped',
      sshUser: 'root',
      sshPort: 22,
    }
  }

  private async sshdPid(deployment: string, name: string): Promise<number | undefined> {
    const pid = Number(await readFile(join(this.nodeDir(deployment, name), 'sshd.pid'), 'utf8').catch(() => ''))
    const state = await this.readState(deployment, name).catch(() => undefined)
    return pid > 0 && state && (await inNamespace(pid, state.namespace)) ? pid : undefined
  }

  private async isRunning(state: LocalNodeState): Promise<boolean> {
    return (await this.sshdPid(state.deployment, state.name)) !== undefined
  }

  // ---- the host side: bridge and shared mount points ----

  private async ensureBridge(bridge: string): Promise<void> {
    const hostCidr = `${this.hostAddress}/${this.subnet.prefix}`
    const links = JSON.parse(await run(['ip', '-j', '-4', 'addr', 'show'])) as Array<{
      ifname: string
      addr_info?: Array<{family: string; local: string; prefixlen: number}>
    }>
    for (const link of links) {
      for (const a of link.addr_info ?? []) {
        const net = a.family === 'inet' ? networkOf(a.local, a.prefixlen) : undefined
        if (!net || !subnetsOverlap(net, this.subnet)) continue
        if (link.ifname === bridge && `${a.local}/${a.prefixlen}` === hostCidr) continue
        throw new Error(
          link.ifname === bridge
            ? `bridge ${bridge} already has ${a.local}/${a.prefixlen}, not ${hostCidr}: destroy the deployment's nodes before changing its subnet`
            : `subnet ${this.subnet.cidr} overlaps ${a.local}/${a.prefixlen} on ${link.ifname}: give this deployment another subnet (local provider option subnet)`,
        )
      }
    }
    const mine = links.find((l) => l.ifname === bridge)
    if (!(await tryRun(['ip', 'link', 'show', 'dev', bridge]))) {
      await run(['ip', 'link', 'add', bridge, 'type', 'bridge']).catch(async (error) => {
        if (!(await tryRun(['ip', 'link', 'show', 'dev', bridge]))) throw error
      })
    }
    // A fixed MAC: otherwise a bridge takes its ports' lowest one, which changes as nodes come and go.
    await run(['ip', 'link', 'set', 'dev', bridge, 'address', macForAddress(this.hostAddress)])
    if (!mine?.addr_info?.some((a) => `${a.local}/${a.prefixlen}` === hostCidr)) {
      await run(['ip', 'addr', 'replace', hostCidr, 'dev', bridge])
    }
    await run(['ip', 'link', 'set', bridge, 'up'])
  }

  /**
   * Delete the deployment's bridge and directory if it has no node left, then the host directories if
   * no local node is left at all. destroy() calls it; call it after prepare() when no node was made.
   */
  async release(deployment: string): Promise<void> {
    checkId('deployment', deployment)
    await withLock(this.deploymentLock(deployment), async () => {
      if ((await this.readStates(deployment)).length > 0) return
      const bridge = this.bridgeFor(deployment)
      const members = await run(['ip', '-o', 'link', 'show', 'master', bridge]).catch(() => undefined)
      if (members !== undefined && members.trim() === '') await run(['ip', 'link', 'del', bridge])
      await rm(join(this.stateRoot, deployment), {recursive: true, force: true})
    })
    await releaseHostDirs()
  }

  // ---- one node ----

  /** Bring a recorded node up: files (first boot only), network, sshd, then its user data or stored agent. */
  private async bootNode(state: LocalNodeState, userData: string | undefined): Promise<void> {
    const dir = this.nodeDir(state.deployment, state.name)
    await ensureHostDirs(this.stateRoot, async () =>
      mkdir(join(NETNS_ETC, state.namespace, 'nodeset'), {recursive: true, mode: 0o755}),
    )
    await this.writeNodeFiles(state, userData)
    await this.plugNetwork(state)
    const sshd = await this.startSshd(state)
    await writeFile(join(dir, 'sshd.pid'), `${sshd}\n`)
    const script = userData !== undefined ? '/var/lib/nodeset/user-data.sh' : await this.storedAgent(state)
    if (script) {
      const agent = await spawnDetached(
        ['nsenter', '-t', String(sshd), '-n', '-m', '-u', '--', '/bin/sh', script],
        join(dir, 'fs/var-log/nodeset-agent.log'),
      )
      await writeFile(join(dir, 'agent.pid'), `${agent.pid}\n`)
    }
    if (state.phase !== 'created') {
      state.phase = 'created'
      await this.writeState(state)
    }
  }

  /** The agent a boot runs again: the copy it stored of itself, else the original user data. */
  private async storedAgent(state: LocalNodeState): Promise<string | undefined> {
    const lib = join(this.nodeDir(state.deployment, state.name), 'fs/var-lib')
    for (const name of ['agent.sh', 'user-data.sh']) {
      if (await exists(join(lib, name))) return `/var/lib/nodeset/${name}`
    }
    return undefined
  }

  private async writeNodeFiles(state: LocalNodeState, userData: string | undefined): Promise<void> {
    const dir = this.nodeDir(state.deployment, state.name)
    const etc = join(NETNS_ETC, state.namespace)
    const ssh = join(etc, 'ssh')
    await mkdir(join(ssh, 'authorized_keys'), {recursive: true, mode: 0o755})
    await Promise.all(['fs/srv', 'fs/var-lib'].map((d) => mkdir(join(dir, d), {recursive: true, mode: 0o755})))
    await chmod(join(dir, 'fs/var-lib'), 0o700)
    await copyDirectoryTree('/var/log', join(dir, 'fs/var-log'), 2)
    const short = state.name.split('.')[0]
    await writeFile(join(etc, 'hostname'), `${state.name}\n`, {mode: 0o644})
    if (!(await exists(join(etc, 'hosts')))) {
      const names = short === state.name ? state.name : `${state.name} ${short}`
      await writeFile(
        join(etc, 'hosts'),
        `127.0.0.1 localhost\n${state.address} ${names}\n::1 localhost ip6-localhost ip6-loopback\n`,
        {mode: 0o644},
      )
    }
    // Nodes have no route to the host's DNS server: make lookups of unknown names fail at once
    // (nothing listens on the node's own port 53) instead of timing out; names come from /etc/hosts.
    await writeFile(
      join(etc, 'resolv.conf'),
      '# local node: no DNS server; names come from /etc/hosts\nnameserver 127.0.0.1\noptions timeout:1 attempts:1\n',
      {mode: 0o644},
    )
    // The node is not a cloud machine: its agent must not install boot hooks on this host's systemd or cron.
    await writeFile(
      join(etc, 'nodeset', 'no-boot-hook'),
      'local node: the local provider runs the agent at each start\n',
      {mode: 0o644},
    )
    await writeFile(join(ssh, 'authorized_keys', 'root'), this.authorizedKeys.join('\n') + '\n', {mode: 0o644})
    await writeFile(join(ssh, 'sshd_config'), sshdConfig(state), {mode: 0o644})
    if (!(await exists(join(ssh, 'moduli'))) && (await exists('/etc/ssh/moduli')))
      await copyFile('/etc/ssh/moduli', join(ssh, 'moduli'))
    await Promise.all(
      (['ed25519', 'ecdsa'] as const).map(async (type) => {
        const key = join(ssh, `ssh_host_${type}_key`)
        if (!(await exists(key)))
          await run(['ssh-keygen', '-q', '-t', type, '-N', '', '-C', `root@${state.name}`, '-f', key])
      }),
    )
    if (userData !== undefined) await writeFile(join(dir, 'fs/var-lib/user-data.sh'), userData, {mode: 0o700})
  }

  private async plugNetwork(s: LocalNodeState): Promise<void> {
    if (!(await exists(`/run/netns/${s.namespace}`))) {
      // A stale host end (from a namespace that is gone) would block the new pair.
      await tryRun(['ip', 'link', 'del', s.hostVeth])
      await run(['ip', 'netns', 'add', s.namespace])
    }
    if (!(await tryRun(['ip', 'link', 'show', 'dev', s.hostVeth]))) {
      await run(['ip', 'link', 'add', s.hostVeth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', s.namespace])
    }
    await run(['ip', 'link', 'set', s.hostVeth, 'master', s.bridge, 'up'])
    const inside = ['ip', '-n', s.namespace]
    await run([...inside, 'link', 'set', 'lo', 'up'])
    await run([...inside, 'link', 'set', 'dev', 'eth0', 'address', macForAddress(s.address)])
    await run([...inside, 'addr', 'replace', `${s.address}/${parseSubnet(s.subnet).prefix}`, 'dev', 'eth0'])
    await run([...inside, 'link', 'set', 'eth0', 'up'])
    await run([...inside, 'route', 'replace', 'default', 'via', s.hostAddress, 'dev', 'eth0'])
  }

  /** Start the node's sshd in its namespaces and wait until it greets on port 22; returns its pid. */
  private async startSshd(s: LocalNodeState): Promise<number> {
    const dir = this.nodeDir(s.deployment, s.name)
    const log = join(dir, 'boot.log')
    const child = await spawnDetached(
      [
        'ip',
        'netns',
        'exec',
        s.namespace,
        'unshare',
        '--uts',
        '--mount',
        '--propagation',
        'private',
        '--',
        '/bin/sh',
        '-c',
        LAUNCH_SCRIPT,
        'nodeset-boot',
        dir,
        s.name,
      ],
      log,
    )
    const pid = child.pid
    let exited = false
    child.once('exit', () => (exited = true))
    const deadline = Date.now() + SSH_READY_TIMEOUT_MS
    while (Date.now() < deadline && !exited) {
      if (await sshGreets(s.address)) return pid
      await sleep(20)
    }
    const bootLog = await readFile(log, 'utf8').catch(() => '')
    const sshdLog = await readFile(join(dir, 'fs/var-log/sshd.log'), 'utf8').catch(() => '')
    if (!exited) child.kill('SIGKILL')
    throw new Error(
      `sshd of ${s.name} did not answer on ${s.address}:22 ${exited ? '(it exited)' : `within ${SSH_READY_TIMEOUT_MS / 1000}s`}` +
        `${bootLog.trim() ? `; boot: ${bootLog.trim().slice(-500)}` : ''}${sshdLog.trim() ? `; sshd: ${sshdLog.trim().slice(-500)}` : ''}`,
    )
  }

  /** Kill everything in the node's namespaces, then delete its namespace, link, overlay and directory. */
  private async removeNode(s: LocalNodeState): Promise<void> {
    await killNamespaceProcesses(s.namespace)
    if (await exists(`/run/netns/${s.namespace}`)) await run(['ip', 'netns', 'del', s.namespace])
    // Deleting the namespace takes its veth end with it, asynchronously; make sure the host end goes too.
    for (let i = 0; i < 100 && (await tryRun(['ip', 'link', 'show', 'dev', s.hostVeth])); i++) {
      await tryRun(['ip', 'link', 'del', s.hostVeth])
      await sleep(20)
    }
    await rm(join(NETNS_ETC, s.namespace), {recursive: true, force: true})
    await rm(this.nodeDir(s.deployment, s.name), {recursive: true, force: true})
  }
}

function checkId(what: string, value: string): void {
  if (!ID_PATTERN.test(value))
    throw new Error(
      `${what} ${JSON.stringify(value)} is not a valid id: use letters, digits, . _ : - (starting with a letter or digit)`,
    )
}

function sshdConfig(s: LocalNodeState): string {
  return [
    `# sshd of the nodeset local node ${s.name} (deployment ${s.deployment}); this file is private to the node.`,
    `ListenAddress ${s.address}:22`,
    'HostKey /etc/ssh/ssh_host_ed25519_key',
    'HostKey /etc/ssh/ssh_host_ecdsa_key',
    'PidFile none',
    'PermitRootLogin prohibit-password',
    'PubkeyAuthentication yes',
    'AuthorizedKeysFile /etc/ssh/authorized_keys/%u',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'UsePAM no',
    'PrintMotd no',
    'AcceptEnv LANG LC_*',
    'Subsystem sftp internal-sftp',
    '',
  ].join('\n')
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path)
    return true
  } catch {
    return false
  }
}

/** Whether the process lives in the named network namespace (guards against reused pids). */
async function inNamespace(pid: number, namespace: string): Promise<boolean> {
  if (!processAlive(pid)) return false
  try {
    const [proc, ns] = await Promise.all([stat(`/proc/${pid}/ns/net`), stat(`/run/netns/${namespace}`)])
    return proc.ino === ns.ino && proc.dev === ns.dev
  } catch {
    return false
  }
}

/** Start a long-lived process in its own session, output appended to a log file; the provider does not wait for it. */
async function spawnDetached(argv: string[], logFile: string): Promise<ChildProcess & {pid: number}> {
  const log = await open(logFile, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_APPEND, 0o600)
  try {
    const child = spawn(argv[0], argv.slice(1), {
      detached: true,
      stdio: ['ignore', log.fd, log.fd],
      env: SYSTEM_ENV,
      cwd: '/',
    })
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve)
      child.once('error', reject)
    })
    child.unref()
    return child as typeof child & {pid: number}
  } finally {
    await log.close()
  }
}

/** True once something on address:22 sends an SSH banner. */
function sshGreets(address: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({host: address, port: 22, timeout: 1000})
    const done = (ok: boolean): void => {
      socket.destroy()
      resolve(ok)
    }
    socket.once('data', (chunk) => done(chunk.toString('latin1').startsWith('SSH-')))
    socket.once('error', () => done(false))
    socket.once('timeout', () => done(false))
  })
}

/** Copy a directory's tree of directories (no files) with their modes and owners, `depth` levels deep. */
async function copyDirectoryTree(from: string, to: string, depth: number): Promise<void> {
  const info = await stat(from).catch(() => undefined)
  await mkdir(to, {recursive: true})
  if (!info) return
  await chmod(to, info.mode & 0o7777)
  await chown(to, info.uid, info.gid)
  if (depth === 0) return
  const entries = await readdir(from, {withFileTypes: true}).catch(() => [])
  await Promise.all(
    entries
      .filter((e) => e.isDirectory())
      .map((e) => copyDirectoryTree(join(from, e.name), join(to, e.name), depth - 1)),
  )
}

// ---- host directories shared by every local node ----

interface HostRecord {
  /** Directories the provider made on the host, in the order made; removed (when empty) in reverse. */
  created: string[]
}

const HOST_RECORD = join(RUNTIME_DIR, 'created.json')
const HOST_LOCK = join(RUNTIME_DIR, 'host.lock')

async function readHostRecord(): Promise<HostRecord> {
  return JSON.parse(await readFile(HOST_RECORD, 'utf8').catch(() => '{"created": []}')) as HostRecord
}

/**
 * Make the mount points nodes need (and the state root), recording those made, then run `claim`
 * under the same lock so a concurrent release never removes them in between.
 */
async function ensureHostDirs(stateRoot: string, claim: () => Promise<unknown>): Promise<void> {
  await withLock(HOST_LOCK, async () => {
    const record = await readHostRecord()
    for (const dir of [NETNS_ETC, ...HOST_MOUNTPOINTS, stateRoot]) {
      const first = await mkdir(dir, {recursive: true, mode: 0o755})
      if (first === undefined) continue
      // Every level from the first one made down to `dir` is ours.
      const made: string[] = []
      for (let d = dir; d.length >= first.length; d = d.slice(0, d.lastIndexOf('/')) || '/') {
        made.unshift(d)
        if (d === first) break
      }
      record.created.push(...made.filter((d) => !record.created.includes(d)))
    }
    await writeFile(HOST_RECORD, JSON.stringify(record) + '\n', {mode: 0o600})
    await claim()
  })
}

/** Once no local node is left on this host (no /etc/netns/<ns>/nodeset), remove the directories we made. */
async function releaseHostDirs(): Promise<void> {
  await withLock(HOST_LOCK, async () => {
    const overlays = await readdir(NETNS_ETC).catch(() => [] as string[])
    for (const ns of overlays) if (await exists(join(NETNS_ETC, ns, 'nodeset'))) return
    const record = await readHostRecord()
    const kept: string[] = []
    for (const dir of [...record.created].reverse()) {
      try {
        await rmdir(dir)
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') kept.unshift(dir)
      }
    }
    if (kept.length > 0) await writeFile(HOST_RECORD, JSON.stringify({created: kept}) + '\n', {mode: 0o600})
    else await rm(HOST_RECORD, {force: true})
  })
  await rmdir(RUNTIME_DIR).catch(() => undefined)
}

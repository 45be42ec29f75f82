// Over 300 lines: the one Provider class of both boot modes, each of its methods short.
/**
 * The `local` provider: real hosts on this machine. Each node is a network namespace on a bridge
 * (one per deployment) with its own hostname, private directories, its own sshd and its user data
 * run as a boot would run it. See docs/local-provider.md. The record of the nodes is local-state.ts,
 * their files local-files.ts, what is done to the machine local-machine.ts with commands built as data
 * in local-commands.ts and run by local-system.ts. With `boot: 'systemd'`, each node is instead a real
 * boot of a Debian image (local-boot.ts, local-image.ts) in the same network.
 */
import {join} from 'node:path'
import pLimit from 'p-limit'
import {ID_PATTERN} from '../core/ids.js'
import type {HostKeyPolicy, HostKeyStore} from '../ssh/hostkeys.js'
import type {SshTarget} from '../ssh/ssh.js'
import {bootMachine, enterMachine, machineHostKeys, machineLeader, machinePid, stopMachine} from './local-boot.js'
import {machinePaths} from './local-boot-commands.js'
import {enterNode} from './local-commands.js'
import {ensureHostDirs, etcDir, readHostKeys, releaseHostDirs} from './local-files.js'
import {ensureImage, type BootImage, type Progress} from './local-image-build.js'
import {IMAGE_CACHE} from './local-image.js'
import {bootNode, deleteUnusedBridge, ensureBridge, removeNode} from './local-machine.js'
import {
  bridgeName,
  bridgeNameProblem,
  DEFAULT_SUBNET,
  hostAddress,
  namespaceName,
  parseSubnet,
  type Subnet,
} from './local-network.js'
import {
  assignNodes,
  LocalStateFiles,
  nodeRecord,
  nodeState,
  type DeploymentNet,
  type LocalNodeState,
} from './local-state.js'
import {assertLocalProviderUsable, inNamespace, killNamespaceProcesses, withLock} from './local-system.js'
import {checkDeployment, createdNodeTarget, type NodeRecord, type NodeRequest, type Provider} from './provider.js'

export type {LocalNodeState} from './local-state.js'

export interface LocalProviderOptions {
  /** The deployment whose nodes this provider makes. */
  deployment: string
  /** IPv4 network of the deployment's bridge; the host takes its first address. Default 10.77.0.0/24. */
  subnet?: string
  /** Bridge name (at most 15 characters); default derived from the deployment. */
  bridge?: string
  /** Where nodes are recorded: `<stateRoot>/<deployment>/<node>/node.json`. Default /var/lib/nodeset/local. */
  stateRoot?: string
  /** The operator's SSH public keys, allowed to log in as root (asked for when a node is made). */
  authorizedKeys: string[] | (() => string[])
  /** The operator's private key for those (sshTarget). */
  privateKeyPath?: string
  /** Where the host keys the nodes report when they phone home are pinned (hostKeyPolicy). */
  hostKeys: HostKeyStore
  /**
   * How new nodes boot: `fast` (default), a namespace with its own sshd running the user data as a
   * script; `systemd`, a real boot of a Debian image with systemd and cloud-init (docs/local-provider.md).
   */
  boot?: 'fast' | 'systemd'
  /** systemd mode: where the image is built and kept. Default /var/cache/nodeset/images. */
  imageCache?: string
  /** systemd mode: lines saying how the image build goes (it takes minutes, once). Default: stderr. */
  progress?: Progress
}

export {DEFAULT_SUBNET}
export const DEFAULT_STATE_ROOT = '/var/lib/nodeset/local'
const AUTHORIZED_KEY_PATTERN =
  /^(?:ssh-[a-z0-9-]+|ecdsa-sha2-[a-z0-9-]+|sk-[a-z0-9@.-]+) [A-Za-z0-9+/]+={0,3}(?: [^\r\n]*)?$/

export class LocalProvider implements Provider {
  readonly kind = 'local'
  readonly deployment: string
  readonly subnet: Subnet
  readonly stateRoot: string
  /** The deployment's bridge. */
  readonly bridge: string
  readonly boot: 'fast' | 'systemd'
  private readonly states: LocalStateFiles
  private keys?: string[]
  private imageReady?: Promise<BootImage>

  constructor(private readonly options: LocalProviderOptions) {
    checkId('deployment', options.deployment)
    this.deployment = options.deployment
    this.subnet = parseSubnet(options.subnet ?? DEFAULT_SUBNET)
    this.stateRoot = options.stateRoot ?? DEFAULT_STATE_ROOT
    const badBridge = options.bridge === undefined ? undefined : bridgeNameProblem(options.bridge)
    if (badBridge) throw new Error(badBridge)
    this.bridge = options.bridge ?? bridgeName(this.deployment)
    this.boot = options.boot ?? 'fast'
    this.states = new LocalStateFiles(this.stateRoot, this.deployment)
    if (Array.isArray(options.authorizedKeys)) this.keys = checkedKeys(options.authorizedKeys)
  }

  /** The keys nodes authorize: read (and checked) once, when the first node is made. */
  private get authorizedKeys(): string[] {
    const {authorizedKeys} = this.options
    this.keys ??= checkedKeys(Array.isArray(authorizedKeys) ? authorizedKeys : authorizedKeys())
    return this.keys
  }

  /** The host's address on the bridge: where nodes reach the operator and the config server. */
  get hostAddress(): string {
    return hostAddress(this.subnet)
  }

  /** Root logs in with the operator's key. */
  sshTarget(node: NodeRecord): SshTarget {
    return createdNodeTarget(node, {user: 'root', privateKeyPath: this.options.privateKeyPath})
  }

  /** The keys each node reported over its authenticated phone-home, and no other. */
  hostKeyPolicy(): HostKeyPolicy {
    return {mode: 'pinned', store: this.options.hostKeys}
  }

  /**
   * Make the deployment's bridge with the host address on it, so a config server can listen there
   * before any node boots. Refuses a subnet that another interface of the host already uses.
   */
  async prepareNetwork(): Promise<{bridge: string; hostAddress: string; subnet: string}> {
    await assertLocalProviderUsable()
    await ensureHostDirs(this.stateRoot, async () => undefined)
    await withLock(this.states.lock, () => ensureBridge(this.bridge, this.subnet))
    return {bridge: this.bridge, hostAddress: this.hostAddress, subnet: this.subnet.cidr}
  }

  /** The bridge exists and nodes reach the operator at the host address. */
  async prepare(): Promise<{operatorAddress: string}> {
    return {operatorAddress: (await this.prepareNetwork()).hostAddress}
  }

  async create(requests: NodeRequest[]): Promise<NodeRecord[]> {
    checkDeployment(this.kind, this.deployment, requests)
    for (const r of requests) checkId('node name', r.name)
    const duplicate = requests.find((r, i) => requests.findIndex((o) => o.name === r.name) !== i)
    if (duplicate) throw new Error(`node ${duplicate.name} is requested twice`)
    if (requests.length === 0) return []
    await this.prepareNetwork()
    const plans = await withLock(this.states.lock, () => this.reserve(requests))
    const limit = pLimit(8)
    const failures: string[] = []
    await Promise.all(
      plans.map((plan) =>
        limit(async () => {
          try {
            if (plan.fresh) await this.bootNode(plan.state, plan.request.userData)
            else if (!(await this.isRunning(plan.state))) await this.bootNode(plan.state, undefined)
          } catch (error) {
            failures.push(`${plan.state.name}: ${(error as Error).message}`)
            if (plan.fresh) await this.remove(plan.state).catch(() => undefined)
          }
        }),
      ),
    )
    if (failures.length > 0) {
      await this.release()
      throw new Error(`could not create ${failures.length} local node(s):\n  ${failures.join('\n  ')}`)
    }
    const wanted = new Set(requests.map((r) => r.name))
    return (await this.list()).filter((n) => wanted.has(n.name))
  }

  async list(): Promise<NodeRecord[]> {
    const states = await this.states.readAll()
    const records = await Promise.all(states.map(async (s) => nodeRecord(s, await this.isRunning(s))))
    return records.sort((a, b) => a.role.localeCompare(b.role) || a.index - b.index || a.name.localeCompare(b.name))
  }

  /** Boot stopped nodes again (after the host restarted): network, sshd, then the stored agent. */
  async start(nodes: NodeRecord[]): Promise<NodeRecord[]> {
    checkDeployment(this.kind, this.deployment, nodes)
    if (nodes.length === 0) return []
    await this.prepareNetwork()
    const states = await Promise.all(nodes.map((n) => this.states.read(n.name)))
    await Promise.all(states.map(async (s) => ((await this.isRunning(s)) ? undefined : this.bootNode(s, undefined))))
    return Promise.all(states.map(async (s) => nodeRecord(s, await this.isRunning(s))))
  }

  /**
   * Take nodes down, keeping everything they are made of (as a stopped instance does): systemd mode
   * powers the machine off; fast mode ends the node's processes. `start` boots them again.
   */
  async stop(nodes: NodeRecord[]): Promise<void> {
    checkDeployment(this.kind, this.deployment, nodes)
    const states = await Promise.all(nodes.map((n) => this.states.read(n.name)))
    await Promise.all(
      states.map((s) => (s.boot === 'systemd' ? stopMachine(s, this.states) : killNamespaceProcesses(s.namespace))),
    )
  }

  async destroy(nodes: NodeRecord[]): Promise<void> {
    checkDeployment(this.kind, this.deployment, nodes)
    if (nodes.length === 0) return
    await assertLocalProviderUsable()
    const limit = pLimit(8)
    await Promise.all(
      nodes.map((node) =>
        limit(async () => {
          const state = await this.states.read(node.name).catch(() => undefined)
          // A node whose node.json is gone: what its name says is enough to remove its remnants.
          await this.remove(state ?? nodeState(this.net, node, node.address ?? ''))
        }),
      ),
    )
    await this.release()
  }

  /**
   * Delete the deployment's bridge and directory if it has no node left, then the host directories if
   * no local node is left at all. destroy() calls it; call it after prepare() when no node was made.
   */
  async release(): Promise<void> {
    await withLock(this.states.lock, async () => {
      if ((await this.states.readAll()).length > 0) return
      await deleteUnusedBridge(this.bridge)
      await this.states.removeAll()
    })
    await releaseHostDirs()
  }

  /** The node's SSH host public keys (`type base64`), read from its private /etc/ssh. */
  async readHostKeys(node: Pick<NodeRecord, 'deployment' | 'name'>): Promise<string[]> {
    const state = await this.states.read(node.name).catch(() => undefined)
    if (state?.boot === 'systemd') return machineHostKeys(this.states.nodeDir(node.name))
    return readHostKeys(namespaceName(node.deployment, node.name))
  }

  /** known_hosts lines for the node (its address and its host keys), for `ssh -o StrictHostKeyChecking=yes`. */
  async knownHosts(node: NodeRecord): Promise<string> {
    const keys = await this.readHostKeys(node)
    return keys.map((k) => `${node.address} ${k}\n`).join('')
  }

  /** argv prefix that runs a command inside the node (all its namespaces), e.g. `[...prefix, 'cat', '/etc/hostname']`. */
  async enterCommand(node: Pick<NodeRecord, 'deployment' | 'name'>): Promise<string[]> {
    checkDeployment(this.kind, this.deployment, [node])
    const state = await this.states.read(node.name).catch(() => undefined)
    if (state?.boot === 'systemd') {
      const nspawn = await machinePid(state, this.states)
      const leader = nspawn && (await machineLeader(nspawn))
      if (leader) return enterMachine(leader)
    } else {
      const pid = state && (await this.sshdPid(state))
      if (pid !== undefined) return enterNode(pid)
    }
    throw new Error(`local node ${node.name} is not running: start it with nodeset create-node`)
  }

  /** The node's directory on the host: node.json, pid files, and `fs/` (its /srv/nodeset, /var/lib/nodeset, /var/log). */
  nodeDir(deployment: string, name: string): string {
    return join(this.stateRoot, deployment, name)
  }

  /**
   * The node's /etc as the host sees it: fast mode's overlay (`hosts`, `hostname`, `ssh/`, `nodeset/`);
   * in systemd mode, the /etc of its writable layer (what the node changed or made there).
   */
  etcDir(deployment: string, name: string): string {
    if (this.boot === 'systemd') return join(machinePaths(this.nodeDir(deployment, name)).layer, 'etc')
    return etcDir(namespaceName(deployment, name))
  }

  private get net(): DeploymentNet {
    return {deployment: this.deployment, subnet: this.subnet, bridge: this.bridge, boot: this.boot}
  }

  /** Record each new node with a free address (under the deployment lock); recorded ones are kept. */
  private async reserve(
    requests: NodeRequest[],
  ): Promise<Array<{request: NodeRequest; state: LocalNodeState; fresh: boolean}>> {
    const assigned = assignNodes(this.net, await this.states.readAll(), requests, new Date())
    const plans = []
    for (const {request, state, known} of assigned) {
      if (!known) await this.states.write(state)
      // A creation that never finished (its process died) starts over with this request's user data.
      const fresh = !known || (state.phase === 'creating' && !(await this.isRunning(state)))
      plans.push({request, state, fresh})
    }
    return plans
  }

  /** The pid of the node's sshd, if it runs in the node's namespace (a reused pid does not count). */
  private async sshdPid(state: LocalNodeState): Promise<number | undefined> {
    const pid = await this.states.readPid(state.name, 'sshd')
    return pid !== undefined && (await inNamespace(pid, state.namespace)) ? pid : undefined
  }

  private async isRunning(state: LocalNodeState): Promise<boolean> {
    if (state.boot === 'systemd') return (await machinePid(state, this.states)) !== undefined
    return (await this.sshdPid(state)) !== undefined
  }

  private async bootNode(state: LocalNodeState, userData: string | undefined): Promise<void> {
    if (state.boot !== 'systemd') return bootNode(state, this.states, this.authorizedKeys, userData)
    const image = await this.image()
    return bootMachine(state, this.states, image.root, this.authorizedKeys, userData)
  }

  /** The boot image, built on first use if this machine has none cached (once for all the nodes of a run). */
  private image(): Promise<BootImage> {
    const progress = this.options.progress ?? ((line: string) => void process.stderr.write(`${line}\n`))
    this.imageReady ??= ensureImage(progress, this.options.imageCache ?? IMAGE_CACHE)
    this.imageReady.catch(() => (this.imageReady = undefined))
    return this.imageReady
  }

  private async remove(state: LocalNodeState): Promise<void> {
    if (state.boot === 'systemd') await stopMachine(state, this.states)
    await removeNode(state, this.states)
  }
}

function checkId(what: string, value: string): void {
  if (typeof value !== 'string' || !ID_PATTERN.test(value))
    throw new Error(
      `${what} ${JSON.stringify(value)} is not a valid id: use letters, digits, . _ : - (starting with a letter or digit)`,
    )
}

/** The operator's public keys as authorized_keys lines, each checked. */
function checkedKeys(lines: string[]): string[] {
  const keys = lines.map((k) => k.trim()).filter(Boolean)
  const bad = keys.filter((k) => !AUTHORIZED_KEY_PATTERN.test(k))
  if (bad.length > 0)
    throw new Error(
      `not an SSH public key line (type base64 [comment]): ${bad.map((k) => JSON.stringify(k.slice(0, 40))).join(', ')}`,
    )
  if (keys.length === 0)
    throw new Error(
      'the local provider needs at least one SSH public key (authorizedKeys) to let the operator log in to its nodes',
    )
  return keys
}

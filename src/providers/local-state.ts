/**
 * The local provider's record of its nodes, the nodes' "tags": `<stateRoot>/<deployment>/<node>/node.json`,
 * beside the node's pid files, and the lock that serializes a deployment's address allocation.
 * Which address and names a new node gets is decided here, as data (`assignNodes`).
 */
import {chmod, mkdir, readdir, readFile, rename, rm, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {allocateAddress, hostAddress, hostVethName, namespaceName, type Subnet} from './local-network.js'
import type {NodeNet} from './local-commands.js'
import type {NodeRecord, NodeRequest} from './provider.js'

/** What a node is, as recorded in its node.json (its "tags"). */
export interface LocalNodeState extends NodeNet {
  deployment: string
  role: string
  index: number
  createdAt: string
  /** `creating` until its sshd first answered. */
  phase: 'creating' | 'created'
  /** A real boot of the Debian image (local-boot.ts); absent: fast mode. A node keeps the mode it was made in. */
  boot?: 'systemd'
  /** systemd mode: the node's writable layer is an overlay on the image, or a copy of it. */
  layer?: 'overlay' | 'copy'
  /** systemd mode: the image tree its layer was made on (a newer image does not replace it under the layer). */
  image?: string
}

/** The processes a node's directory records: fast mode's sshd and agent, systemd mode's nspawn. */
export type PidName = 'sshd' | 'agent' | 'machine'

/** What every node of a deployment shares: its network. */
export interface DeploymentNet {
  deployment: string
  subnet: Subnet
  bridge: string
  /** How new nodes boot (LocalProvider's `boot` option). */
  boot?: 'fast' | 'systemd'
}

/** A node's state as made for a new node (`createdAt` empty), or rebuilt for one whose node.json is gone. */
export function nodeState(
  net: DeploymentNet,
  node: Pick<NodeRecord, 'name' | 'role' | 'index'>,
  address: string,
): LocalNodeState {
  return {
    deployment: net.deployment,
    name: node.name,
    role: node.role,
    index: node.index,
    namespace: namespaceName(net.deployment, node.name),
    address,
    subnet: net.subnet.cidr,
    hostAddress: hostAddress(net.subnet),
    bridge: net.bridge,
    hostVeth: hostVethName(net.deployment, node.name),
    createdAt: '',
    phase: 'creating',
    ...(net.boot === 'systemd' ? {boot: 'systemd' as const} : {}),
  }
}

/**
 * Which request is a node already recorded (`known`) and which a new one, with the lowest free address.
 * A recorded node asked for with another role or index is refused.
 */
export function assignNodes(
  net: DeploymentNet,
  existing: LocalNodeState[],
  requests: NodeRequest[],
  now: Date,
): Array<{request: NodeRequest; state: LocalNodeState; known: boolean}> {
  const taken = existing.map((s) => s.address)
  return requests.map((request) => {
    const known = existing.find((s) => s.name === request.name)
    if (known) {
      if (known.role !== request.role || known.index !== request.index)
        throw new Error(
          `local node ${request.name} already exists as ${known.role} #${known.index}: destroy it before creating it as ${request.role} #${request.index}`,
        )
      return {request, state: known, known: true}
    }
    const address = allocateAddress(net.subnet, taken)
    taken.push(address)
    return {request, state: {...nodeState(net, request, address), createdAt: now.toISOString()}, known: false}
  })
}

/** The node as a provider shows it. */
export function nodeRecord(s: LocalNodeState, running: boolean): NodeRecord {
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

/** The node.json files of one deployment, and the node directories that hold them. */
export class LocalStateFiles {
  constructor(
    readonly stateRoot: string,
    readonly deployment: string,
  ) {}

  /** `<stateRoot>/<deployment>`: a directory per node. */
  get dir(): string {
    return join(this.stateRoot, this.deployment)
  }

  /** Held while nodes are recorded or the deployment's bridge is made or removed. */
  get lock(): string {
    return join(this.stateRoot, `${this.deployment}.lock`)
  }

  /** The node's directory on the host: node.json, pid files, boot.log and `fs/`. */
  nodeDir(name: string): string {
    return join(this.dir, name)
  }

  /** Record a node (atomically: written aside, then renamed). */
  async write(state: LocalNodeState): Promise<void> {
    await mkdir(this.nodeDir(state.name), {recursive: true, mode: 0o700})
    await chmod(this.dir, 0o700)
    const file = join(this.nodeDir(state.name), 'node.json')
    await writeFile(`${file}.tmp`, JSON.stringify(state, null, 2) + '\n', {mode: 0o600})
    await rename(`${file}.tmp`, file)
  }

  async read(name: string): Promise<LocalNodeState> {
    const file = join(this.nodeDir(name), 'node.json')
    try {
      return JSON.parse(await readFile(file, 'utf8')) as LocalNodeState
    } catch (error) {
      throw new Error(
        `local node ${name} of ${this.deployment} is not recorded (${file}): ${(error as Error).message}`,
        {cause: error},
      )
    }
  }

  /** Every recorded node (directories without a readable node.json are left out). */
  async readAll(): Promise<LocalNodeState[]> {
    const entries = await readdir(this.dir, {withFileTypes: true}).catch(() => [])
    const states = await Promise.all(
      entries.filter((e) => e.isDirectory()).map((e) => this.read(e.name).catch(() => undefined)),
    )
    return states.filter((s): s is LocalNodeState => s !== undefined)
  }

  /** A pid the node's directory holds (`sshd`, `agent`), or undefined. */
  async readPid(name: string, what: PidName): Promise<number | undefined> {
    const pid = Number(await readFile(join(this.nodeDir(name), `${what}.pid`), 'utf8').catch(() => ''))
    return pid > 0 ? pid : undefined
  }

  async writePid(name: string, what: PidName, pid: number): Promise<void> {
    await writeFile(join(this.nodeDir(name), `${what}.pid`), `${pid}\n`)
  }

  async removeNode(name: string): Promise<void> {
    await rm(this.nodeDir(name), {recursive: true, force: true})
  }

  async removeAll(): Promise<void> {
    await rm(this.dir, {recursive: true, force: true})
  }
}

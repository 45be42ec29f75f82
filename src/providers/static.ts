/**
 * The `static` provider: servers you already have. Nothing is created or powered off; "create"
 * installs the node agent over SSH (instead of user data at boot) and starts it, with a boot hook so
 * it runs at every boot, and "destroy" removes everything it installed. Which servers belong to a
 * deployment is recorded in `static-nodes.json` in the deployment's state directory (its "tags").
 * See docs/ssh.md. The scripts it runs are static-scripts.ts; its settings static-settings.ts.
 */
import {mkdirSync, readFileSync, renameSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import pLimit from 'p-limit'
import type {HostKeyPolicy, HostKeyStore} from '../ssh/hostkeys.js'
import type {ConnectOptions, SshSession, SshTarget} from '../ssh/ssh.js'
import {shellQuote} from '../ssh/shell.js'
import {removeHostsBlock} from '../plan/wiring.js'
import {checkDeployment, type NodeRecord, type NodeRequest, type Provider} from './provider.js'
import {installScript, staticLayout, uninstallScript, type StaticLayout} from './static-scripts.js'
import type {StaticHost} from './static-settings.js'

export interface StaticProviderOptions {
  /** The deployment these servers are nodes of. */
  deployment: string
  hosts: StaticHost[]
  /** The deployment's state directory (`.nodeset/<deployment>/` beside the nodeset file). */
  stateDir: string
  /** Pinned host keys: those found in known_hosts or accepted on first use are kept here. */
  hostKeys: HostKeyStore
  /** Login user; default from ~/.ssh/config. */
  sshUser?: string
  /** Private key file; default from ~/.ssh/config, the agent or ~/.ssh/id_*. */
  sshKey?: string
  /** Pin an unknown host key on first use (the `--trust-on-first-use` flag); never the default. */
  trustOnFirstUse?: boolean
  /** Where the user's trusted host keys are; default ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts. */
  knownHostsPaths?: string[]
  /** Connection settings (retry deadline, agent, ~/.ssh/config path). */
  connectOptions?: Omit<ConnectOptions, 'hostKeys'>
  /** Install under this directory instead of / (a server shared with other uses, such as tests). */
  remoteRoot?: string
  /** Hosts handled at once. Default 8. */
  concurrency?: number
}

interface StateFile {
  nodes: NodeRecord[]
}

export class StaticProvider implements Provider {
  readonly kind = 'static'
  readonly deployment: string
  readonly layout: StaticLayout
  private readonly stateFile: string

  constructor(private readonly options: StaticProviderOptions) {
    this.deployment = options.deployment
    this.layout = staticLayout(options.remoteRoot ?? '/')
    this.stateFile = join(options.stateDir, 'static-nodes.json')
  }

  /** How every SSH connection to these servers verifies host keys (for setup and update too). */
  hostKeyPolicy(): HostKeyPolicy {
    return {
      mode: 'static',
      store: this.options.hostKeys,
      knownHostsPaths: this.options.knownHostsPaths,
      trustOnFirstUse: this.options.trustOnFirstUse === true,
    }
  }

  /** The server listed in hosts under the node's name (else the node's own address), with ssh_user and ssh_key. */
  sshTarget(node: Pick<NodeRecord, 'name' | 'address' | 'sshPort'>): SshTarget {
    const host = this.host(node)
    return {
      nodeName: host.name,
      host: host.address,
      port: host.port,
      user: this.options.sshUser,
      privateKeyPath: this.options.sshKey,
    }
  }

  /** The address the servers reach the operator at: where the first one sees our SSH connection come from. */
  async prepare(): Promise<{operatorAddress?: string}> {
    const first = this.options.hosts[0]
    if (!first) return {}
    return this.withSession(first, async (session) => {
      const {stdout} = await session.run('printf %s "$SSH_CLIENT"', {become: false, label: 'reading SSH_CLIENT'})
      const address = stdout.trim().split(/\s+/)[0]
      return address ? {operatorAddress: address} : {}
    })
  }

  async create(requests: NodeRequest[]): Promise<NodeRecord[]> {
    checkDeployment(this.kind, this.deployment, requests)
    const byName = new Map(this.options.hosts.map((h) => [h.name, h]))
    const unlisted = requests.filter((r) => !byName.has(r.name)).map((r) => r.name)
    if (unlisted.length > 0) {
      throw new Error(
        `${unlisted.join(', ')} ${unlisted.length === 1 ? 'is' : 'are'} not in [provider] hosts: add ${unlisted.map((n) => `${n}=ADDRESS`).join(' ')} to it`,
      )
    }
    const created = await this.eachNode(requests, async (request) => {
      const host = byName.get(request.name)!
      return this.withSession(host, async (session) => {
        await session.upload(this.layout.agent, request.userData, 0o700)
        await session.run(installScript(this.layout), {label: 'installing the nodeset agent'})
        const record: NodeRecord = {
          deployment: request.deployment,
          name: request.name,
          role: request.role,
          index: request.index,
          id: request.name,
          address: host.address,
          state: 'running',
          sshUser: session.target.user,
          sshPort: session.target.port,
        }
        this.record((nodes) => [
          ...nodes.filter((n) => !(n.deployment === record.deployment && n.name === record.name)),
          record,
        ])
        return record
      })
    })
    return created
  }

  async list(): Promise<NodeRecord[]> {
    return this.readState().nodes.filter((n) => n.deployment === this.deployment)
  }

  /** Stop and remove the agent, its boot hook, /etc/nodeset and the hosts block; never powers off. */
  async destroy(nodes: NodeRecord[]): Promise<void> {
    checkDeployment(this.kind, this.deployment, nodes)
    await this.eachNode(nodes, async (node) => {
      await this.withSession(node, async (session) => {
        await session.run(uninstallScript(this.layout), {label: 'removing the nodeset agent'})
        await this.removeHostsBlock(session, node.deployment)
      })
      this.record((recorded) => recorded.filter((n) => !(n.deployment === node.deployment && n.name === node.name)))
    })
  }

  private async removeHostsBlock(session: SshSession, deployment: string): Promise<void> {
    const hosts = this.layout.hostsFile
    const {code, stdout} = await session.exec(`cat -- ${shellQuote(hosts)}`)
    if (code !== 0) return
    const cleaned = removeHostsBlock(stdout, deployment)
    // In place, not renamed over: /etc/hosts is often a bind mount.
    if (cleaned !== stdout)
      await session.run(`cat > ${shellQuote(hosts)}`, {
        stdin: cleaned,
        label: `removing the ${deployment} block of ${hosts}`,
      })
  }

  private host(node: Pick<NodeRecord, 'name' | 'address' | 'sshPort'>): StaticHost {
    return (
      this.options.hosts.find((h) => h.name === node.name) ?? {
        name: node.name,
        address: node.address ?? node.name,
        port: node.sshPort,
      }
    )
  }

  private async withSession<T>(
    node: Pick<NodeRecord, 'name' | 'address' | 'sshPort'>,
    work: (session: SshSession) => Promise<T>,
  ): Promise<T> {
    // The SSH client is loaded when a server is first reached, not when the provider is opened.
    const {connect} = await import('../ssh/ssh.js')
    const session = await connect(this.sshTarget(node), {
      ...this.options.connectOptions,
      hostKeys: this.hostKeyPolicy(),
    })
    try {
      return await work(session)
    } finally {
      session.close()
    }
  }

  /** Run for every node, a few at a time; all are tried, then every failure is reported together. */
  private async eachNode<I extends {name: string}, O>(items: I[], work: (item: I) => Promise<O>): Promise<O[]> {
    const limit = pLimit(this.options.concurrency ?? 8)
    const settled = await Promise.allSettled(items.map((item) => limit(() => work(item))))
    const failures = settled.flatMap((s, i) =>
      s.status === 'rejected' ? [`${items[i].name}: ${(s.reason as Error).message}`] : [],
    )
    if (failures.length > 0)
      throw new Error(`static provider: ${failures.length} of ${items.length} nodes failed\n${failures.join('\n')}`)
    return settled.map((s) => (s as PromiseFulfilledResult<O>).value)
  }

  private readState(): StateFile {
    try {
      return JSON.parse(readFileSync(this.stateFile, 'utf8')) as StateFile
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {nodes: []}
      throw new Error(
        `cannot read ${this.stateFile}: ${(error as Error).message}; fix or remove it (list-nodes shows what it held)`,
        {cause: error},
      )
    }
  }

  /** Read-modify-write of the record file; synchronous, so concurrent nodes cannot interleave. */
  private record(change: (nodes: NodeRecord[]) => NodeRecord[]): void {
    const nodes = change(this.readState().nodes)
    mkdirSync(this.options.stateDir, {recursive: true, mode: 0o700})
    const temporary = `${this.stateFile}.${process.pid}.tmp`
    writeFileSync(temporary, JSON.stringify({nodes}, null, 2) + '\n', {mode: 0o600})
    renameSync(temporary, this.stateFile)
  }
}

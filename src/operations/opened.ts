/**
 * An opened deployment: what every operation acts on, opened once per command. It holds the
 * checked plan, the provider, the config server (reached on first use), SSH built from the
 * provider's host-key policy, and the secrets never to print (which grow as tokens and secret
 * outputs are met). close() ends what was opened. A deployment with sites has a provider and a
 * config server per site, each node routed to its own site's (providers/index.ts, sites.ts).
 */
import {DiagnosticsError, type Diagnostic} from '../core/diagnostics.js'
import {UserError} from '../core/errors.js'
import type {Nodeset} from '../nodeset/types.js'
import type {PlanResult} from '../plan/plan.js'
import {openProvider} from '../providers/index.js'
import type {NodeRecord, Provider} from '../providers/provider.js'
import type {Catalog} from '../services/catalog.js'
import {HostKeyStore, type HostKeyPolicy} from '../ssh/hostkeys.js'
import type {SessionPool, SshSession} from '../ssh/ssh.js'
import {openConfigServer, type DeploymentServerHandle} from './connect.js'
import {loadPlan, type Loaded} from './load.js'
import {openSiteServers} from './sites.js'
import {silentUi, type OperationUi} from './ui.js'
import {Workspace} from './workspace.js'

/** How long a refused or timed-out SSH connection is retried (a node whose sshd is starting). */
export const SSH_RETRY_MS = 60_000

/** The SSH client (ssh2), loaded when a command first reaches a node: plan, status and help never do. */
const sshClient = () => import('../ssh/ssh.js')

export interface OpenOptions {
  /** Static servers only: pin the key a server offers when none is known yet. */
  trustOnFirstUse?: boolean
  /** ec2: --profile and --region, over the file's. */
  aws?: {profile?: string; region?: string}
  ui?: OperationUi
}

export class OpenedDeployment {
  readonly nodeset: Nodeset
  readonly catalog: Catalog
  /** The plan and its analysis (checked: no problems). */
  readonly result: PlanResult
  /** What the checks let through but the user should hear (an ec2 deployment with an embedded server…). */
  readonly warnings: Diagnostic[]
  readonly workspace: Workspace
  readonly provider: Provider
  /** The deployment's pinned host keys (the workspace's known_hosts). */
  readonly hostKeys: HostKeyStore
  /** Values never to print: the file's secrets, the admin token, secrets met on the way. */
  readonly secrets: string[]
  private readonly hostKeyPolicy: HostKeyPolicy
  private server?: Promise<DeploymentServerHandle>
  private pool?: SessionPool

  constructor(
    /** The nodeset file, as the user named it (for messages that tell what to run next). */
    readonly file: string,
    loaded: Loaded,
    opts: OpenOptions = {},
  ) {
    ;({nodeset: this.nodeset, catalog: this.catalog, result: this.result, warnings: this.warnings} = loaded)
    this.ui = opts.ui ?? silentUi
    this.workspace = new Workspace(this.nodeset.file, this.nodeset.general.name)
    this.hostKeys = new HostKeyStore(this.workspace.knownHostsFile)
    this.provider = openProvider(this.nodeset, this.result.plan, {
      deployment: this.name,
      stateDir: this.workspace.dir,
      hostKeys: this.hostKeys,
      sshKey: () => this.workspace.sshKey(),
      trustOnFirstUse: opts.trustOnFirstUse,
      aws: opts.aws,
    })
    this.hostKeyPolicy = this.provider.hostKeyPolicy()
    this.secrets = [...this.nodeset.secrets]
  }

  readonly ui: OperationUi

  get name(): string {
    return this.result.plan.deployment
  }

  get plan() {
    return this.result.plan
  }

  /**
   * The config server, opened on first use (the provider's network made ready first). A read-only
   * operation (status, list-nodes, releases) asks with `readOnly` and leaves no state behind when
   * there is none: a deployment never created from here has nothing to report.
   */
  configServer(opts: {readOnly?: boolean} = {}): Promise<DeploymentServerHandle> {
    const embedded = this.nodeset.general.configServer === 'embedded'
    if (opts.readOnly && embedded && !this.server && !this.workspace.exists())
      return Promise.reject(
        new UserError(
          `deployment ${this.name} has no state beside ${this.file} yet: run nodeset create-node ${this.file}`,
        ),
      )
    // With sites, one server per site, asked as one (sites.ts).
    if (this.plan.sites?.length)
      this.server ??= openSiteServers(this.nodeset, this.plan, this.workspace, this.provider, this.secrets)
    this.server ??= (async () => {
      const {operatorAddress} = await this.provider.prepare()
      const handle = await openConfigServer(this.nodeset, this.workspace, operatorAddress)
      this.secrets.push(handle.adminToken)
      return handle
    })()
    return this.server
  }

  /**
   * The nodes that exist at the provider (terminated ones left out), each with the SSH port its
   * host keys are pinned for: the port it reported at phone-home (setup re-pins after a change).
   */
  async liveNodes(): Promise<NodeRecord[]> {
    const pinned = this.hostKeyPolicy.mode === 'pinned'
    return (await this.provider.list())
      .filter((r) => r.state !== 'terminated')
      .map((r) => {
        const port = pinned ? this.hostKeys.pinnedPort(r.name) : undefined
        return port === undefined ? r : {...r, sshPort: port}
      })
  }

  /** One shared session per node for the rest of the command (closed by close()). */
  async session(node: NodeRecord): Promise<SshSession> {
    const {SessionPool} = await sshClient()
    this.pool ??= new SessionPool({hostKeys: this.hostKeyPolicy, retryForMs: SSH_RETRY_MS})
    return this.pool.get(this.provider.sshTarget(node))
  }

  async close(): Promise<void> {
    await this.pool?.closeAll()
    const server = this.server
    this.server = undefined
    if (server) await (await server.catch(() => undefined))?.close()
  }
}

/** Read, plan and check the nodeset file (refused with diagnostics, nothing created) and open it. */
export function open(file: string, opts: OpenOptions = {}): OpenedDeployment {
  const loaded = loadPlan(file)
  if (loaded.result.analysis.problems.length > 0) throw new DiagnosticsError(loaded.result.analysis.problems)
  return new OpenedDeployment(file, loaded, opts)
}

/** Run work on an opened deployment and close it whatever happens. */
export async function withDeployment<T>(
  file: string,
  opts: OpenOptions,
  work: (deployment: OpenedDeployment) => Promise<T>,
): Promise<T> {
  const opened = open(file, opts)
  try {
    return await work(opened)
  } finally {
    await opened.close()
  }
}

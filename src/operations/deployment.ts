/**
 * Everything a command needs to act on a deployment: the plan, the operator's workspace, the
 * provider named by [provider], pinned host keys, and how to reach each node over SSH.
 */
import {DiagnosticsError} from '../core/diagnostics.js'
import {loadPlan, type Loaded} from './load.js'
import {Ec2Provider} from '../providers/ec2.js'
import {ec2Settings} from '../providers/ec2-settings.js'
import {LocalProvider} from '../providers/local.js'
import type {NodeRecord, Provider} from '../providers/provider.js'
import {parseStaticHosts, StaticProvider} from '../providers/static.js'
import {type HostKeyPolicy, HostKeyStore} from '../ssh/hostkeys.js'
import type {SshTarget} from '../ssh/ssh.js'
import {Workspace} from './workspace.js'

export interface Deployment extends Loaded {
  workspace: Workspace
  provider: Provider
  hostKeys: HostKeyStore
  /** How SSH connections verify each node's host key. */
  hostKeyPolicy: HostKeyPolicy
  /** Where nodes reach the operator's machine (an embedded config server listens there). */
  prepare(): Promise<{operatorAddress?: string}>
  sshTarget(node: NodeRecord): SshTarget
}

/** Read, plan and check the nodeset; refuse it (nothing created) when the checks fail. */
export function openDeployment(file: string, opts: {trustOnFirstUse?: boolean} = {}): Deployment {
  const loaded = loadPlan(file)
  if (loaded.result.analysis.problems.length > 0) throw new DiagnosticsError(loaded.result.analysis.problems)
  const {nodeset} = loaded
  const workspace = new Workspace(nodeset.file, nodeset.general.name).ensure()
  const hostKeys = new HostKeyStore(workspace.knownHostsFile)
  const settings = nodeset.provider.settings
  const text = (key: string) => settings[key]?.value.trim() || undefined
  // Nodes nodeset creates report their host keys when they phone home: those are pinned and required.
  const created = {...loaded, workspace, hostKeys, hostKeyPolicy: {mode: 'pinned', store: hostKeys} as HostKeyPolicy}
  const target = (node: NodeRecord, user: string, privateKeyPath?: string): SshTarget => ({
    host: node.address ?? node.name,
    port: node.sshPort ?? 22,
    user,
    nodeName: node.name,
    privateKeyPath,
  })

  if (nodeset.provider.kind === 'local') {
    const key = workspace.sshKey()
    const provider = new LocalProvider({
      subnet: text('subnet'),
      bridge: text('bridge'),
      authorizedKeys: [key.publicKey],
    })
    return {
      ...created,
      provider,
      prepare: async () => ({operatorAddress: (await provider.prepareNetwork(nodeset.general.name)).hostAddress}),
      sshTarget: (node) => target(node, 'root', key.privateKeyPath),
    }
  }
  if (nodeset.provider.kind === 'ec2') {
    const ec2 = ec2Settings(settings)
    return {
      ...created,
      provider: new Ec2Provider(ec2.options),
      prepare: async () => ({}),
      sshTarget: (node) => target(node, node.sshUser ?? ec2.options.sshUser ?? 'admin', ec2.sshKey),
    }
  }
  // static: servers that already exist, reached over SSH; host keys from known_hosts or pinned on first use.
  let hosts: ReturnType<typeof parseStaticHosts>
  try {
    hosts = parseStaticHosts(text('hosts') ?? '')
  } catch (error) {
    throw new DiagnosticsError([
      {
        message: (error as Error).message,
        source: settings.hosts?.source,
        hint: 'write hosts = NAME=ADDRESS[:PORT] …, one per planned node',
      },
    ])
  }
  const unlisted = loaded.result.plan.nodes.filter((n) => !hosts.some((h) => h.name === n.name)).map((n) => n.name)
  if (unlisted.length > 0) {
    throw new DiagnosticsError([
      {
        message: `[provider] hosts does not list ${unlisted.join(', ')}`,
        source: settings.hosts?.source ?? nodeset.provider.source,
        hint: `add ${unlisted.map((n) => `${n}=ADDRESS`).join(' ')}`,
      },
    ])
  }
  const sshUser = text('ssh_user')
  const sshKey = text('ssh_key')
  const provider = new StaticProvider({
    hosts,
    stateDir: workspace.dir,
    trustOnFirstUse: opts.trustOnFirstUse,
    ssh: (h) => ({nodeName: h.name, host: h.address, port: h.port, user: sshUser, privateKeyPath: sshKey}),
  })
  return {
    ...loaded,
    workspace,
    provider,
    hostKeys,
    hostKeyPolicy: provider.hostKeyPolicy(),
    prepare: () => provider.prepare(nodeset.general.name),
    sshTarget: (node) =>
      provider.sshTarget(
        hosts.find((h) => h.name === node.name) ?? {
          name: node.name,
          address: node.address ?? node.name,
          port: node.sshPort,
        },
      ),
  }
}

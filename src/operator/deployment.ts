/**
 * Everything a command needs to act on a deployment: the plan, the operator's workspace, the
 * provider named by [provider], pinned host keys, and how to reach each node over SSH.
 */
import {DiagnosticsError} from '../core/diagnostics.js'
import {loadPlan, type Loaded} from '../cli/load.js'
import {Ec2Provider} from '../providers/ec2.js'
import {ec2Settings} from '../providers/ec2-settings.js'
import {LocalProvider} from '../providers/local.js'
import type {NodeRecord, Provider} from '../providers/provider.js'
import {HostKeyStore} from '../setup/hostkeys.js'
import type {SshTarget} from '../setup/ssh.js'
import {Workspace} from './workspace.js'

export interface Deployment extends Loaded {
  workspace: Workspace
  provider: Provider
  hostKeys: HostKeyStore
  /** Where nodes reach the operator's machine (an embedded config server listens there). */
  prepare(): Promise<{operatorAddress?: string}>
  sshTarget(node: NodeRecord): SshTarget
}

/** Read, plan and check the nodeset; refuse it (nothing created) when the checks fail. */
export function openDeployment(file: string): Deployment {
  const loaded = loadPlan(file)
  if (loaded.result.analysis.problems.length > 0) throw new DiagnosticsError(loaded.result.analysis.problems)
  const {nodeset} = loaded
  const workspace = new Workspace(nodeset.file, nodeset.general.name).ensure()
  const hostKeys = new HostKeyStore(workspace.knownHostsFile)
  const settings = nodeset.provider.settings
  const text = (key: string) => settings[key]?.value.trim() || undefined

  if (nodeset.provider.kind === 'local') {
    const key = workspace.sshKey()
    const provider = new LocalProvider({subnet: text('subnet'), bridge: text('bridge'), authorizedKeys: [key.publicKey]})
    return {
      ...loaded,
      workspace,
      provider,
      hostKeys,
      prepare: async () => ({operatorAddress: (await provider.prepareNetwork(nodeset.general.name)).hostAddress}),
      sshTarget: (node) => ({host: node.address ?? node.name, port: node.sshPort ?? 22, user: 'root', nodeName: node.name, privateKeyPath: key.privateKeyPath}),
    }
  }
  if (nodeset.provider.kind === 'ec2') {
    const ec2 = ec2Settings(settings)
    const provider = new Ec2Provider(ec2.options)
    return {
      ...loaded,
      workspace,
      provider,
      hostKeys,
      prepare: async () => ({}),
      sshTarget: (node) => ({host: node.address ?? node.name, port: node.sshPort ?? 22, user: node.sshUser ?? ec2.options.sshUser ?? 'admin', nodeName: node.name, privateKeyPath: ec2.sshKey}),
    }
  }
  throw new DiagnosticsError([{message: `provider ${nodeset.provider.kind} is not available in this command yet`, source: nodeset.provider.source}])
}

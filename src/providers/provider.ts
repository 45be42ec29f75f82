import type {SizeSpec} from '../core/source.js'
import type {ProviderKind} from '../nodeset/types.js'
import type {HostKeyPolicy, HostKeyStore} from '../ssh/hostkeys.js'
import type {SshTarget} from '../ssh/ssh.js'

/** What the CLI asks a provider to create: one node, with the user data that boots it. */
export interface NodeRequest {
  deployment: string
  name: string
  role: string
  index: number
  size?: SizeSpec
  /** The rendered agent script (POSIX sh) that phones home at every boot. */
  userData: string
}

/** A node as the provider (the cloud, by its tags) sees it: the truth about what exists. */
export interface NodeRecord {
  deployment: string
  name: string
  role: string
  index: number
  /** Provider-specific id: an EC2 instance id, a local namespace name, a static host's name. */
  id: string
  /** Address the operator reaches it at (SSH). */
  address?: string
  privateAddress?: string
  state: 'pending' | 'running' | 'stopped' | 'terminated' | 'unknown'
  /** User name for SSH. */
  sshUser?: string
  sshPort?: number
}

/** What a provider is opened with: the deployment and the operator's state for it. */
export interface ProviderContext {
  deployment: string
  /** The operator's state directory for this deployment (0700), e.g. for the static provider's state. */
  stateDir: string
  /** Pinned host keys (src/ssh/hostkeys.ts HostKeyStore). */
  hostKeys: HostKeyStore
  /** The operator's key pair for nodes nodeset creates (generated on first use). */
  sshKey(): {privateKeyPath: string; publicKey: string}
  /** Static servers only: pin the key a server offers when none is known yet. */
  trustOnFirstUse?: boolean
  /** ec2 only: the command's --profile and --region, which win over `[provider] profile` and `region`. */
  aws?: {profile?: string; region?: string}
}

/** The nodes of one deployment, as one kind of provider makes, finds, reaches and removes them. */
export interface Provider {
  readonly kind: ProviderKind
  /**
   * Make ready what nodes need before any is created (the local provider's bridge), and say at which
   * address nodes reach the operator's machine, where an embedded config server listens.
   */
  prepare(): Promise<{operatorAddress?: string}>
  /** Create these nodes (all missing ones of one run); a retried call must never create twice. */
  create(requests: NodeRequest[]): Promise<NodeRecord[]>
  /** Every node of the deployment that exists, found by its tags. */
  list(): Promise<NodeRecord[]>
  /** Terminate these nodes and leave nothing of them behind. */
  destroy(nodes: NodeRecord[]): Promise<void>
  /** How the operator logs in to a node over SSH. */
  sshTarget(node: NodeRecord): SshTarget
  /** How SSH connections to these nodes verify host keys (for create, setup and update alike). */
  hostKeyPolicy(): HostKeyPolicy
}

/**
 * Where a node nodeset created is reached: its address (else its name). Its SSH port and user when
 * known (the port it reported, the provider's user setting); else ~/.ssh/config's Port and User for
 * the node's name apply, then 22 and `defaultUser`.
 */
export function createdNodeTarget(
  node: NodeRecord,
  login: {user?: string; defaultUser?: string; privateKeyPath?: string},
): SshTarget {
  return {
    host: node.address ?? node.name,
    ...(node.sshPort ? {port: node.sshPort} : {}),
    ...(login.user ? {user: login.user} : {}),
    ...(login.defaultUser ? {defaultUser: login.defaultUser} : {}),
    nodeName: node.name,
    privateKeyPath: login.privateKeyPath,
  }
}

/** Refuse a request of another deployment than the one the provider was opened for. */
export function checkDeployment(
  kind: ProviderKind,
  deployment: string,
  items: Array<{deployment: string; name: string}>,
): void {
  const other = items.find((i) => i.deployment !== deployment)
  if (other)
    throw new Error(
      `the ${kind} provider of deployment ${deployment} was asked about node ${other.name} of deployment ${other.deployment}`,
    )
}

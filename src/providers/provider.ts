import type {SizeSpec} from '../core/source.js'

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

export interface Provider {
  readonly name: string
  /**
   * Make ready what nodes need before any is created (the local provider's bridge), and say at which
   * address nodes reach the operator's machine, where an embedded config server listens.
   */
  prepare?(deployment: string): Promise<{operatorAddress?: string}>
  /** Create these nodes (all missing ones of one run); a retried call must never create twice. */
  create(requests: NodeRequest[]): Promise<NodeRecord[]>
  /** Every node of the deployment that exists, found by its tags. */
  list(deployment: string): Promise<NodeRecord[]>
  /** Terminate these nodes and leave nothing of them behind. */
  destroy(nodes: NodeRecord[]): Promise<void>
}

/** What the config server keeps of a registered deployment, as stored and as held in memory. */
import type {ServiceSpec} from './protocol.js'

export type FactValue = string | string[] | number | boolean
export type ServiceState = 'running' | 'succeeded' | 'failed'

/** What one service reported (by the node or by setup). Times are epoch milliseconds. */
export interface ServiceRun {
  state?: ServiceState
  exitCode?: number
  message?: string
  outputs: Record<string, string>
  startedAt?: number
  endedAt?: number
}

export interface InstanceRecord {
  id: string
  role: string
  index: number
  services: ServiceSpec[]
  /** SHA-256 of the bootstrap token issued at registration (carried in the node's user data). */
  tokenHash: Buffer
  /** SHA-256 of the node token the bootstrap token was exchanged for at the first phone-home. */
  nodeTokenHash?: Buffer
  /** When the bootstrap token was first exchanged, and when the node token was first used (epoch ms). */
  exchangedAt?: number
  nodeTokenUsedAt?: number
  /** Facts the node sent; `ip` is not among them (it is `address`, what the server saw). */
  facts: Record<string, FactValue>
  address?: string
  firstContact?: number
  lastContact?: number
  runs: Record<string, ServiceRun>
  /** The owning site, in a federated deployment. */
  site?: string
  /** An instance of another site: when its site sent the newest state of it applied here (epoch ms). */
  fedAt?: number
}

/** inputs[instance][service][param] */
export type Inputs = Record<string, Record<string, Record<string, string>>>

/** A registered deployment as stored. */
export interface RegistrationRecord {
  name: string
  registeredAt: number
  startupTimeoutSec?: number
  inputs: Inputs
  instances: InstanceRecord[]
  /** A federated deployment: the site of this server (instances of other sites are filled from the broker). */
  site?: string
}

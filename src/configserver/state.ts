/**
 * What the server needs of its store, whichever it is: SQLite (store.ts, one process) or PostgreSQL
 * (pgstore.ts, replicas sharing one database). Every write is answered after its commit, and its
 * `apply` (the in-memory update) runs right after the commit, in commit order, before the answer.
 */
import type {RegistrationPlan} from './register.js'
import type {FactValue, RegistrationRecord, ServiceState} from './records.js'

export interface ServiceReport {
  state: ServiceState
  exitCode?: number
  message?: string
  outputs: Record<string, string>
}

/** A phone-home's outcome: `changed` 0 when the instance is gone; `exchanged` when a node token was recorded. */
export interface PhoneHome {
  changed: number
  exchanged?: {exchangedAt: number}
}

/** What a phone-home writes. */
export interface PhoneHomeWrite {
  facts: Record<string, FactValue>
  address: string
  now: number
  /** The bootstrap token was presented: the new node token's hash, and how long a retried exchange may repeat it. */
  exchange?: {hash: Buffer; graceMs: number}
  /**
   * Memory holds no facts of the instance yet: likely its first contact, which a store may try first
   * as such. Only a hint (memory follows commits; a write queued meanwhile may have stored some).
   */
  firstContact?: boolean
}

export interface StateStore {
  /** Where the state is, for messages (a file, or a database without its password). */
  readonly where: string
  /** True when other processes share the state: what is in memory must be re-read from it when in doubt. */
  readonly shared: boolean
  deploymentNames(): Promise<string[]>
  load(name: string): Promise<RegistrationRecord | undefined>
  /** Register or replace; the tokens of new and reissued instances, and the deployment as committed. */
  register(
    plan: RegistrationPlan,
    now: number,
    apply: (record: RegistrationRecord | undefined) => void,
  ): Promise<Record<string, string>>
  /** Facts, and with `exchange` the node token's hash, in one transaction. */
  phoneHome(
    deployment: string,
    id: string,
    write: PhoneHomeWrite,
    apply: (result: PhoneHome) => void,
  ): Promise<PhoneHome>
  nodeTokenUsed(deployment: string, id: string, hash: Buffer, now: number, apply: (n: number) => void): Promise<number>
  report(
    deployment: string,
    id: string,
    service: string,
    report: ServiceReport,
    now: number,
    apply: (n: number) => void,
  ): Promise<number>
  deleteDeployment(deployment: string, apply: (n: number) => void): Promise<number>
  /** The deployment as committed after the deletion comes to `apply`. */
  deleteInstance(
    deployment: string,
    id: string,
    apply: (n: number, record: RegistrationRecord | undefined) => void,
  ): Promise<number>
  /**
   * One authentication failure against each key, unless one is already blocked: the seconds to wait
   * (then nothing is counted), or 0. Undefined: this store keeps no counters (the process does).
   */
  authFailure?(keys: string[], now: number, limit: number, windowMs: number): Promise<number>
  /** Told when another process changed a deployment (`ids`: the instances, when known), or lost track (`undefined`: everything). */
  onChange?(listener: (deployment: string | undefined, ids?: string[]) => void): void
  close(): Promise<void>
}

/** Reading a registered deployment back from the state, rows to records. */
import type {FactValue, Inputs, InstanceRecord, RegistrationRecord, ServiceRun, ServiceState} from './records.js'
import type {ServiceSpec} from './protocol.js'
import type {Db} from './store.js'

/** Read one registered deployment back, as committed. */
export function loadRegistration(db: Db, name: string): RegistrationRecord | undefined {
  const row = db
    .prepare('SELECT registered_at, startup_timeout_sec, inputs FROM deployments WHERE name = ?')
    .get(name) as DeploymentRow | undefined
  if (!row) return undefined
  const site = db.prepare('SELECT site FROM federation WHERE deployment = ?').pluck().get(name) as string | undefined
  const runRows = db
    .prepare(
      'SELECT instance, service, state, exit_code, message, outputs, started_at, ended_at FROM runs WHERE deployment = ?',
    )
    .all(name) as RunRow[]
  const instanceRows = db
    .prepare(
      'SELECT id, role, idx, services, token_hash, node_token_hash, exchanged_at, node_token_used_at, facts, address, first_contact, last_contact, site, fed_at FROM instances WHERE deployment = ?',
    )
    .all(name) as InstanceRow[]
  return registrationFromRows(name, row, runRows, instanceRows, site)
}

/** The rows of one deployment (either store's) → its record. Columns a store lacks may be absent. */
export function registrationFromRows(
  name: string,
  row: DeploymentRow,
  runRows: RunRow[],
  instanceRows: Array<Omit<InstanceRow, 'site' | 'fed_at'> & Partial<Pick<InstanceRow, 'site' | 'fed_at'>>>,
  site?: string,
): RegistrationRecord {
  const runs = new Map<string, Record<string, ServiceRun>>()
  for (const r of runRows) {
    const forInstance = runs.get(r.instance) ?? {}
    forInstance[r.service] = runFromRow(r)
    runs.set(r.instance, forInstance)
  }
  const instances: InstanceRecord[] = instanceRows.map((r) => ({
    id: r.id,
    role: r.role,
    index: r.idx,
    // Stored as validated at registration, defaults filled in.
    services: JSON.parse(r.services) as ServiceSpec[],
    tokenHash: r.token_hash,
    ...(r.node_token_hash === null ? {} : {nodeTokenHash: r.node_token_hash}),
    ...(r.exchanged_at === null ? {} : {exchangedAt: r.exchanged_at}),
    ...(r.node_token_used_at === null ? {} : {nodeTokenUsedAt: r.node_token_used_at}),
    facts: JSON.parse(r.facts) as Record<string, FactValue>,
    ...(r.address === null ? {} : {address: r.address}),
    ...(r.first_contact === null ? {} : {firstContact: r.first_contact}),
    ...(r.last_contact === null ? {} : {lastContact: r.last_contact}),
    runs: runs.get(r.id) ?? {},
    ...(r.site == null ? {} : {site: r.site}),
    ...(r.fed_at == null ? {} : {fedAt: r.fed_at}),
  }))
  return {
    name,
    registeredAt: row.registered_at,
    ...(row.startup_timeout_sec === null ? {} : {startupTimeoutSec: row.startup_timeout_sec}),
    inputs: JSON.parse(row.inputs) as Inputs,
    instances,
    ...(site === undefined ? {} : {site}),
  }
}

export interface DeploymentRow {
  registered_at: number
  startup_timeout_sec: number | null
  inputs: string
}

export interface InstanceRow {
  id: string
  role: string
  idx: number
  services: string
  token_hash: Buffer
  node_token_hash: Buffer | null
  exchanged_at: number | null
  node_token_used_at: number | null
  facts: string
  address: string | null
  first_contact: number | null
  last_contact: number | null
  site: string | null
  fed_at: number | null
}

export interface RunRow {
  instance: string
  service: string
  state: string | null
  exit_code: number | null
  message: string | null
  outputs: string
  started_at: number | null
  ended_at: number | null
}

export function runFromRow(r: Omit<RunRow, 'instance'>): ServiceRun {
  return {
    ...(r.state === null ? {} : {state: r.state as ServiceState}),
    ...(r.exit_code === null ? {} : {exitCode: r.exit_code}),
    ...(r.message === null ? {} : {message: r.message}),
    outputs: JSON.parse(r.outputs) as Record<string, string>,
    ...(r.started_at === null ? {} : {startedAt: r.started_at}),
    ...(r.ended_at === null ? {} : {endedAt: r.ended_at}),
  }
}

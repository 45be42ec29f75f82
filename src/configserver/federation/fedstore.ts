/**
 * The federation's SQL, run inside the config server's transactions (store.ts `write`): the outbox,
 * written with the change it tells; the positions applied per origin; the states of other sites'
 * instances, replaced as their messages are applied; and snapshots of this site's instances.
 */
import {runFromRow, type InstanceRow as StoredInstanceRow, type RunRow as StoredRunRow} from '../load.js'
import {randomUUID} from 'node:crypto'
import type {FederationSpec} from '../protocol.js'
import type {FactValue, ServiceRun} from '../records.js'
import {type Db, stmt} from '../store.js'
import type {Position} from './apply.js'
import {open, seal, signBody, type SiteKeys} from './keys.js'
import {type InstanceState, type Message, sealContext} from './messages.js'

export interface FederationRow {
  site: string
  signingKey: string
  peers: Record<string, string>
  sealKey: string
  epoch: string
  lastSeq: number
}

/** An instance's state in the clear: what the origin's server holds of it. */
export interface RemoteInstance {
  address?: string
  facts: Record<string, FactValue>
  firstContact?: number
  lastContact?: number
  runs: Record<string, ServiceRun>
}

export interface OutboxRow {
  seq: number
  body: Buffer
  signature: Buffer
}

export function federationRow(db: Db, deployment: string): FederationRow | undefined {
  const row = stmt(
    db,
    'SELECT site, signing_key, peers, seal_key, epoch, last_seq FROM federation WHERE deployment = ?',
  ).get(deployment) as
    {site: string; signing_key: string; peers: string; seal_key: string; epoch: string; last_seq: number} | undefined
  if (!row) return undefined
  return {
    site: row.site,
    signingKey: row.signing_key,
    peers: JSON.parse(row.peers) as Record<string, string>,
    sealKey: row.seal_key,
    epoch: row.epoch,
    lastSeq: row.last_seq,
  }
}

/** Record a registration's federation (keeping the epoch and sequence), or forget it with its outbox and positions. */
export function saveFederation(db: Db, deployment: string, spec: FederationSpec | undefined): void {
  if (!spec) {
    for (const table of ['federation', 'fed_outbox', 'fed_applied'])
      stmt(db, `DELETE FROM ${table} WHERE deployment = ?`).run(deployment)
    return
  }
  stmt(
    db,
    `INSERT INTO federation (deployment, site, signing_key, peers, seal_key, epoch) VALUES (?, ?, ?, ?, ?, ?)
     ON CONFLICT (deployment) DO UPDATE SET site = excluded.site, signing_key = excluded.signing_key,
       peers = excluded.peers, seal_key = excluded.seal_key`,
  ).run(deployment, spec.site, spec.signingKey, JSON.stringify(spec.peers), spec.sealKey, randomUUID())
}

/** Number, sign and queue a message about this site's instances; `make` builds it with its sequence. */
export function enqueue(
  db: Db,
  deployment: string,
  keys: SiteKeys,
  make: (seq: number, epoch: string) => Message,
): number {
  const {seq, epoch} = stmt(
    db,
    'UPDATE federation SET last_seq = last_seq + 1 WHERE deployment = ? RETURNING last_seq AS seq, epoch',
  ).get(deployment) as {seq: number; epoch: string}
  const body = Buffer.from(JSON.stringify(make(seq, epoch)))
  stmt(db, 'INSERT INTO fed_outbox (deployment, seq, body, signature) VALUES (?, ?, ?, ?)').run(
    deployment,
    seq,
    body,
    signBody(body, keys.signing),
  )
  return seq
}

export function outboxAfter(db: Db, deployment: string, after: number): OutboxRow[] {
  return stmt(db, 'SELECT seq, body, signature FROM fed_outbox WHERE deployment = ? AND seq > ? ORDER BY seq').all(
    deployment,
    after,
  ) as OutboxRow[]
}

/** The broker confirmed every message up to `seq`. */
export function dropConfirmed(db: Db, deployment: string, seq: number): number {
  return stmt(db, 'DELETE FROM fed_outbox WHERE deployment = ? AND seq <= ?').run(deployment, seq).changes
}

export function positionOf(db: Db, deployment: string, origin: string): Position | undefined {
  return stmt(db, 'SELECT epoch, seq FROM fed_applied WHERE deployment = ? AND origin = ?').get(deployment, origin) as
    Position | undefined
}

export function setPosition(db: Db, deployment: string, origin: string, position: Position): void {
  stmt(
    db,
    `INSERT INTO fed_applied (deployment, origin, epoch, seq) VALUES (?, ?, ?, ?)
     ON CONFLICT (deployment, origin) DO UPDATE SET epoch = excluded.epoch, seq = excluded.seq`,
  ).run(deployment, origin, position.epoch, position.seq)
}

/** The columns of an instance and of its service runs that cross to other sites. */
type InstanceRow = Pick<StoredInstanceRow, 'facts' | 'address' | 'first_contact' | 'last_contact'>
type RunRow = Omit<StoredRunRow, 'instance'>

/** One instance as stored, in the clear; undefined when it is gone. */
export function readInstance(db: Db, deployment: string, id: string): RemoteInstance | undefined {
  const row = stmt(
    db,
    'SELECT facts, address, first_contact, last_contact FROM instances WHERE deployment = ? AND id = ?',
  ).get(deployment, id) as InstanceRow | undefined
  if (!row) return undefined
  const runs: Record<string, ServiceRun> = {}
  const rows = stmt(
    db,
    'SELECT service, state, exit_code, message, outputs, started_at, ended_at FROM runs WHERE deployment = ? AND instance = ?',
  ).all(deployment, id) as RunRow[]
  for (const r of rows) runs[r.service] = runFromRow(r)
  return {
    facts: JSON.parse(row.facts) as Record<string, FactValue>,
    ...(row.address === null ? {} : {address: row.address}),
    ...(row.first_contact === null ? {} : {firstContact: row.first_contact}),
    ...(row.last_contact === null ? {} : {lastContact: row.last_contact}),
    runs,
  }
}

/** The ids of the instances `site` owns here. */
export function idsOfSite(db: Db, deployment: string, site: string): string[] {
  return stmt(db, 'SELECT id FROM instances WHERE deployment = ? AND site = ? ORDER BY id')
    .pluck()
    .all(deployment, site) as string[]
}

/** Replace the state of an instance of `origin` with what its site sent; 0 when no such instance is here. */
export function writeRemote(
  db: Db,
  deployment: string,
  origin: string,
  id: string,
  state: RemoteInstance,
  sentAt: number,
): number {
  const changed = stmt(
    db,
    `UPDATE instances SET facts = ?, address = ?, first_contact = ?, last_contact = ?, fed_at = ?
     WHERE deployment = ? AND id = ? AND site = ?`,
  ).run(
    JSON.stringify(state.facts),
    state.address ?? null,
    state.firstContact ?? null,
    state.lastContact ?? null,
    sentAt,
    deployment,
    id,
    origin,
  ).changes
  if (changed === 0) return 0
  const services = JSON.parse(
    stmt(db, 'SELECT services FROM instances WHERE deployment = ? AND id = ?').pluck().get(deployment, id) as string,
  ) as Array<{name: string}>
  const known = new Set(services.map((s) => s.name))
  stmt(db, 'DELETE FROM runs WHERE deployment = ? AND instance = ?').run(deployment, id)
  const insert = stmt(
    db,
    `INSERT INTO runs (deployment, instance, service, state, exit_code, message, outputs, started_at, ended_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  )
  for (const [service, run] of Object.entries(state.runs)) {
    // A service the registration here does not list (registered at one site before the other) waits for the next state.
    if (!known.has(service)) continue
    insert.run(
      deployment,
      id,
      service,
      run.state ?? null,
      run.exitCode ?? null,
      run.message ?? null,
      JSON.stringify(run.outputs),
      run.startedAt ?? null,
      run.endedAt ?? null,
    )
  }
  return changed
}

/** A tombstone: the instance of `origin` is gone from every site. */
export function removeRemote(db: Db, deployment: string, origin: string, id: string): number {
  return stmt(db, 'DELETE FROM instances WHERE deployment = ? AND id = ? AND site = ?').run(deployment, id, origin)
    .changes
}

/** What crosses of an instance: facts and runs as they are, the outputs of each service sealed. */
export function sealState(
  state: RemoteInstance,
  key: Buffer,
  deployment: string,
  origin: string,
  id: string,
): InstanceState {
  const runs: InstanceState['runs'] = {}
  for (const [service, run] of Object.entries(state.runs)) {
    const {outputs, ...rest} = run
    runs[service] = {...rest, sealed: seal(JSON.stringify(outputs), key, sealContext(deployment, origin, id, service))}
  }
  return {...state, runs}
}

/** The state in the clear, or undefined when a sealed part does not open with this deployment's key. */
export function openState(
  state: InstanceState,
  key: Buffer,
  deployment: string,
  origin: string,
  id: string,
): RemoteInstance | undefined {
  const runs: Record<string, ServiceRun> = {}
  for (const [service, run] of Object.entries(state.runs)) {
    const {sealed, ...rest} = run
    const plain = open(sealed, key, sealContext(deployment, origin, id, service))
    if (plain === undefined) return undefined
    let outputs: unknown
    try {
      outputs = JSON.parse(plain)
    } catch {
      return undefined
    }
    if (!isStringRecord(outputs)) return undefined
    runs[service] = {...rest, outputs}
  }
  return {...state, runs}
}

function isStringRecord(value: unknown): value is Record<string, string> {
  return (
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    Object.values(value).every((v) => typeof v === 'string')
  )
}

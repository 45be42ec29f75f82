/**
 * The config server's durable state: one SQLite file (WAL, synchronous=FULL) under the state dir.
 *
 * Writes go through `write(op, apply)`: ops queued in the same turn of the event loop run in one
 * transaction (group commit), so a thousand phone-homes cost one fsync, not a thousand. A caller is
 * answered only after the commit, so every acknowledged write survives a crash; `apply` then
 * updates the in-memory model, in commit order, so memory never shows an uncommitted value.
 */
import fs from 'node:fs'
import path from 'node:path'
import Database from 'better-sqlite3'
import {bootstrapUse, EXCHANGED_HINT, EXCHANGED_MESSAGE} from './auth.js'
import {HttpError} from './errors.js'
import type {ServiceSpec} from './protocol.js'
import type {DeploymentRecord, FactValue, Inputs, InstanceRecord, ServiceRun, ServiceState} from './model.js'

const SCHEMA_VERSION = 2

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS deployments (
  name TEXT PRIMARY KEY,
  registered_at INTEGER NOT NULL,
  startup_timeout_sec INTEGER,
  inputs TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS instances (
  deployment TEXT NOT NULL REFERENCES deployments(name) ON DELETE CASCADE,
  id TEXT NOT NULL,
  role TEXT NOT NULL,
  idx INTEGER NOT NULL,
  services TEXT NOT NULL,
  token_hash BLOB NOT NULL,
  node_token_hash BLOB,
  exchanged_at INTEGER,
  node_token_used_at INTEGER,
  facts TEXT NOT NULL DEFAULT '{}',
  address TEXT,
  first_contact INTEGER,
  last_contact INTEGER,
  PRIMARY KEY (deployment, id)
) STRICT;
CREATE TABLE IF NOT EXISTS runs (
  deployment TEXT NOT NULL,
  instance TEXT NOT NULL,
  service TEXT NOT NULL,
  state TEXT,
  exit_code INTEGER,
  message TEXT,
  outputs TEXT NOT NULL DEFAULT '{}',
  started_at INTEGER,
  ended_at INTEGER,
  PRIMARY KEY (deployment, instance, service),
  FOREIGN KEY (deployment, instance) REFERENCES instances(deployment, id) ON DELETE CASCADE
) STRICT;
`

/** Schema 1 had only the bootstrap token: its instances count as not yet exchanged. */
const MIGRATE_FROM_1 = `
ALTER TABLE instances ADD COLUMN node_token_hash BLOB;
ALTER TABLE instances ADD COLUMN exchanged_at INTEGER;
ALTER TABLE instances ADD COLUMN node_token_used_at INTEGER;
UPDATE meta SET value = '2' WHERE key = 'schema';
`

export type Db = Database.Database

const statements = new WeakMap<Db, Map<string, Database.Statement>>()

/** A prepared statement, compiled once per database. */
export function stmt(db: Db, sql: string): Database.Statement {
  let cache = statements.get(db)
  if (!cache) statements.set(db, (cache = new Map()))
  let statement = cache.get(sql)
  if (!statement) cache.set(sql, (statement = db.prepare(sql)))
  return statement
}

interface Pending {
  op: (db: Db) => unknown
  apply?: (result: unknown) => void
  resolve: (value: unknown) => void
  reject: (error: unknown) => void
}

export class Store {
  readonly db: Db
  private queue: Pending[] = []
  private scheduled = false
  private closed = false

  constructor(stateDir: string) {
    fs.mkdirSync(stateDir, {recursive: true, mode: 0o700})
    const file = path.join(stateDir, 'configserver.sqlite')
    this.db = new Database(file)
    fs.chmodSync(file, 0o600)
    this.db.pragma('journal_mode = WAL')
    this.db.pragma('synchronous = FULL')
    this.db.pragma('foreign_keys = ON')
    this.db.pragma('busy_timeout = 5000')
    this.db.exec(SCHEMA)
    const version = this.db.prepare(`SELECT value FROM meta WHERE key = 'schema'`).pluck().get() as string | undefined
    if (version === undefined)
      this.db.prepare(`INSERT INTO meta (key, value) VALUES ('schema', ?)`).run(String(SCHEMA_VERSION))
    else if (Number(version) > SCHEMA_VERSION)
      throw new Error(`${file} was written by a newer nodeset (schema ${version}); upgrade nodeset to use it`)
    else if (Number(version) === 1) this.db.transaction(() => this.db.exec(MIGRATE_FROM_1))()
  }

  /**
   * Queue a write; it commits with the others of this turn, and `apply` runs after the commit.
   * A failing op never undoes the others: a single SQL statement fails alone, and an op of several
   * statements (`several: true`) runs in its own savepoint.
   */
  write<T>(op: (db: Db) => T, apply?: (result: T) => void, several = false): Promise<T> {
    if (this.closed) return Promise.reject(new Error('the config server is shutting down'))
    return new Promise<T>((resolve, reject) => {
      const run = several ? (db: Db) => db.transaction(op)(db) : op
      this.queue.push({
        op: run,
        apply: apply as ((result: unknown) => void) | undefined,
        resolve: resolve as (value: unknown) => void,
        reject,
      })
      if (!this.scheduled) {
        this.scheduled = true
        setImmediate(() => this.flush())
      }
    })
  }

  /** Commit everything queued, now. */
  flush(): void {
    this.scheduled = false
    const batch = this.queue
    this.queue = []
    if (batch.length === 0) return
    const outcomes: Array<{ok: true; value: unknown} | {ok: false; error: unknown}> = []
    try {
      this.db.transaction(() => {
        for (const item of batch) {
          try {
            outcomes.push({ok: true, value: item.op(this.db)})
          } catch (error) {
            outcomes.push({ok: false, error})
          }
        }
      })()
    } catch (error) {
      for (const item of batch) item.reject(error)
      return
    }
    batch.forEach((item, i) => {
      const outcome = outcomes[i]
      if (!outcome.ok) return item.reject(outcome.error)
      try {
        item.apply?.(outcome.value)
        item.resolve(outcome.value)
      } catch (error) {
        item.reject(error)
      }
    })
  }

  close(): void {
    if (this.closed) return
    this.flush()
    this.closed = true
    this.db.close()
  }

  deploymentNames(): string[] {
    return this.db.prepare('SELECT name FROM deployments ORDER BY name').pluck().all() as string[]
  }

  /** Read one deployment back, as committed. */
  load(db: Db, name: string): DeploymentRecord | undefined {
    const row = db
      .prepare('SELECT registered_at, startup_timeout_sec, inputs FROM deployments WHERE name = ?')
      .get(name) as {registered_at: number; startup_timeout_sec: number | null; inputs: string} | undefined
    if (!row) return undefined
    const runs = new Map<string, Record<string, ServiceRun>>()
    const runRows = db
      .prepare(
        'SELECT instance, service, state, exit_code, message, outputs, started_at, ended_at FROM runs WHERE deployment = ?',
      )
      .all(name) as RunRow[]
    for (const r of runRows) {
      const forInstance = runs.get(r.instance) ?? {}
      forInstance[r.service] = runFromRow(r)
      runs.set(r.instance, forInstance)
    }
    const instanceRows = db
      .prepare(
        'SELECT id, role, idx, services, token_hash, node_token_hash, exchanged_at, node_token_used_at, facts, address, first_contact, last_contact FROM instances WHERE deployment = ?',
      )
      .all(name) as InstanceRow[]
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
    }))
    return {
      name,
      registeredAt: row.registered_at,
      ...(row.startup_timeout_sec === null ? {} : {startupTimeoutSec: row.startup_timeout_sec}),
      inputs: JSON.parse(row.inputs) as Inputs,
      instances,
    }
  }
}

interface InstanceRow {
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
}

interface RunRow {
  instance: string
  service: string
  state: string | null
  exit_code: number | null
  message: string | null
  outputs: string
  started_at: number | null
  ended_at: number | null
}

function runFromRow(r: RunRow): ServiceRun {
  return {
    ...(r.state === null ? {} : {state: r.state as ServiceState}),
    ...(r.exit_code === null ? {} : {exitCode: r.exit_code}),
    ...(r.message === null ? {} : {message: r.message}),
    outputs: JSON.parse(r.outputs) as Record<string, string>,
    ...(r.started_at === null ? {} : {startedAt: r.started_at}),
    ...(r.ended_at === null ? {} : {endedAt: r.ended_at}),
  }
}

/** The writes, as SQL run inside `Store.write`. Each returns how many rows it touched. */
export const writes = {
  facts(
    db: Db,
    deployment: string,
    id: string,
    facts: Record<string, FactValue>,
    address: string,
    now: number,
  ): number {
    return stmt(
      db,
      `UPDATE instances SET facts = json_patch(facts, ?), address = ?, first_contact = COALESCE(first_contact, ?), last_contact = ?
       WHERE deployment = ? AND id = ?`,
    ).run(JSON.stringify(facts), address, now, now, deployment, id).changes
  },

  /**
   * A phone-home with the bootstrap token: record a new node token (its hash) as `bootstrapUse` allows,
   * or throw the 401. Decided on the committed row, so two phone-homes racing cannot both pass a check
   * made in memory. Returns undefined when the instance is unknown (the facts write then finds no row).
   */
  exchange(
    db: Db,
    deployment: string,
    id: string,
    nodeTokenHash: Buffer,
    now: number,
    graceMs: number,
  ): {exchangedAt: number} | undefined {
    const row = stmt(db, 'SELECT exchanged_at, node_token_used_at FROM instances WHERE deployment = ? AND id = ?').get(
      deployment,
      id,
    ) as {exchanged_at: number | null; node_token_used_at: number | null} | undefined
    if (!row) return undefined
    const state = {
      ...(row.exchanged_at === null ? {} : {exchangedAt: row.exchanged_at}),
      ...(row.node_token_used_at === null ? {} : {nodeTokenUsedAt: row.node_token_used_at}),
    }
    if (bootstrapUse(state, now, graceMs) === 'refuse')
      throw new HttpError(401, EXCHANGED_MESSAGE, {hint: EXCHANGED_HINT}, {'www-authenticate': 'Bearer'})
    // The grace counts from the first exchange: retries cannot stretch it.
    const exchangedAt = row.exchanged_at ?? now
    stmt(db, 'UPDATE instances SET node_token_hash = ?, exchanged_at = ? WHERE deployment = ? AND id = ?').run(
      nodeTokenHash,
      exchangedAt,
      deployment,
      id,
    )
    return {exchangedAt}
  },

  /** The node token's first use closes the grace for retried exchanges. */
  nodeTokenUsed(db: Db, deployment: string, id: string, nodeTokenHash: Buffer, now: number): number {
    return stmt(
      db,
      'UPDATE instances SET node_token_used_at = ? WHERE deployment = ? AND id = ? AND node_token_hash = ? AND node_token_used_at IS NULL',
    ).run(now, deployment, id, nodeTokenHash).changes
  },

  run(
    db: Db,
    deployment: string,
    id: string,
    service: string,
    report: {state: ServiceState; exitCode?: number; message?: string; outputs: Record<string, string>},
    now: number,
  ): number {
    return stmt(
      db,
      `INSERT INTO runs (deployment, instance, service, state, exit_code, message, outputs, started_at, ended_at)
       VALUES (@deployment, @id, @service, @state, @exitCode, @message, @outputs, @now, @ended)
       ON CONFLICT (deployment, instance, service) DO UPDATE SET
         state = excluded.state, exit_code = excluded.exit_code, message = excluded.message,
         outputs = json_patch(runs.outputs, excluded.outputs),
         started_at = COALESCE(runs.started_at, excluded.started_at), ended_at = excluded.ended_at`,
    ).run({
      deployment,
      id,
      service,
      state: report.state,
      exitCode: report.exitCode ?? null,
      message: report.message ?? null,
      outputs: JSON.stringify(report.outputs),
      now,
      ended: report.state === 'running' ? null : now,
    }).changes
  },

  deleteDeployment(db: Db, deployment: string): number {
    return stmt(db, 'DELETE FROM deployments WHERE name = ?').run(deployment).changes
  },

  deleteInstance(db: Db, deployment: string, id: string): number {
    return stmt(db, 'DELETE FROM instances WHERE deployment = ? AND id = ?').run(deployment, id).changes
  },
}

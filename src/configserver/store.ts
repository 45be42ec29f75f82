/**
 * The config server's durable state: one SQLite file (WAL) under the state dir.
 *
 * Writes go through `write(op, apply)`: ops queued in the same turn of the event loop run in one
 * transaction (group commit), so a thousand phone-homes cost one fsync, not a thousand. A caller is
 * answered only after its commit is on disk, so every acknowledged write survives a crash; `apply`
 * then updates the in-memory model, in commit order, so memory never shows a value a crash could lose.
 *
 * The fsync that makes a commit durable runs off the event loop: the connection is synchronous=NORMAL
 * (in WAL mode: checkpoints sync, commits do not) and the store itself fdatasyncs the WAL after each
 * commit, on libuv's thread pool, before answering, which is what synchronous=FULL adds to NORMAL. While one
 * sync is in flight the requests keep being read, and what arrives meanwhile waits for it, then
 * commits at once and is covered by the next sync, which covers every commit before it (the WAL is
 * appended to, and it is rewritten from its start only after a checkpoint, which syncs the database
 * first). One commit per sync writes a page that many of the waiting writes changed once, not once
 * per turn of the event loop. A federated server's outbox publishes what it reads back right after
 * a commit: there every commit syncs inline (FULL).
 *
 * A damaged state never starts silently: the file is checked (`PRAGMA quick_check`) when opened, and
 * a marker beside it (`configserver.id`, the state's id) tells a file that went missing or empty, or
 * was replaced, from a first start.
 */
import {randomUUID} from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import Database from 'better-sqlite3'
import {FEDERATION_SCHEMA} from './federation/schema.js'
import {loadRegistration} from './load.js'
import type {RegistrationRecord} from './records.js'

const SCHEMA_VERSION = 3

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
  site TEXT,
  fed_at INTEGER,
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
${FEDERATION_SCHEMA}`

/** Schema 1 had only the bootstrap token: its instances count as not yet exchanged. */
const MIGRATE_FROM_1 = `
ALTER TABLE instances ADD COLUMN node_token_hash BLOB;
ALTER TABLE instances ADD COLUMN exchanged_at INTEGER;
ALTER TABLE instances ADD COLUMN node_token_used_at INTEGER;
UPDATE meta SET value = '2' WHERE key = 'schema';
`

/** Schema 2 knew no sites: every instance is the server's own (the federation tables come with SCHEMA). */
const MIGRATE_FROM_2 = `
ALTER TABLE instances ADD COLUMN site TEXT;
ALTER TABLE instances ADD COLUMN fed_at INTEGER;
UPDATE meta SET value = '3' WHERE key = 'schema';
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

/** The state cannot be used as it is: the message names the file and says what to do. */
export class StateError extends Error {}

export interface StoreOptions {
  /** Told about an error of an `apply` after its commit (the write is answered as done: it is). */
  onApplyError?: (error: unknown) => void
  /** How the WAL is made durable after a commit (default: fs.fdatasync, on the thread pool). */
  syncWal?: (fd: number, done: (error: NodeJS.ErrnoException | null) => void) => void
}

type Outcome = {ok: true; value: unknown} | {ok: false; error: unknown}

/** A commit waiting for the sync that makes it durable. */
interface Committed {
  batch: Pending[]
  outcomes: Outcome[]
}

export class Store {
  readonly db: Db
  readonly file: string
  private queue: Pending[] = []
  private scheduled = false
  private closed = false
  /** The WAL, opened by the store to sync it; undefined: SQLite syncs every commit itself (FULL). */
  private walFd?: number
  private unsynced: Committed[] = []
  /** The commits the sync in flight covers. */
  private inFlight?: Committed[]
  /** A sync runs on the thread pool (its commits may have been settled meanwhile, by one on this thread). */
  private syncRunning = false
  private walReleased = false
  /** A sync failed: what is committed may not be on disk, so nothing more is accepted. */
  private failure?: Error

  constructor(
    stateDir: string,
    private readonly options: StoreOptions = {},
  ) {
    fs.mkdirSync(stateDir, {recursive: true, mode: 0o700})
    const file = (this.file = path.join(stateDir, 'configserver.sqlite'))
    const marker = path.join(stateDir, 'configserver.id')
    const expected = readMarker(marker)
    const size = fs.statSync(file, {throwIfNoEntry: false})?.size
    const startOver = `to start over with no deployments, move ${file} and ${marker} away`
    if (size === 0)
      throw new StateError(
        `${file} is empty (0 bytes)${expected ? `, but ${marker} says this directory held a config server state` : ''}: ` +
          `the file was truncated or replaced. Restore it from a backup; ${startOver}`,
      )
    if (size === undefined && expected)
      throw new StateError(
        `${file} is missing, but ${marker} says this directory held a config server state. ` +
          `Restore the file from a backup; to start over with no deployments, delete ${marker}`,
      )
    const damaged = (what: string) =>
      new StateError(
        `${file} is damaged (${what}); the config server will not start on it. Restore it from a backup ` +
          `(sqlite3 ${file} .recover may save what is left); ${startOver}`,
      )
    try {
      this.db = new Database(file)
    } catch (error) {
      throw damaged((error as Error).message)
    }
    try {
      fs.chmodSync(file, 0o600)
      this.db.pragma('journal_mode = WAL')
      this.db.pragma('synchronous = NORMAL')
      // A checkpoint copies each page changed since the last one into the database, once, however often
      // it changed: at SQLite's default (every 1,000 WAL pages) phone-homes to scattered rows make it copy
      // nearly every page each time. Every 10,000 pages (a WAL of up to 40 MiB) copies each page once per
      // ten times as many writes.
      this.db.pragma('wal_autocheckpoint = 10000')
      // The pages stay in SQLite's own cache (up to 64 MiB, taken as needed): past its default of 2 MiB
      // (about 7,000 instances) each phone-home reread half a page from the file, a syscall each.
      this.db.pragma('cache_size = -65536')
      this.db.pragma('foreign_keys = ON')
      this.db.pragma('busy_timeout = 5000')
      const check = (this.db.pragma('quick_check') as Array<{quick_check: string}>).map((row) => row.quick_check)
      if (check.length !== 1 || check[0] !== 'ok') throw damaged(check.slice(0, 3).join('; '))
      this.db.exec(SCHEMA)
      this.migrate(file)
      const id = this.stateId()
      if (expected && expected !== id)
        throw new StateError(
          `${file} is not the state this directory had (${marker} names state ${expected}, the file is state ${id}). ` +
            `Put the right file back; ${startOver}`,
        )
      if (!expected) fs.writeFileSync(marker, id + '\n', {mode: 0o600})
      this.openWal(stateDir)
    } catch (error) {
      this.releaseWal()
      this.db.close()
      if (error instanceof StateError || /newer nodeset/.test((error as Error).message)) throw error
      throw damaged((error as Error).message)
    }
  }

  private migrate(file: string): void {
    const version = this.db.prepare(`SELECT value FROM meta WHERE key = 'schema'`).pluck().get() as string | undefined
    if (version === undefined)
      this.db.prepare(`INSERT INTO meta (key, value) VALUES ('schema', ?)`).run(String(SCHEMA_VERSION))
    else if (Number(version) > SCHEMA_VERSION)
      throw new Error(`${file} was written by a newer nodeset (schema ${version}); upgrade nodeset to use it`)
    else
      this.db.transaction(() => {
        if (Number(version) <= 1) this.db.exec(MIGRATE_FROM_1)
        if (Number(version) <= 2) this.db.exec(MIGRATE_FROM_2)
      })()
  }

  /** The state's id, made at its first start (a state from before ids gets one now). */
  private stateId(): string {
    const id = this.db.prepare(`SELECT value FROM meta WHERE key = 'state_id'`).pluck().get() as string | undefined
    if (id !== undefined) return id
    const made = randomUUID()
    this.db.prepare(`INSERT INTO meta (key, value) VALUES ('state_id', ?)`).run(made)
    return made
  }

  /**
   * The WAL file as SQLite made it (the schema was written: it exists), and its directory entry on
   * disk, as SQLite itself syncs a new WAL's directory. SQLite keeps that file while its connection
   * is open, so this descriptor stays the WAL's.
   */
  private openWal(stateDir: string): void {
    this.walFd = fs.openSync(`${this.file}-wal`, 'r+')
    const dir = fs.openSync(stateDir, 'r')
    try {
      fs.fsyncSync(dir)
    } finally {
      fs.closeSync(dir)
    }
  }

  private closeWal(): void {
    if (this.walFd === undefined || !this.walReleased) return
    fs.closeSync(this.walFd)
    this.walFd = undefined
  }

  /** From now on SQLite syncs every commit before it returns (synchronous=FULL): what is committed is durable at once. */
  syncEachCommit(): void {
    this.flush()
    this.syncNow()
    this.db.pragma('synchronous = FULL')
    this.releaseWal()
  }

  /**
   * Queue a write; it commits with the others of this turn, and `apply` runs once the commit is on
   * disk. A failing op never undoes the others: a single SQL statement fails alone, and an op of
   * several statements (`several: true`) runs in its own savepoint.
   */
  write<T>(op: (db: Db) => T, apply?: (result: T) => void, several = false): Promise<T> {
    if (this.closed) return Promise.reject(new Error('the config server is shutting down'))
    if (this.failure) return Promise.reject(this.failure)
    return new Promise<T>((resolve, reject) => {
      const run = several ? (db: Db) => this.savepoint(db, op) : op
      this.queue.push({
        op: run,
        apply: apply as ((result: unknown) => void) | undefined,
        resolve: resolve as (value: unknown) => void,
        reject,
      })
      // While a sync is in flight, what arrives waits for it and commits when it returns.
      if (!this.scheduled && !this.syncPending()) {
        this.scheduled = true
        setImmediate(() => this.flush())
      }
    })
  }

  /** `op` in a savepoint of the batch's transaction: its statements stand or fall together. */
  private savepoint<T>(db: Db, op: (db: Db) => T): T {
    stmt(db, 'SAVEPOINT op').run()
    try {
      const value = op(db)
      stmt(db, 'RELEASE op').run()
      return value
    } catch (error) {
      // An error that ended the whole transaction (disk full) left no savepoint to return to.
      if (db.inTransaction) {
        stmt(db, 'ROLLBACK TO op').run()
        stmt(db, 'RELEASE op').run()
      }
      throw error
    }
  }

  /** Commit everything queued, now; its callers are answered once the commit is on disk. */
  flush(): void {
    this.scheduled = false
    const batch = this.queue
    this.queue = []
    if (batch.length === 0) return
    if (this.failure) {
      for (const item of batch) item.reject(this.failure)
      return
    }
    const outcomes: Outcome[] = []
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
    if (this.walFd === undefined || this.walReleased) return this.settle({batch, outcomes})
    this.unsynced.push({batch, outcomes})
    this.syncSoon()
  }

  /** A sync runs that the store itself started (not SQLite's own, under FULL): commits wait for it. */
  private syncPending(): boolean {
    return this.syncRunning && this.inFlight !== undefined && !this.walReleased
  }

  /** Sync the WAL for the commits made so far, unless a sync is in flight (the next one covers them). */
  private syncSoon(): void {
    if (this.syncRunning || this.unsynced.length === 0 || this.walFd === undefined || this.walReleased) return
    const covered = (this.inFlight = this.unsynced)
    this.unsynced = []
    this.syncRunning = true
    const sync = this.options.syncWal ?? fs.fdatasync
    sync(this.walFd, (error) => {
      this.syncRunning = false
      // Settled meanwhile by a sync on this thread (closing): only the descriptor is left to close.
      if (this.inFlight !== covered) return this.closeWal()
      this.inFlight = undefined
      if (error) this.failed(error, covered)
      else for (const commit of covered) this.settle(commit)
      // The writes that waited for this sync commit now (and start the next one), or an earlier commit is synced.
      if (this.queue.length > 0) this.flush()
      else this.syncSoon()
    })
  }

  /** Sync what is committed, the commits of a sync in flight too, on this thread (closing, or switching to FULL). */
  private syncNow(): void {
    const covered = [...(this.inFlight ?? []), ...this.unsynced]
    this.inFlight = undefined
    this.unsynced = []
    if (this.walFd === undefined || covered.length === 0) return
    try {
      fs.fdatasyncSync(this.walFd)
    } catch (error) {
      return this.failed(error as NodeJS.ErrnoException, covered)
    }
    for (const commit of covered) this.settle(commit)
  }

  /** Close the WAL's descriptor once no sync uses it (one in flight closes it when it returns). */
  private releaseWal(): void {
    this.walReleased = true
    if (!this.syncRunning) this.closeWal()
  }

  /** The WAL cannot be synced: the commits may be lost, so they are refused, and so is every write after them. */
  private failed(error: NodeJS.ErrnoException, commits: Committed[]): void {
    this.failure ??= Object.assign(new Error(`cannot sync ${this.file}-wal to disk: ${error.message}`), {
      code: 'SQLITE_IOERR_FSYNC',
      cause: error,
    })
    for (const {batch} of [...commits, ...this.unsynced]) for (const item of batch) item.reject(this.failure)
    this.unsynced = []
  }

  /** A durable commit: each op's `apply`, in order, then its answer. */
  private settle({batch, outcomes}: Committed): void {
    batch.forEach((item, i) => {
      const outcome = outcomes[i]
      if (!outcome.ok) return item.reject(outcome.error)
      try {
        item.apply?.(outcome.value)
      } catch (error) {
        // Committed is committed: the caller is answered as such, and the error goes to the log.
        this.options.onApplyError?.(error)
      }
      item.resolve(outcome.value)
    })
  }

  close(): void {
    if (this.closed) return
    this.flush()
    this.syncNow()
    this.closed = true
    this.releaseWal()
    this.db.close()
  }

  deploymentNames(): string[] {
    return this.db.prepare('SELECT name FROM deployments ORDER BY name').pluck().all() as string[]
  }

  /** Read one deployment back, as committed. */
  load(db: Db, name: string): RegistrationRecord | undefined {
    return loadRegistration(db, name)
  }
}

function readMarker(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8').trim() || undefined
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new StateError(`cannot read ${file}: ${(error as Error).message}`)
  }
}

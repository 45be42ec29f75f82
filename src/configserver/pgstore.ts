// Over 300 lines: the batched commits, the listening connection and the store methods share one queue and one pool.
/**
 * The PostgreSQL store: replicas of the config server share one database. Writes queued in the same
 * turn of the event loop commit in one transaction (each op in its own savepoint, so a failing op
 * never undoes the others); a caller is answered after the commit. The transaction also sends
 * NOTIFY (a wake-up: the replica and the deployment, with the instances when they fit), so the other
 * replicas re-read the deployment and re-check their long-polls. A replica that loses its listening
 * connection reconnects and re-reads everything it holds, since it may have missed notifications.
 */
import {randomUUID} from 'node:crypto'
import pg from 'pg'
import {HttpError} from './errors.js'
import {migrate} from './pgschema.js'
import {pgLoad, pgWrites} from './pgwrites.js'
import type {PhoneHome, StateStore} from './state.js'

const CHANNEL = 'nodeset_configserver'
const LISTENER_NAME = 'nodeset-config-server-listen'
/** NOTIFY payloads must stay under 8000 bytes: past this, the instances are left out (then: all of them). */
const PAYLOAD_BYTES = 7000

interface Pending {
  deployment: string
  ids?: string[]
  op: (client: pg.ClientBase) => Promise<unknown>
  apply?: (result: unknown) => void
  resolve: (value: unknown) => void
  reject: (error: unknown) => void
}

type Listener = (deployment: string | undefined, ids?: string[]) => void

/** BIGINT columns hold epoch milliseconds: read them as numbers. */
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === 20
      ? (value: string) => Number(value)
      : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
}

/** The database a URL names, without its password. */
export function describeUrl(url: string): string {
  try {
    const parsed = new URL(url)
    parsed.password = ''
    return `PostgreSQL ${parsed.toString()}`
  } catch {
    return 'PostgreSQL (unparsable URL)'
  }
}

export interface PgStoreOptions {
  onApplyError?: (error: unknown) => void
  /** Told when the listening connection is lost, and when it is back. */
  log?: (message: string, error?: unknown) => void
}

export class PgStore implements StateStore {
  readonly shared = true
  readonly where: string
  /** This replica: its own notifications are not news to it. */
  readonly replica = randomUUID()
  private readonly pool: pg.Pool
  private queue: Pending[] = []
  private scheduled = false
  private flushing: Promise<void> | undefined
  private closed = false
  private listener: pg.Client | undefined
  private readonly listeners: Listener[] = []
  private reconnect: NodeJS.Timeout | undefined
  private readonly prune: NodeJS.Timeout

  private constructor(
    private readonly url: string,
    private readonly options: PgStoreOptions,
  ) {
    this.where = describeUrl(url)
    this.pool = new pg.Pool({connectionString: url, types, max: 10})
    // A connection that breaks is replaced by the pool; the error is not the process's. The pool listens
    // only to an idle connection: one checked out for a commit, between its statements, has no listener
    // of the pool's, and the 'error' it emits (the database restarting, an administrator ending it)
    // would end the process. Each connection gets one of its own: the commit fails with it, its writes
    // are answered 503, and their senders retry.
    this.pool.on('connect', (client) =>
      client.on('error', (error) => options.log?.('a PostgreSQL connection failed', error)),
    )
    // Told by the connection's own listener above.
    this.pool.on('error', () => {})
    this.prune = setInterval(() => {
      this.pool
        .query('DELETE FROM auth_failures WHERE blocked_until < $1 AND since < $1', [Date.now() - 120_000])
        .catch(() => {})
    }, 60_000).unref()
  }

  /** Connect, create or migrate the schema, and start listening. */
  static async open(url: string, options: PgStoreOptions = {}): Promise<PgStore> {
    const store = new PgStore(url, options)
    try {
      const client = await store.pool.connect().catch((error: Error) => {
        throw new Error(`cannot connect to ${store.where}: ${error.message}`, {cause: error})
      })
      try {
        await migrate(client, store.where)
      } finally {
        client.release()
      }
      await store.listen()
    } catch (error) {
      await store.close()
      throw error
    }
    return store
  }

  onChange(listener: Listener): void {
    this.listeners.push(listener)
  }

  private async listen(): Promise<void> {
    const client = new pg.Client({connectionString: this.url, types, application_name: LISTENER_NAME})
    const lost = (error?: unknown) => this.lost(client, error)
    client.on('error', lost)
    client.on('end', lost)
    client.on('notification', (message) => this.notified(message.payload))
    await client.connect()
    await client.query(`LISTEN ${CHANNEL}`)
    if (this.closed) return void client.end().catch(() => {})
    this.listener = client
  }

  private lost(client: pg.Client, error?: unknown): void {
    if (this.listener !== client || this.closed) return
    this.listener = undefined
    client.end().catch(() => {})
    this.options.log?.('the PostgreSQL listening connection was lost; reconnecting', error)
    const retry = (delay: number) => {
      this.reconnect = setTimeout(() => {
        this.listen().then(
          () => {
            this.options.log?.('listening to PostgreSQL again; re-reading every deployment')
            this.emit(undefined)
          },
          () => !this.closed && retry(Math.min(delay * 2, 5000)),
        )
      }, delay)
    }
    retry(50)
  }

  private notified(payload: string | undefined): void {
    try {
      const {r, d, i} = JSON.parse(payload ?? '') as {r: string; d: string; i?: string[]}
      if (r !== this.replica) this.emit(d, i)
    } catch {
      this.emit(undefined)
    }
  }

  private emit(deployment: string | undefined, ids?: string[]): void {
    for (const listener of this.listeners) listener(deployment, ids)
  }

  /** Queue a write of `deployment` (its instances `ids`); it commits with the others of this turn. */
  private write<T>(
    deployment: string,
    ids: string[] | undefined,
    op: (client: pg.ClientBase) => Promise<T>,
    apply?: (result: T) => void,
  ): Promise<T> {
    if (this.closed) return Promise.reject(new Error('the config server is shutting down'))
    return new Promise<T>((resolve, reject) => {
      this.queue.push({
        deployment,
        ...(ids ? {ids} : {}),
        op,
        apply: apply as ((result: unknown) => void) | undefined,
        resolve: resolve as (value: unknown) => void,
        reject,
      })
      if (!this.scheduled && !this.flushing) {
        this.scheduled = true
        setImmediate(() => void this.flush())
      }
    })
  }

  /** Commit batches until the queue is empty: what queues during a commit goes in the next one. */
  private flush(): Promise<void> {
    this.scheduled = false
    this.flushing ??= this.drain().finally(() => {
      this.flushing = undefined
      if (this.queue.length > 0 && !this.scheduled) {
        this.scheduled = true
        setImmediate(() => void this.flush())
      }
    })
    return this.flushing
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0) await this.commit(this.queue.splice(0))
  }

  private async commit(batch: Pending[]): Promise<void> {
    const outcomes: Array<{ok: true; value: unknown} | {ok: false; error: unknown}> = []
    let client: pg.PoolClient | undefined
    try {
      client = await this.pool.connect()
      await client.query('BEGIN')
      for (const item of batch) outcomes.push(await this.run(client, item))
      const touched = new Map<string, Set<string> | undefined>()
      batch.forEach((item, i) => {
        if (!outcomes[i].ok) return
        const ids = touched.has(item.deployment) ? touched.get(item.deployment) : new Set<string>()
        if (ids && item.ids) for (const id of item.ids) ids.add(id)
        touched.set(item.deployment, ids && item.ids ? ids : undefined)
      })
      for (const [deployment, ids] of touched) {
        let payload = JSON.stringify({r: this.replica, d: deployment, ...(ids ? {i: [...ids]} : {})})
        if (Buffer.byteLength(payload) > PAYLOAD_BYTES) payload = JSON.stringify({r: this.replica, d: deployment})
        await client.query('SELECT pg_notify($1, $2)', [CHANNEL, payload])
      }
      await client.query('COMMIT')
      client.release()
    } catch (error) {
      client?.release(true)
      for (const item of batch) item.reject(this.unavailable('the write', error))
      return
    }
    batch.forEach((item, i) => {
      const outcome = outcomes[i]
      if (!outcome.ok) return item.reject(outcome.error)
      try {
        item.apply?.(outcome.value)
      } catch (error) {
        this.options.onApplyError?.(error)
      }
      item.resolve(outcome.value)
    })
  }

  /** One op in its savepoint; a deadlock with another replica's batch is retried. */
  private async run(
    client: pg.ClientBase,
    item: Pending,
  ): Promise<{ok: true; value: unknown} | {ok: false; error: unknown}> {
    for (let attempt = 0; ; attempt++) {
      await client.query('SAVEPOINT op')
      try {
        const value = await item.op(client)
        await client.query('RELEASE SAVEPOINT op')
        return {ok: true, value}
      } catch (error) {
        await client.query('ROLLBACK TO SAVEPOINT op')
        const code = (error as {code?: string}).code
        if (error instanceof HttpError || attempt >= 3 || (code !== '40P01' && code !== '40001'))
          return {ok: false, error}
      }
    }
  }

  /** The database failing underneath: answered 503 (app.ts), with the cause in the log. */
  private unavailable(what: string, error: unknown): Error {
    return Object.assign(new Error(`${what} to ${this.where} failed: ${(error as Error).message}`), {
      code: 'POSTGRES_UNAVAILABLE',
      cause: error,
    })
  }

  /** A read that sees one snapshot. */
  private async read<T>(op: (client: pg.ClientBase) => Promise<T>): Promise<T> {
    const client = await this.pool.connect().catch((error: unknown) => {
      throw this.unavailable('a read', error)
    })
    try {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')
      const value = await op(client)
      await client.query('COMMIT')
      client.release()
      return value
    } catch (error) {
      client.release(true)
      throw error
    }
  }

  async deploymentNames(): Promise<string[]> {
    const rows = (await this.pool.query('SELECT name FROM deployments ORDER BY name')).rows as Array<{name: string}>
    return rows.map((row) => row.name)
  }

  load(name: string) {
    return this.read((client) => pgLoad(client, name))
  }

  async register(...[plan, now, apply]: Parameters<StateStore['register']>) {
    const {tokens} = await this.write(
      plan.deployment,
      undefined,
      async (client) => ({
        tokens: await pgWrites.register(client, plan, now),
        record: await pgLoad(client, plan.deployment),
      }),
      ({record}) => apply(record),
    )
    return tokens
  }

  phoneHome(...[deployment, id, write, apply]: Parameters<StateStore['phoneHome']>): Promise<PhoneHome> {
    return this.write(deployment, [id], (client) => pgWrites.phoneHome(client, deployment, id, write), apply)
  }

  nodeTokenUsed(...[deployment, id, hash, now, apply]: Parameters<StateStore['nodeTokenUsed']>) {
    return this.write(deployment, [id], (client) => pgWrites.nodeTokenUsed(client, deployment, id, hash, now), apply)
  }

  report(...[deployment, id, service, report, now, apply]: Parameters<StateStore['report']>) {
    return this.write(
      deployment,
      [id],
      (client) => pgWrites.report(client, deployment, id, service, report, now),
      apply,
    )
  }

  deleteDeployment(...[deployment, apply]: Parameters<StateStore['deleteDeployment']>) {
    return this.write(deployment, undefined, (client) => pgWrites.deleteDeployment(client, deployment), apply)
  }

  async deleteInstance(...[deployment, id, apply]: Parameters<StateStore['deleteInstance']>) {
    const {n} = await this.write(
      deployment,
      undefined,
      async (client) => {
        const removed = await pgWrites.deleteInstance(client, deployment, id)
        return {n: removed, record: removed > 0 ? await pgLoad(client, deployment) : undefined}
      },
      ({n, record}) => apply(n, record),
    )
    return n
  }

  async authFailure(keys: string[], now: number, limit: number, windowMs: number): Promise<number> {
    const client = await this.pool.connect().catch((error: unknown) => {
      throw this.unavailable('counting a failed authentication', error)
    })
    try {
      return await pgWrites.authFailure(client, keys, now, limit, windowMs)
    } finally {
      client.release()
    }
  }

  async close(): Promise<void> {
    if (this.closed) return
    if (this.flushing || this.scheduled) await this.flush()
    this.closed = true
    clearTimeout(this.reconnect)
    clearInterval(this.prune)
    const listener = this.listener
    this.listener = undefined
    await listener?.end().catch(() => {})
    await this.pool.end().catch(() => {})
  }
}

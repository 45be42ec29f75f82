/**
 * The writes, as SQL run inside `Store.write` (one transaction per group commit, so each op sees
 * the rows as the ops before it left them). Each returns how many rows it touched: 0 when the
 * instance is gone, which the route answers with 404, never a constraint error.
 */
import {bootstrapUse, EXCHANGED_HINT, EXCHANGED_MESSAGE} from './tokens.js'
import {HttpError} from './errors.js'
import {LIMITS, formatBytes} from './limits.js'
import type {FactValue, ServiceState} from './records.js'
import type {PhoneHomeWrite} from './state.js'
import {type Db, stmt} from './store.js'

/** A bootstrap token's phone-home, on the row as committed: the 401 when `bootstrapUse` refuses it (both stores). */
export function refuseSpentBootstrap(
  row: {exchanged_at: number | null; node_token_used_at: number | null},
  now: number,
  graceMs: number,
): void {
  const state = {
    ...(row.exchanged_at === null ? {} : {exchangedAt: row.exchanged_at}),
    ...(row.node_token_used_at === null ? {} : {nodeTokenUsedAt: row.node_token_used_at}),
  }
  if (bootstrapUse(state, now, graceMs) === 'refuse')
    throw new HttpError(401, EXCHANGED_MESSAGE, {hint: EXCHANGED_HINT}, {'www-authenticate': 'Bearer'})
}

/** Refuse a merged JSON object over the bounds, saying what the bound is. */
export function checkBounds(
  merged: string,
  what: string,
  keys: {limit: number; name: string},
  bytes: {limit: number; name: string},
): void {
  const size = Buffer.byteLength(merged)
  // An object with n distinct keys takes at least 5n + 1 bytes ({"":0,…}): a text shorter than that for
  // one key over the limit is within it, and need not be parsed to count its keys.
  if (size >= 5 * (keys.limit + 1) + 1) {
    const count = Object.keys(JSON.parse(merged) as object).length
    if (count > keys.limit)
      throw new HttpError(413, `${what} would have ${count} keys; the limit is ${keys.limit}`, {
        limit: {[keys.name]: keys.limit},
      })
  }
  if (size > bytes.limit)
    throw new HttpError(
      413,
      `${what} would take ${formatBytes(size)}; the limit is ${formatBytes(bytes.limit)} (${bytes.limit} bytes of JSON)`,
      {limit: {[bytes.name]: bytes.limit}},
    )
}

// The row is read by its key and written by its rowid (the same transaction: it cannot move), one index lookup less.
// A first contact merges into no facts: a fact is never null or an object (protocol.ts), so the merge
// patch is the facts as sent, and SQLite's JSON parse and render of them (most of the read) is skipped.
const PHONE_HOME_READ = `SELECT rowid AS row, CASE facts WHEN '{}' THEN ? ELSE json_patch(facts, ?) END AS merged,
  exchanged_at, node_token_used_at FROM instances WHERE deployment = ? AND id = ?`
const CONTACT = 'facts = ?, address = ?, first_contact = COALESCE(first_contact, ?), last_contact = ?'
const PHONE_HOME_WRITE = `UPDATE instances SET ${CONTACT} WHERE rowid = ?`
const PHONE_HOME_EXCHANGE = `UPDATE instances SET ${CONTACT}, node_token_hash = ?, exchanged_at = ? WHERE rowid = ?`
// A first contact in one statement: with no facts stored the merge is the facts as sent, whose bounds
// are checked before, and a bootstrap token never exchanged is one `bootstrapUse` takes. A row that is
// not such (or no row) changes nothing, and the read and write below decide.
const FIRST_CONTACT = `WHERE deployment = ? AND id = ? AND facts = '{}'`
const FIRST_PHONE_HOME = `UPDATE instances SET ${CONTACT} ${FIRST_CONTACT}`
const FIRST_EXCHANGE = `UPDATE instances SET ${CONTACT}, node_token_hash = ?, exchanged_at = ? ${FIRST_CONTACT} AND exchanged_at IS NULL`

/** Whether facts as sent are within the bounds by themselves (the 413 is worded by `checkBounds`). */
function withinBounds(facts: Record<string, FactValue>, patch: string): boolean {
  return Object.keys(facts).length <= LIMITS.factsPerInstance && Buffer.byteLength(patch) <= LIMITS.factBytesPerInstance
}

export const writes = {
  /** A phone-home: facts merge into those sent before, within the bounds of LIMITS. */
  facts(
    db: Db,
    deployment: string,
    id: string,
    facts: Record<string, FactValue>,
    address: string,
    now: number,
  ): number {
    return writes.phoneHome(db, deployment, id, {facts, address, now}).changed
  },

  /**
   * A phone-home in one read and one write (a hinted first contact in the write alone): the facts
   * merge into those sent before, within the bounds of LIMITS, and with `exchange` (the bootstrap
   * token was presented) the new node token's hash is recorded as `bootstrapUse` allows, or the 401
   * is thrown. Decided on the committed row, so two phone-homes racing cannot both pass a check made
   * in memory. Every check comes before the write, so a refused phone-home changes nothing without a
   * savepoint. `changed` is 0 when the instance is unknown.
   */
  phoneHome(
    db: Db,
    deployment: string,
    id: string,
    write: PhoneHomeWrite,
  ): {changed: number; exchanged?: {exchangedAt: number}} {
    const {facts, address, now, exchange} = write
    const patch = JSON.stringify(facts)
    if (write.firstContact && withinBounds(facts, patch)) {
      const changed = exchange
        ? stmt(db, FIRST_EXCHANGE).run(patch, address, now, now, exchange.hash, now, deployment, id).changes
        : stmt(db, FIRST_PHONE_HOME).run(patch, address, now, now, deployment, id).changes
      if (changed > 0) return exchange ? {changed, exchanged: {exchangedAt: now}} : {changed}
    }
    const row = stmt(db, PHONE_HOME_READ).get(patch, patch, deployment, id) as
      {row: number; merged: string; exchanged_at: number | null; node_token_used_at: number | null} | undefined
    if (!row) return {changed: 0}
    if (exchange) refuseSpentBootstrap(row, now, exchange.graceMs)
    checkBounds(
      row.merged,
      `the facts of ${id}`,
      {limit: LIMITS.factsPerInstance, name: 'factsPerInstance'},
      {limit: LIMITS.factBytesPerInstance, name: 'factBytesPerInstance'},
    )
    if (!exchange) return {changed: stmt(db, PHONE_HOME_WRITE).run(row.merged, address, now, now, row.row).changes}
    // The grace counts from the first exchange: retries cannot stretch it.
    const exchangedAt = row.exchanged_at ?? now
    const changed = stmt(db, PHONE_HOME_EXCHANGE).run(
      row.merged,
      address,
      now,
      now,
      exchange.hash,
      exchangedAt,
      row.row,
    ).changes
    return {changed, exchanged: {exchangedAt}}
  },

  /** The node token's first use closes the grace for retried exchanges. */
  nodeTokenUsed(db: Db, deployment: string, id: string, nodeTokenHash: Buffer, now: number): number {
    return stmt(
      db,
      'UPDATE instances SET node_token_used_at = ? WHERE deployment = ? AND id = ? AND node_token_hash = ? AND node_token_used_at IS NULL',
    ).run(now, deployment, id, nodeTokenHash).changes
  },

  /** A service report: its outputs merge into those reported before, within the bounds of LIMITS. */
  run(
    db: Db,
    deployment: string,
    id: string,
    service: string,
    report: {state: ServiceState; exitCode?: number; message?: string; outputs: Record<string, string>},
    now: number,
  ): number {
    // The instance may have been removed by an op of the same commit (or one just before): no row, no run.
    if (stmt(db, 'SELECT 1 FROM instances WHERE deployment = ? AND id = ?').get(deployment, id) === undefined) return 0
    const merged = stmt(
      db,
      `SELECT json_patch(COALESCE((SELECT outputs FROM runs WHERE deployment = ? AND instance = ? AND service = ?), '{}'), ?)`,
    )
      .pluck()
      .get(deployment, id, service, JSON.stringify(report.outputs)) as string
    checkBounds(
      merged,
      `the outputs of ${id}/${service}`,
      {limit: LIMITS.outputsPerService, name: 'outputsPerService'},
      {limit: LIMITS.outputBytesPerService, name: 'outputBytesPerService'},
    )
    return stmt(
      db,
      `INSERT INTO runs (deployment, instance, service, state, exit_code, message, outputs, started_at, ended_at)
       VALUES (@deployment, @id, @service, @state, @exitCode, @message, @outputs, @now, @ended)
       ON CONFLICT (deployment, instance, service) DO UPDATE SET
         state = excluded.state, exit_code = excluded.exit_code, message = excluded.message,
         outputs = excluded.outputs,
         started_at = COALESCE(runs.started_at, excluded.started_at), ended_at = excluded.ended_at`,
    ).run({
      deployment,
      id,
      service,
      state: report.state,
      exitCode: report.exitCode ?? null,
      message: report.message ?? null,
      outputs: merged,
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

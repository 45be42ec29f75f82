/**
 * The writes and reads of the PostgreSQL store, as SQL run inside one batch transaction (pgstore.ts).
 * The instance's row is locked first (FOR UPDATE), so replicas writing the same instance take turns
 * and each merge starts from the committed value. Each returns how many rows it touched: 0 when the
 * instance is gone, which the route answers with 404.
 */
import type pg from 'pg'
import {registrationFromRows, type DeploymentRow, type InstanceRow, type RunRow} from './load.js'
import {LIMITS} from './limits.js'
import type {RegistrationPlan} from './register.js'
import type {FactValue, RegistrationRecord} from './records.js'
import type {PhoneHome, ServiceReport} from './state.js'
import {hashToken, newToken} from './tokens.js'
import {checkBounds, refuseSpentBootstrap} from './writes.js'

type Client = pg.ClientBase

const merge = (stored: string | undefined, added: object): string =>
  JSON.stringify({...(JSON.parse(stored ?? '{}') as object), ...added})

export const pgWrites = {
  async phoneHome(
    c: Client,
    deployment: string,
    id: string,
    write: {facts: Record<string, FactValue>; address: string; now: number; exchange?: {hash: Buffer; graceMs: number}},
  ): Promise<PhoneHome> {
    const row = (
      await c.query(
        'SELECT facts, exchanged_at, node_token_used_at FROM instances WHERE deployment = $1 AND id = $2 FOR UPDATE',
        [deployment, id],
      )
    ).rows[0] as {facts: string; exchanged_at: number | null; node_token_used_at: number | null} | undefined
    if (!row) return {changed: 0}
    const {now, exchange} = write
    let exchangedAt: number | undefined
    if (exchange) {
      refuseSpentBootstrap(row, now, exchange.graceMs)
      // The grace counts from the first exchange: retries cannot stretch it.
      exchangedAt = row.exchanged_at ?? now
    }
    const merged = merge(row.facts, write.facts)
    checkBounds(
      merged,
      `the facts of ${id}`,
      {limit: LIMITS.factsPerInstance, name: 'factsPerInstance'},
      {limit: LIMITS.factBytesPerInstance, name: 'factBytesPerInstance'},
    )
    await c.query(
      `UPDATE instances SET facts = $3, address = $4, first_contact = COALESCE(first_contact, $5), last_contact = $5,
         node_token_hash = COALESCE($6, node_token_hash), exchanged_at = COALESCE($7, exchanged_at)
       WHERE deployment = $1 AND id = $2`,
      [deployment, id, merged, write.address, now, exchange?.hash ?? null, exchangedAt ?? null],
    )
    return {changed: 1, ...(exchangedAt === undefined ? {} : {exchanged: {exchangedAt}})}
  },

  async nodeTokenUsed(c: Client, deployment: string, id: string, hash: Buffer, now: number): Promise<number> {
    const result = await c.query(
      `UPDATE instances SET node_token_used_at = $4
       WHERE deployment = $1 AND id = $2 AND node_token_hash = $3 AND node_token_used_at IS NULL`,
      [deployment, id, hash, now],
    )
    return result.rowCount ?? 0
  },

  async report(
    c: Client,
    deployment: string,
    id: string,
    service: string,
    report: ServiceReport,
    now: number,
  ): Promise<number> {
    const found = await c.query('SELECT 1 FROM instances WHERE deployment = $1 AND id = $2 FOR UPDATE', [
      deployment,
      id,
    ])
    if (found.rowCount === 0) return 0
    const stored = (
      await c.query('SELECT outputs FROM runs WHERE deployment = $1 AND instance = $2 AND service = $3', [
        deployment,
        id,
        service,
      ])
    ).rows[0] as {outputs: string} | undefined
    const merged = merge(stored?.outputs, report.outputs)
    checkBounds(
      merged,
      `the outputs of ${id}/${service}`,
      {limit: LIMITS.outputsPerService, name: 'outputsPerService'},
      {limit: LIMITS.outputBytesPerService, name: 'outputBytesPerService'},
    )
    await c.query(
      `INSERT INTO runs (deployment, instance, service, state, exit_code, message, outputs, started_at, ended_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
       ON CONFLICT (deployment, instance, service) DO UPDATE SET
         state = excluded.state, exit_code = excluded.exit_code, message = excluded.message,
         outputs = excluded.outputs,
         started_at = COALESCE(runs.started_at, excluded.started_at), ended_at = excluded.ended_at`,
      [
        deployment,
        id,
        service,
        report.state,
        report.exitCode ?? null,
        report.message ?? null,
        merged,
        now,
        report.state === 'running' ? null : now,
      ],
    )
    return 1
  },

  async deleteDeployment(c: Client, deployment: string): Promise<number> {
    return (await c.query('DELETE FROM deployments WHERE name = $1', [deployment])).rowCount ?? 0
  },

  async deleteInstance(c: Client, deployment: string, id: string): Promise<number> {
    return (await c.query('DELETE FROM instances WHERE deployment = $1 AND id = $2', [deployment, id])).rowCount ?? 0
  },

  /** Write the registration; returns the tokens of new and reissued instances. */
  async register(c: Client, plan: RegistrationPlan, now: number): Promise<Record<string, string>> {
    const dep = plan.deployment
    await c.query(
      `INSERT INTO deployments (name, registered_at, startup_timeout_sec, inputs) VALUES ($1, $2, $3, $4)
       ON CONFLICT (name) DO UPDATE SET registered_at = excluded.registered_at,
         startup_timeout_sec = excluded.startup_timeout_sec, inputs = excluded.inputs`,
      [dep, now, plan.startupTimeoutSec ?? null, JSON.stringify(plan.inputs)],
    )
    const existing = new Set(
      (
        (await c.query('SELECT id FROM instances WHERE deployment = $1 FOR UPDATE', [dep])).rows as Array<{id: string}>
      ).map((r) => r.id),
    )
    const tokens: Record<string, string> = {}
    for (const instance of plan.instances) {
      const services = JSON.stringify(instance.services)
      if (existing.has(instance.id)) {
        existing.delete(instance.id)
        await c.query('UPDATE instances SET role = $3, idx = $4, services = $5 WHERE deployment = $1 AND id = $2', [
          dep,
          instance.id,
          instance.role,
          instance.index,
          services,
        ])
        await c.query('DELETE FROM runs WHERE deployment = $1 AND instance = $2 AND NOT (service = ANY($3::text[]))', [
          dep,
          instance.id,
          instance.services.map((s) => s.name),
        ])
        if (!plan.reissue.has(instance.id)) continue
        tokens[instance.id] = newToken()
        // A reissued instance starts over with a bootstrap token: its node token stops working too.
        await c.query(
          `UPDATE instances SET token_hash = $3, node_token_hash = NULL, exchanged_at = NULL, node_token_used_at = NULL
           WHERE deployment = $1 AND id = $2`,
          [dep, instance.id, hashToken(tokens[instance.id])],
        )
      } else {
        tokens[instance.id] = newToken()
        await c.query(
          'INSERT INTO instances (deployment, id, role, idx, services, token_hash) VALUES ($1, $2, $3, $4, $5, $6)',
          [dep, instance.id, instance.role, instance.index, services, hashToken(tokens[instance.id])],
        )
      }
    }
    if (existing.size > 0)
      await c.query('DELETE FROM instances WHERE deployment = $1 AND id = ANY($2::text[])', [dep, [...existing]])
    return tokens
  },

  /** One authentication failure against each key unless one is blocked (then the seconds to wait). */
  async authFailure(c: Client, keys: string[], now: number, limit: number, windowMs: number): Promise<number> {
    const blocked = (
      await c.query(
        'SELECT max(blocked_until) AS until FROM auth_failures WHERE key = ANY($1::text[]) AND blocked_until > $2::bigint',
        [keys, now],
      )
    ).rows[0] as {until: number | null}
    if (blocked.until !== null) return Math.ceil((blocked.until - now) / 1000)
    await c.query(
      `INSERT INTO auth_failures AS f (key, failures, since, blocked_until)
       SELECT k, 1, $2::bigint, CASE WHEN 1 >= $3::integer THEN $2::bigint + $4::bigint ELSE 0 END FROM unnest($1::text[]) AS k
       ON CONFLICT (key) DO UPDATE SET
         failures = CASE WHEN $2::bigint - f.since > $4::bigint THEN 1 ELSE f.failures + 1 END,
         since = CASE WHEN $2::bigint - f.since > $4::bigint THEN $2::bigint ELSE f.since END,
         blocked_until = CASE WHEN (CASE WHEN $2::bigint - f.since > $4::bigint THEN 1 ELSE f.failures + 1 END) >= $3::integer
           THEN $2::bigint + $4::bigint ELSE f.blocked_until END`,
      [keys, now, limit, windowMs],
    )
    return 0
  },
}

/** Read one registered deployment back, as committed (inside the caller's transaction). */
export async function pgLoad(c: Client, name: string): Promise<RegistrationRecord | undefined> {
  const row = (
    await c.query('SELECT registered_at, startup_timeout_sec, inputs FROM deployments WHERE name = $1', [name])
  ).rows[0] as DeploymentRow | undefined
  if (!row) return undefined
  const runRows = (
    await c.query(
      'SELECT instance, service, state, exit_code, message, outputs, started_at, ended_at FROM runs WHERE deployment = $1',
      [name],
    )
  ).rows as RunRow[]
  // No site columns: the PostgreSQL store does not federate (the server refuses --broker with it).
  const instanceRows = (
    await c.query(
      `SELECT id, role, idx, services, token_hash, node_token_hash, exchanged_at, node_token_used_at, facts, address,
         first_contact, last_contact FROM instances WHERE deployment = $1`,
      [name],
    )
  ).rows as Array<Omit<InstanceRow, 'site' | 'fed_at'>>
  return registrationFromRows(name, row, runRows, instanceRows)
}

/**
 * The PostgreSQL store's schema, created and migrated by the server: `nodeset_schema` holds the
 * version (one row) and the state's id. Replicas starting together migrate one at a time (an
 * advisory lock); a database of a newer schema is refused, with what to do.
 */
import {randomUUID} from 'node:crypto'
import type pg from 'pg'
import {StateError} from './store.js'

/** Each entry takes the schema from its index to the next version. */
const MIGRATIONS = [
  `
CREATE TABLE deployments (
  name TEXT PRIMARY KEY,
  registered_at BIGINT NOT NULL,
  startup_timeout_sec INTEGER,
  inputs TEXT NOT NULL
);
CREATE TABLE instances (
  deployment TEXT NOT NULL REFERENCES deployments(name) ON DELETE CASCADE,
  id TEXT NOT NULL,
  role TEXT NOT NULL,
  idx INTEGER NOT NULL,
  services TEXT NOT NULL,
  token_hash BYTEA NOT NULL,
  node_token_hash BYTEA,
  exchanged_at BIGINT,
  node_token_used_at BIGINT,
  facts TEXT NOT NULL DEFAULT '{}',
  address TEXT,
  first_contact BIGINT,
  last_contact BIGINT,
  PRIMARY KEY (deployment, id)
);
CREATE TABLE runs (
  deployment TEXT NOT NULL,
  instance TEXT NOT NULL,
  service TEXT NOT NULL,
  state TEXT,
  exit_code INTEGER,
  message TEXT,
  outputs TEXT NOT NULL DEFAULT '{}',
  started_at BIGINT,
  ended_at BIGINT,
  PRIMARY KEY (deployment, instance, service),
  FOREIGN KEY (deployment, instance) REFERENCES instances(deployment, id) ON DELETE CASCADE
);
CREATE TABLE auth_failures (
  key TEXT PRIMARY KEY,
  failures INTEGER NOT NULL,
  since BIGINT NOT NULL,
  blocked_until BIGINT NOT NULL
);
`,
]

export const PG_SCHEMA_VERSION = MIGRATIONS.length

/** Create or migrate the schema; returns the state's id. */
export async function migrate(client: pg.ClientBase, where: string): Promise<string> {
  await client.query('BEGIN')
  try {
    await client.query(`SELECT pg_advisory_xact_lock(hashtext('nodeset config server schema'))`)
    await client.query('CREATE TABLE IF NOT EXISTS nodeset_schema (version INTEGER NOT NULL, state_id TEXT NOT NULL)')
    const rows = (await client.query('SELECT version, state_id FROM nodeset_schema')).rows as Array<{
      version: number
      state_id: string
    }>
    if (rows.length > 1) throw new StateError(`${where}: nodeset_schema has ${rows.length} rows; it must have one`)
    const version = rows[0]?.version ?? 0
    if (version > PG_SCHEMA_VERSION)
      throw new StateError(
        `${where} holds config server schema ${version}, newer than this nodeset's (${PG_SCHEMA_VERSION}): ` +
          'upgrade nodeset on this replica to the version the others run',
      )
    for (let at = version; at < PG_SCHEMA_VERSION; at++) await client.query(MIGRATIONS[at])
    const id = rows[0]?.state_id ?? randomUUID()
    if (rows.length === 0)
      await client.query('INSERT INTO nodeset_schema (version, state_id) VALUES ($1, $2)', [PG_SCHEMA_VERSION, id])
    else await client.query('UPDATE nodeset_schema SET version = $1', [PG_SCHEMA_VERSION])
    await client.query('COMMIT')
    return id
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {})
    throw error
  }
}

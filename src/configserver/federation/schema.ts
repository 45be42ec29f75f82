/**
 * The federation's tables, beside the config server's own (store.ts):
 * - `federation`: a federated deployment's site, keys (secrets, like the outputs the state already holds),
 *   the epoch of its sequence (made once: a state started over gets a new one) and its last sequence number;
 * - `fed_outbox`: messages about this site's instances, written in the transaction of the change they
 *   tell, signed, kept until the broker confirms them;
 * - `fed_applied`: per origin site, its epoch and the highest sequence applied here (every one below too).
 */
export const FEDERATION_SCHEMA = `
CREATE TABLE IF NOT EXISTS federation (
  deployment TEXT PRIMARY KEY REFERENCES deployments(name) ON DELETE CASCADE,
  site TEXT NOT NULL,
  signing_key TEXT NOT NULL,
  peers TEXT NOT NULL,
  seal_key TEXT NOT NULL,
  epoch TEXT NOT NULL,
  last_seq INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE TABLE IF NOT EXISTS fed_outbox (
  deployment TEXT NOT NULL REFERENCES deployments(name) ON DELETE CASCADE,
  seq INTEGER NOT NULL,
  body BLOB NOT NULL,
  signature BLOB NOT NULL,
  PRIMARY KEY (deployment, seq)
) STRICT;
CREATE TABLE IF NOT EXISTS fed_applied (
  deployment TEXT NOT NULL REFERENCES deployments(name) ON DELETE CASCADE,
  origin TEXT NOT NULL,
  epoch TEXT NOT NULL,
  seq INTEGER NOT NULL,
  PRIMARY KEY (deployment, origin)
) STRICT;
`

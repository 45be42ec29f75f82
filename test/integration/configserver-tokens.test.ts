/**
 * The token exchange over real HTTP and real SQLite: the bootstrap token a node boots with (readable in
 * its user data) works for one phone-home, which hands over a node token; then only the node token works.
 */
import path from 'node:path'
import Database from 'better-sqlite3'
import {afterEach, describe, expect, it} from 'vitest'
import {hashToken} from '../../src/configserver/auth.js'
import {failure, raw, seed000, type TestServer, tempDir, testServer} from './configserver-fixtures.js'

let server: TestServer | undefined
afterEach(async () => {
  await server?.close()
  server = undefined
})

const DB = 'db.wp.test'
const EXCHANGED = 'this bootstrap token was exchanged; use the node token stored on the node'
const factsPath = `/v1/deployments/wp/instances/${DB}/facts`

async function registered(opts = {}): Promise<{s: TestServer; bootstrap: string}> {
  server = await testServer(opts)
  const {tokens} = await server.admin('wp').register(seed000)
  return {s: server, bootstrap: tokens[DB]}
}

/** A phone-home with `token`, as raw HTTP (no client that would switch tokens on its own). */
const phoneHome = (s: TestServer, token: string) =>
  raw(s.url, factsPath, {method: 'PUT', token, body: '{"facts":{"hostname":"db"}}'})

/** Status of each instance route of the db with `token`. */
async function instanceRoutes(s: TestServer, token: string): Promise<number[]> {
  const base = `/v1/deployments/wp/instances/${DB}`
  return Promise.all([
    phoneHome(s, token),
    raw(s.url, `${base}/config`, {token}),
    raw(s.url, `${base}/services/mysql`, {method: 'PUT', token, body: '{"state":"running"}'}),
    raw(s.url, `${base}/roles`, {token}),
    raw(s.url, `${base}/hosts`, {token}),
  ]).then((answers) => answers.map((a) => a.status))
}

describe('config server: the bootstrap token is exchanged at the first phone-home', () => {
  it('works once; then it is refused with what to do, while the node token works for every instance route', async () => {
    const {s, bootstrap} = await registered()
    // Before the phone-home the bootstrap token reaches the instance's routes.
    expect((await raw(s.url, `/v1/deployments/wp/instances/${DB}/config`, {token: bootstrap})).status).toBe(200)

    const first = await phoneHome(s, bootstrap)
    expect(first.status).toBe(200)
    const nodeToken = first.json().token as string
    expect(nodeToken).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect(nodeToken).not.toBe(bootstrap)
    expect(first.json()).toEqual({deployment: 'wp', instance: DB, ip: '127.0.0.1', token: nodeToken})

    expect(await instanceRoutes(s, nodeToken)).toEqual([200, 200, 200, 200, 200])
    // A phone-home with the node token exchanges nothing.
    expect(Object.keys((await phoneHome(s, nodeToken)).json())).toEqual(['deployment', 'instance', 'ip'])

    expect(await instanceRoutes(s, bootstrap)).toEqual([401, 401, 401, 401, 401])
    const refused = await raw(s.url, `/v1/deployments/wp/instances/${DB}/config`, {token: bootstrap})
    expect(refused.json()).toEqual({error: EXCHANGED, hint: expect.stringContaining('/var/lib/nodeset/token')})
    expect(refused.headers['www-authenticate']).toBe('Bearer')
    expect(refused.body).not.toContain(bootstrap)

    // The node token is still an instance token: it reaches only its own instance, and no admin route.
    expect((await raw(s.url, '/v1/deployments/wp/instances/app.wp.test/config', {token: nodeToken})).status).toBe(403)
    expect((await raw(s.url, '/v1/deployments/wp/status', {token: nodeToken})).status).toBe(403)
    // The admin token still works everywhere, and a phone-home with it exchanges nothing.
    const byAdmin = await phoneHome(s, s.adminToken)
    expect(byAdmin.status).toBe(200)
    expect(byAdmin.json().token).toBeUndefined()
    expect(await instanceRoutes(s, nodeToken)).toEqual([200, 200, 200, 200, 200])
  })

  it('the typed client goes on with the node token it got', async () => {
    const {s, bootstrap} = await registered()
    const db = s.as('wp', bootstrap)
    const seen = await db.putFacts(DB, {hostname: 'db'})
    expect(seen.token).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect((await db.getConfig(DB)).status).toBe(200)
    expect((await db.putFacts(DB, {hostname: 'db'})).token).toBeUndefined()
    const error = await failure(s.as('wp', bootstrap).getConfig(DB))
    expect(error.status).toBe(401)
    expect(error.message).toContain(EXCHANGED)
    expect(error.message).not.toContain(bootstrap)
  })

  it('a retried phone-home whose answer was lost gets a fresh node token, and the lost one is revoked', async () => {
    const {s, bootstrap} = await registered()
    const lost = (await phoneHome(s, bootstrap)).json().token as string
    const retried = await phoneHome(s, bootstrap)
    expect(retried.status).toBe(200)
    const fresh = retried.json().token as string
    expect(fresh).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect(fresh).not.toBe(lost)
    expect((await raw(s.url, `/v1/deployments/wp/instances/${DB}/config`, {token: lost})).status).toBe(401)
    expect((await raw(s.url, `/v1/deployments/wp/instances/${DB}/config`, {token: fresh})).status).toBe(200)
    // Once the node token has been used, the grace is over.
    const late = await phoneHome(s, bootstrap)
    expect(late.status).toBe(401)
    expect(late.json().error).toBe(EXCHANGED)
    expect((await phoneHome(s, fresh)).status).toBe(200)
  })

  it('two phone-homes racing with the bootstrap token: both answered, exactly one node token works', async () => {
    const {s, bootstrap} = await registered()
    const answers = await Promise.all([phoneHome(s, bootstrap), phoneHome(s, bootstrap)])
    expect(answers.map((a) => a.status)).toEqual([200, 200])
    const tokens = answers.map((a) => a.json().token as string)
    expect(new Set(tokens).size).toBe(2)
    const statuses = await Promise.all(
      tokens.map((token) => raw(s.url, `/v1/deployments/wp/instances/${DB}/hosts`, {token}).then((a) => a.status)),
    )
    expect(statuses.sort()).toEqual([200, 401])
  })

  it('the grace for a retry ends after its time even when the node token was never used', async () => {
    const {s, bootstrap} = await registered({tokenExchangeGraceSec: 1})
    const nodeToken = (await phoneHome(s, bootstrap)).json().token as string
    await new Promise((resolve) => setTimeout(resolve, 1100))
    const late = await phoneHome(s, bootstrap)
    expect(late.status).toBe(401)
    expect(late.json().error).toBe(EXCHANGED)
    expect((await phoneHome(s, nodeToken)).status).toBe(200)
    await expect(testServer({tokenExchangeGraceSec: -1})).rejects.toThrow(
      /tokenExchangeGraceSec must be a number of seconds, 0 or more/,
    )
  })

  it('reissueTokens starts the instance over with a new bootstrap token; its old tokens stop working', async () => {
    const {s, bootstrap} = await registered()
    const nodeToken = (await phoneHome(s, bootstrap)).json().token as string
    const {tokens} = await s.admin('wp').register({...seed000, reissueTokens: [DB]})
    expect(Object.keys(tokens)).toEqual([DB])
    for (const old of [nodeToken, bootstrap]) {
      const answer = await phoneHome(s, old)
      expect(answer.status).toBe(401)
      expect(answer.json().error).toMatch(/the token is not valid here/)
    }
    const again = await phoneHome(s, tokens[DB])
    expect(again.status).toBe(200)
    expect(await instanceRoutes(s, again.json().token as string)).toEqual([200, 200, 200, 200, 200])
    expect((await phoneHome(s, tokens[DB])).status).toBe(401)
    // Registering again without reissueTokens keeps the exchange as it is.
    await s.admin('wp').register(seed000)
    expect(await instanceRoutes(s, again.json().token as string)).toEqual([200, 200, 200, 200, 200])
    expect((await phoneHome(s, tokens[DB])).status).toBe(401)
  })

  it('a restart keeps the exchange, the node token and the end of the grace', async () => {
    const {s, bootstrap} = await registered()
    const nodeToken = (await phoneHome(s, bootstrap)).json().token as string
    expect((await raw(s.url, `/v1/deployments/wp/instances/${DB}/config`, {token: nodeToken})).status).toBe(200)
    await s.close()
    server = await testServer({stateDir: s.stateDir})
    expect(await instanceRoutes(server, nodeToken)).toEqual([200, 200, 200, 200, 200])
    // Within ten minutes of the exchange, but the node token was used before the restart: still refused.
    expect((await phoneHome(server, bootstrap)).json().error).toBe(EXCHANGED)
    // Only hashes are stored.
    const db = new Database(path.join(s.stateDir, 'configserver.sqlite'), {readonly: true})
    const row = db.prepare('SELECT token_hash, node_token_hash FROM instances WHERE id = ?').get(DB) as {
      token_hash: Buffer
      node_token_hash: Buffer
    }
    db.close()
    expect(row.token_hash.equals(hashToken(bootstrap))).toBe(true)
    expect(row.node_token_hash.equals(hashToken(nodeToken))).toBe(true)
  })

  it('opens a state of schema 1: its tokens are bootstrap tokens, exchanged at the next phone-home', async () => {
    const stateDir = tempDir()
    const bootstrap = 'Bootstrap-token-of-a-schema-1-state-0123456'
    const db = new Database(path.join(stateDir, 'configserver.sqlite'))
    db.exec(`
      CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
      CREATE TABLE deployments (name TEXT PRIMARY KEY, registered_at INTEGER NOT NULL, startup_timeout_sec INTEGER, inputs TEXT NOT NULL) STRICT;
      CREATE TABLE instances (
        deployment TEXT NOT NULL REFERENCES deployments(name) ON DELETE CASCADE, id TEXT NOT NULL, role TEXT NOT NULL, idx INTEGER NOT NULL,
        services TEXT NOT NULL, token_hash BLOB NOT NULL, facts TEXT NOT NULL DEFAULT '{}', address TEXT, first_contact INTEGER, last_contact INTEGER,
        PRIMARY KEY (deployment, id)) STRICT;
      INSERT INTO meta VALUES ('schema', '1');
      INSERT INTO deployments VALUES ('wp', 0, NULL, '{}');
    `)
    db.prepare(
      `INSERT INTO instances (deployment, id, role, idx, services, token_hash) VALUES ('wp', ?, 'service:mysql', 1, '[{"name":"mysql","params":{},"provides":[],"after":[]}]', ?)`,
    ).run(DB, hashToken(bootstrap))
    db.close()
    server = await testServer({stateDir})
    const answer = await phoneHome(server, bootstrap)
    expect(answer.status).toBe(200)
    expect(
      (await raw(server.url, `/v1/deployments/wp/instances/${DB}/roles`, {token: answer.json().token as string}))
        .status,
    ).toBe(200)
    expect((await phoneHome(server, bootstrap)).status).toBe(401)
  })
})

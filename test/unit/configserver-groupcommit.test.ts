/** The store's group commit with the WAL synced off the event loop, and the phone-home's fast paths. */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import fc from 'fast-check'
import {afterEach, describe, expect, it} from 'vitest'
import {factsAsSent} from '../../src/configserver/http.js'
import {factsRequestSchema} from '../../src/configserver/protocol.js'
import {planRegistration, writeRegistration} from '../../src/configserver/register.js'
import {Store} from '../../src/configserver/store.js'
import {hashToken, newToken} from '../../src/configserver/tokens.js'
import {writes} from '../../src/configserver/writes.js'
import {createHash} from 'node:crypto'

const dirs: string[] = []
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, {recursive: true, force: true})
})

/** A store whose WAL syncs wait until the test lets them finish (`finish`), or fail. */
function heldStore() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-gc-'))
  dirs.push(dir)
  const syncs: Array<(error: NodeJS.ErrnoException | null) => void> = []
  const store = new Store(dir, {
    syncWal: (fd, done) => syncs.push((error) => (error ? done(error) : fs.fdatasync(fd, done))),
  })
  return {store, syncs, dir}
}

const turn = () => new Promise((resolve) => setImmediate(resolve))
/** Until `check` holds, turn by turn (a real fdatasync takes a few turns). */
async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 10_000 && !check(); i++) await new Promise((resolve) => setTimeout(resolve, 1))
  expect(check()).toBe(true)
}

function registered(store: Store, n: number): Promise<unknown> {
  const body = {instances: Array.from({length: n}, (_, i) => ({id: `n${i}`, role: 'worker', services: []}))}
  return store.write((db) => writeRegistration(db, planRegistration('d', body), 1), undefined, true)
}

/** A held store with instances n0…n(n-1) registered, their sync let through. */
async function registeredStore(n: number) {
  const held = heldStore()
  const registration = registered(held.store, n)
  await turn()
  held.syncs.shift()!(null)
  await registration
  return held
}

describe('Store: group commit, answered after the WAL sync', () => {
  it('answers a commit (and applies it) only once the sync after it is done; what arrives meanwhile commits after it, in one commit', async () => {
    const {store, syncs} = await registeredStore(10)

    const applied: string[] = []
    const answered: string[] = []
    const phoneHome = (id: string) =>
      store
        .write(
          (db) => writes.facts(db, 'd', id, {k: id}, '10.0.0.1', 2),
          () => applied.push(id),
        )
        .then(() => answered.push(id))
    const first = ['n0', 'n1', 'n2'].map(phoneHome)
    await turn()
    // Committed (the next transaction sees it), one sync for the three, nobody answered yet.
    expect(syncs).toHaveLength(1)
    expect(store.db.prepare(`SELECT count(*) FROM instances WHERE address IS NOT NULL`).pluck().get()).toBe(3)
    const second = ['n3', 'n4'].map(phoneHome)
    await turn()
    await turn()
    expect(syncs).toHaveLength(1)
    expect(applied).toEqual([])
    expect(answered).toEqual([])
    // Not committed while the sync runs: they wait for it, and then commit together.
    const contacted = () => store.db.prepare(`SELECT count(*) FROM instances WHERE address IS NOT NULL`).pluck().get()
    expect(contacted()).toBe(3)

    syncs.shift()!(null)
    await Promise.all(first)
    expect(answered).toEqual(['n0', 'n1', 'n2'])
    expect(applied).toEqual(['n0', 'n1', 'n2'])
    // The writes that waited commit once the first sync is done, and get a sync of their own.
    await until(() => syncs.length === 1)
    expect(contacted()).toBe(5)
    syncs.shift()!(null)
    await Promise.all(second)
    expect(answered).toEqual(['n0', 'n1', 'n2', 'n3', 'n4'])
    store.close()
  })

  it('a failing op fails alone in its batch, and is told after the sync like the others', async () => {
    const {store, syncs} = await registeredStore(3)
    const tooMany = Object.fromEntries(Array.from({length: 300}, (_, i) => [`k${i}`, i]))
    const results = Promise.allSettled([
      store.write((db) => writes.facts(db, 'd', 'n0', {a: 1}, '10.0.0.1', 2)),
      store.write((db) => writes.facts(db, 'd', 'n1', tooMany, '10.0.0.2', 2)),
      store.write((db) => writes.facts(db, 'd', 'n2', {c: 3}, '10.0.0.3', 2)),
    ])
    await until(() => syncs.length === 1)
    syncs.shift()!(null)
    const [a, b, c] = await results
    expect(a).toEqual({status: 'fulfilled', value: 1})
    expect(b.status).toBe('rejected')
    expect((b as PromiseRejectedResult).reason.statusCode).toBe(413)
    expect(c).toEqual({status: 'fulfilled', value: 1})
    const facts = store.db.prepare(`SELECT id, facts FROM instances ORDER BY id`).all()
    expect(facts).toEqual([
      {id: 'n0', facts: '{"a":1}'},
      {id: 'n1', facts: '{}'},
      {id: 'n2', facts: '{"c":3}'},
    ])
    store.close()
  })

  it('a sync that fails refuses its commits and every write after it (the state may not be on disk)', async () => {
    const {store, syncs} = heldStore()
    const write = store.write(() => 1)
    await turn()
    // Queued behind the failing sync, not yet committed: refused too, not left waiting.
    const waiting = store.write(() => 3)
    syncs.shift()!(Object.assign(new Error('EIO: i/o error, fdatasync'), {code: 'EIO'}))
    await expect(write).rejects.toMatchObject({code: 'SQLITE_IOERR_FSYNC'})
    await expect(waiting).rejects.toMatchObject({code: 'SQLITE_IOERR_FSYNC'})
    await expect(store.write(() => 2)).rejects.toMatchObject({code: 'SQLITE_IOERR_FSYNC'})
    store.close()
  })

  it('closing with a sync in flight syncs and answers everything, and the late sync does no harm', async () => {
    const {store, syncs, dir} = heldStore()
    const registration = registered(store, 2)
    await turn()
    const late = syncs.shift()!
    const queued = store.write((db) => writes.facts(db, 'd', 'n1', {b: 2}, '10.0.0.2', 3))
    store.close()
    await registration
    expect(await queued).toBe(1)
    late(null)
    const reopened = new Store(dir)
    expect(reopened.db.prepare(`SELECT facts FROM instances WHERE id = 'n1'`).pluck().get()).toBe('{"b":2}')
    reopened.close()
  })

  it('syncing each commit (a federated server) answers without the store syncing the WAL itself', async () => {
    const {store, syncs} = heldStore()
    store.syncEachCommit()
    expect(store.db.pragma('synchronous', {simple: true})).toBe(2)
    expect(await store.write(() => 7)).toBe(7)
    expect(syncs).toHaveLength(0)
    store.close()
  })
})

describe('phone-home fast paths', () => {
  const factValue = fc.oneof(
    fc.string({maxLength: 20}),
    fc.constant('x'.repeat(16385)),
    fc.array(fc.string({maxLength: 5}), {maxLength: 3}),
    fc.array(fc.oneof(fc.string(), fc.integer()), {maxLength: 3}),
    fc.constant(Array.from({length: 65}, () => 'a')),
    fc.double(),
    fc.integer(),
    fc.boolean(),
    fc.constant(null),
    fc.object({maxDepth: 1}),
  )
  const factKey = fc.oneof(
    fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_.-]{0,5}$/),
    fc.string({maxLength: 6}),
    fc.constant('a'.repeat(129)),
    fc.constant('__proto__'),
  )
  const body = fc.oneof(
    fc.record({facts: fc.dictionary(factKey, factValue, {maxKeys: 5})}),
    fc.record({facts: fc.dictionary(factKey, factValue, {maxKeys: 3}), extra: fc.anything()}),
    fc.anything(),
  )

  it('a body the quick check takes is one the schema takes, with the same value', () => {
    fc.assert(
      fc.property(body, (value) => {
        const parsed = factsRequestSchema.safeParse(value)
        if (factsAsSent(value)) {
          expect(parsed.success).toBe(true)
          expect(parsed.data).toEqual(value)
        }
      }),
      {numRuns: 3000},
    )
  })

  it('the quick check takes the bodies agents send', () => {
    expect(
      factsAsSent({
        facts: {hostname: 'app1', private_ip: '10.1.2.3', ssh_host_keys: ['ssh-ed25519 AAAA root@host'], port: 22},
      }),
    ).toBe(true)
    expect(factsAsSent(JSON.parse('{"facts":{"ok":true}}'))).toBe(true)
    expect(factsAsSent({facts: {ok: true}, more: 1})).toBe(false)
  })

  it("a first contact stores the facts as sent: the text SQLite's merge into no facts makes of them", async () => {
    const {store} = await registeredStore(1)
    const db = store.db
    const validFacts = fc.dictionary(
      fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_.-]{0,8}$/),
      fc.oneof(
        fc.string({unit: 'binary'}),
        fc.string({unit: fc.constantFrom('"', '\\', '/', '\n', '\u0000', '\u007f', '\u2028', '\ud800', 'é')}),
        fc.array(fc.string({unit: 'binary', maxLength: 8}), {maxLength: 4}),
        fc.double({noNaN: true, noDefaultInfinity: true}),
        fc.integer(),
        fc.constantFrom(1e21, 5e-324, -0, 2 ** 53 + 2, 0.1),
        fc.boolean(),
      ),
      {maxKeys: 6},
    )
    fc.assert(
      fc.property(validFacts, (facts) => {
        db.prepare(`UPDATE instances SET facts = '{}' WHERE id = 'n0'`).run()
        expect(writes.facts(db, 'd', 'n0', facts, '10.0.0.1', 2)).toBe(1)
        const stored = db.prepare(`SELECT facts FROM instances WHERE id = 'n0'`).pluck().get()
        expect(stored).toBe(db.prepare(`SELECT json_patch('{}', ?)`).pluck().get(JSON.stringify(facts)))
        // A later contact merges into them.
        writes.facts(db, 'd', 'n0', {later: true}, '10.0.0.1', 3)
        const merged = db.prepare(`SELECT facts FROM instances WHERE id = 'n0'`).pluck().get() as string
        expect(JSON.parse(merged)).toEqual({...JSON.parse(JSON.stringify(facts)), later: true})
      }),
      {numRuns: 500},
    )
    store.close()
  })

  it('tokens drawn from the pooled randomness are distinct 32-byte base64url strings, across refills', () => {
    const tokens = Array.from({length: 1000}, () => newToken())
    expect(new Set(tokens).size).toBe(tokens.length)
    for (const token of tokens) {
      expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/)
      expect(Buffer.from(token, 'base64url')).toHaveLength(32)
    }
  })

  it('hashToken is SHA-256 of the token', () => {
    fc.assert(
      fc.property(fc.string(), (token) => {
        expect(hashToken(token).equals(createHash('sha256').update(token).digest())).toBe(true)
      }),
    )
  })
})

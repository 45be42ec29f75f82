/**
 * The federation's parts without a broker: signatures and sealing (node:crypto), the apply decisions
 * under any delivery order (fast-check), and the outbox and apply SQL on a real SQLite state.
 */
import {generateKeyPairSync, randomBytes} from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import fc from 'fast-check'
import {afterAll, describe, expect, it} from 'vitest'
import {
  behind,
  ownership,
  type Position,
  sequenceVerdict,
  snapshotApplies,
} from '../../src/configserver/federation/apply.js'
import {
  openState,
  outboxAfter,
  positionOf,
  readInstance,
  sealState,
  writeRemote,
} from '../../src/configserver/federation/fedstore.js'
import {open, parseKeys, seal, signBody, verifyBody} from '../../src/configserver/federation/keys.js'
import {messageSchema} from '../../src/configserver/federation/messages.js'
import {Outbox} from '../../src/configserver/federation/outbox.js'
import {planRegistration} from '../../src/configserver/register.js'
import {startConfigServer} from '../../src/configserver/server.js'
import {SqliteStore} from '../../src/configserver/sqlitestore.js'

const pair = () => {
  const {privateKey, publicKey} = generateKeyPairSync('ed25519')
  return {
    private: privateKey.export({type: 'pkcs8', format: 'pem'}).toString(),
    public: publicKey.export({type: 'spki', format: 'pem'}).toString(),
  }
}
const a = pair()
const b = pair()
const sealKey = randomBytes(32).toString('base64')
const keysA = parseKeys({site: 'a', signingKey: a.private, peers: {b: b.public}, sealKey})
const keysB = parseKeys({site: 'b', signingKey: b.private, peers: {a: a.public}, sealKey})

describe('signatures', () => {
  it("verify with the signer's public key only, and not once a byte changed", () => {
    fc.assert(
      fc.property(fc.uint8Array({minLength: 1, maxLength: 512}), fc.nat(), (bytes, at) => {
        const body = Buffer.from(bytes)
        const signature = signBody(body, keysA.signing)
        expect(verifyBody(body, signature, keysB.peers.get('a')!)).toBe(true)
        expect(verifyBody(body, signature, keysA.peers.get('b')!)).toBe(false)
        const changed = Buffer.from(body)
        changed[at % changed.length] ^= 1
        expect(verifyBody(changed, signature, keysB.peers.get('a')!)).toBe(false)
      }),
      {numRuns: 50},
    )
  })

  it('refuses keys that are not Ed25519 PEM, naming the field, never the value', () => {
    const rsa = generateKeyPairSync('rsa', {modulusLength: 1024}).privateKey.export({type: 'pkcs8', format: 'pem'})
    expect(() => parseKeys({site: 'a', signingKey: rsa.toString(), peers: {}, sealKey})).toThrow(/Ed25519/)
    expect(() => parseKeys({site: 'a', signingKey: 'nope', peers: {}, sealKey})).toThrow(/federation.signingKey/)
    expect(() => parseKeys({site: 'a', signingKey: a.private, peers: {b: 'x'}, sealKey})).toThrow(/peers.b/)
    expect(() => parseKeys({site: 'a', signingKey: a.private, peers: {}, sealKey: 'c2hvcnQ='})).toThrow(/32 bytes/)
    try {
      parseKeys({site: 'a', signingKey: a.private.replace('MC4', 'XX4'), peers: {}, sealKey})
    } catch (error) {
      expect((error as Error).message).not.toContain('PRIVATE KEY-----\n')
    }
  })
})

describe('sealing', () => {
  it('opens to the plaintext with the key and context, and to nothing otherwise', () => {
    fc.assert(
      fc.property(fc.string({maxLength: 300}), fc.string({maxLength: 30}), (plain, context) => {
        const sealed = seal(plain, keysA.seal, context)
        expect(sealed.includes(plain) && plain.length > 3).toBe(false)
        expect(open(sealed, keysA.seal, context)).toBe(plain)
        expect(open(sealed, randomBytes(32), context)).toBeUndefined()
        expect(open(sealed, keysA.seal, context + 'x')).toBeUndefined()
        const bytes = Buffer.from(sealed, 'base64')
        bytes[bytes.length - 1] ^= 1
        expect(open(bytes.toString('base64'), keysA.seal, context)).toBeUndefined()
      }),
      {numRuns: 100},
    )
  })

  it("an instance's outputs cross sealed and bound to that instance and service", () => {
    const state = {
      facts: {hostname: 'db'},
      address: '10.0.0.5',
      runs: {mysql: {state: 'succeeded' as const, outputs: {password: 'hunter2-long'}}},
    }
    const sealed = sealState(state, keysA.seal, 'd', 'a', 'db')
    expect(JSON.stringify(sealed)).not.toContain('hunter2-long')
    expect(openState(sealed, keysB.seal, 'd', 'a', 'db')).toEqual(state)
    expect(openState(sealed, keysB.seal, 'd', 'a', 'other')).toBeUndefined()
    expect(openState(sealed, keysB.seal, 'd', 'b', 'db')).toBeUndefined()
  })
})

describe('apply decisions', () => {
  it('a message applies when next, is a replay when not newer, and a gap when one is missing', () => {
    expect(sequenceVerdict(undefined, 'e', 1)).toBe('apply')
    expect(sequenceVerdict(undefined, 'e', 2)).toBe('gap')
    expect(sequenceVerdict({epoch: 'e', seq: 4}, 'e', 4)).toBe('replayed')
    expect(sequenceVerdict({epoch: 'e', seq: 4}, 'e', 5)).toBe('apply')
    // A state started over numbers from 1 again.
    expect(sequenceVerdict({epoch: 'old', seq: 40}, 'new', 1)).toBe('apply')
    expect(snapshotApplies({epoch: 'e', seq: 9}, 'e', 8)).toBe(false)
    expect(snapshotApplies({epoch: 'e', seq: 9}, 'e', 9)).toBe(true)
    expect(behind({epoch: 'e', seq: 9}, 'e', 10)).toBe(true)
    expect(behind({epoch: 'e', seq: 9}, 'e', 9)).toBe(false)
  })

  it('only the owner speaks for an instance; unknown instances are no-ops', () => {
    const owners: Record<string, string | null> = {db: 'a', app: 'b', plain: null}
    expect(ownership('a', ['db'], (id) => owners[id])).toBe('owned')
    expect(ownership('a', ['db', 'app'], (id) => owners[id])).toBe('notOwner')
    expect(ownership('a', ['plain'], (id) => owners[id])).toBe('notOwner')
    expect(ownership('a', ['gone'], (id) => owners[id])).toBe('owned')
  })

  /**
   * A receiver fed the origin's messages duplicated, reordered and partly lost, with a snapshot on
   * every gap (and one at the end, as anti-entropy asks), applies each sequence at most once and
   * ends with the origin's state.
   */
  it('converges, applying each sequence at most once, under any delivery order', () => {
    const delivery = fc.array(fc.record({seq: fc.integer({min: 1, max: 30}), lost: fc.boolean()}), {maxLength: 80})
    fc.assert(
      fc.property(delivery, (arrivals) => {
        // The origin: message n sets the one instance's value to n.
        const last = 30
        let position: Position | undefined
        let value = 0
        const applied = new Map<number, number>()
        const snapshot = () => {
          if (snapshotApplies(position, 'e', last)) {
            value = last
            position = {epoch: 'e', seq: last}
          }
        }
        for (const {seq, lost} of arrivals) {
          if (lost) continue
          const verdict = sequenceVerdict(position, 'e', seq)
          if (verdict === 'apply') {
            applied.set(seq, (applied.get(seq) ?? 0) + 1)
            value = seq
            position = {epoch: 'e', seq}
          } else if (verdict === 'gap') snapshot()
        }
        if (behind(position, 'e', last)) snapshot()
        expect(value).toBe(last)
        for (const count of applied.values()) expect(count).toBe(1)
        expect([...applied.keys()]).toEqual([...applied.keys()].sort((x, y) => x - y))
      }),
      {numRuns: 300},
    )
  })
})

describe('the outbox and apply on SQLite', () => {
  const dirs: string[] = []
  afterAll(() => dirs.forEach((dir) => fs.rmSync(dir, {recursive: true, force: true})))
  const body = (site: 'a' | 'b') => ({
    instances: [
      {id: 'db', role: 'db', site: 'a', services: [{name: 'mysql', provides: ['password']}]},
      {id: 'app', role: 'app', site: 'b', services: [{name: 'web', params: {host: {template: '{{ip "db"}}'}}}]},
    ],
    federation: {
      site,
      signingKey: site === 'a' ? a.private : b.private,
      peers: site === 'a' ? {b: b.public} : {a: a.public},
      sealKey,
    },
  })
  const open = () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-fed-unit-'))
    dirs.push(dir)
    const store = new SqliteStore(dir)
    store.federate(new Outbox(() => {}))
    return store
  }

  it("queues a signed message for each change to this site's instances, in the write's transaction, and none for others'", async () => {
    const store = open()
    const tokens = await store.register(planRegistration('d', body('a')), 1, () => {})
    expect(Object.keys(tokens)).toEqual(['db'])
    await store.phoneHome('d', 'db', {facts: {hostname: 'db'}, address: '10.0.0.5', now: 2}, () => {})
    await store.report('d', 'db', 'mysql', {state: 'succeeded', outputs: {password: 'hunter2-long'}}, 3, () => {})
    const db = store.store.db
    const rows = outboxAfter(db, 'd', 0)
    expect(rows.map((r) => r.seq)).toEqual([1, 2])
    for (const row of rows) {
      expect(verifyBody(row.body, row.signature, keysB.peers.get('a')!)).toBe(true)
      expect(row.body.toString()).not.toContain('hunter2-long')
      expect(messageSchema.parse(JSON.parse(row.body.toString())).kind).toBe('instance')
    }
    // A write that fails (the instance's outputs over their limit) leaves no message either.
    await expect(
      store.report(
        'd',
        'db',
        'mysql',
        {state: 'succeeded', outputs: Object.fromEntries(Array.from({length: 300}, (_, i) => [`k${i}`, 'v']))},
        4,
        () => {},
      ),
    ).rejects.toThrow()
    expect(outboxAfter(db, 'd', 0)).toHaveLength(2)
    await store.deleteInstance('d', 'db', () => {})
    const removed = outboxAfter(db, 'd', 2)
    expect(JSON.parse(removed[0].body.toString())).toMatchObject({kind: 'removed', instance: 'db', seq: 3})
    await store.close()
  })

  it("applies another site's state to its instance only, with the position, never queueing it again", async () => {
    const store = open()
    await store.register(planRegistration('d', body('b')), 1, () => {})
    const db = store.store.db
    const state = {
      facts: {hostname: 'db'},
      address: '10.0.0.5',
      runs: {mysql: {state: 'succeeded' as const, outputs: {password: 'p'}}},
    }
    expect(writeRemote(db, 'd', 'a', 'db', state, 5)).toBe(1)
    expect(writeRemote(db, 'd', 'a', 'app', state, 5)).toBe(0)
    expect(readInstance(db, 'd', 'db')).toEqual(state)
    expect(positionOf(db, 'd', 'a')).toBeUndefined()
    expect(outboxAfter(db, 'd', 0)).toEqual([])
    await store.close()
  })
})

describe('starting a federated server', () => {
  it('needs a site and a broker together, a site name fit for routing keys, and the SQLite store', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-fed-start-'))
    try {
      await expect(startConfigServer({stateDir: dir, site: 'a'})).rejects.toThrow(/both its site .* and its broker/)
      await expect(startConfigServer({stateDir: dir, site: 'a.b', broker: {url: 'amqp://127.0.0.1'}})).rejects.toThrow(
        /site name/,
      )
      await expect(startConfigServer({stateDir: dir, site: 'a', broker: {url: 'http://127.0.0.1'}})).rejects.toThrow(
        /amqp:\/\/ or amqps:\/\//,
      )
      await expect(
        startConfigServer({
          store: 'postgresql://nodeset@127.0.0.1:1/none',
          adminToken: 'a'.repeat(32),
          site: 'a',
          broker: {url: 'amqp://127.0.0.1'},
        }),
      ).rejects.toThrow(/outbox in SQLite/)
    } finally {
      fs.rmSync(dir, {recursive: true, force: true})
    }
  })
})

/** The config server's store over real SQLite files in a temp dir: commits, their aftermath, and refusing a state that is not the one it was. */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import fc from 'fast-check'
import {afterEach, describe, expect, it} from 'vitest'
import {planRegistration, writeRegistration} from '../../src/configserver/register.js'
import {describeUrl} from '../../src/configserver/pgstore.js'
import {parseStore} from '../../src/configserver/server.js'
import {Store} from '../../src/configserver/store.js'
import {writes} from '../../src/configserver/writes.js'
import {LIMITS} from '../../src/configserver/limits.js'

const dirs: string[] = []
const stores: Store[] = []
afterEach(() => {
  for (const store of stores.splice(0)) store.close()
  for (const dir of dirs.splice(0)) fs.rmSync(dir, {recursive: true, force: true})
})

function open(dir?: string, options = {}): {store: Store; dir: string} {
  const at = dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-store-'))
  if (!dir) dirs.push(at)
  const store = new Store(at, options)
  stores.push(store)
  return {store, dir: at}
}

const registration = planRegistration('d', {
  instances: [
    {id: 'a', role: 'r', services: [{name: 's', provides: ['out']}]},
    {id: 'b', role: 'r', services: [{name: 's'}]},
  ],
})

describe('the store', () => {
  it('answers a committed write as done even when applying it to memory fails, and says so', async () => {
    const errors: unknown[] = []
    const {store} = open(undefined, {onApplyError: (error: unknown) => errors.push(error)})
    const tokens = await store.write(
      (db) => writeRegistration(db, registration, 1),
      () => {
        throw new Error('boom')
      },
      true,
    )
    expect(Object.keys(tokens).sort()).toEqual(['a', 'b'])
    expect(errors).toEqual([new Error('boom')])
    expect(store.load(store.db, 'd')?.instances).toHaveLength(2)
  })

  it('a report for an instance removed earlier in the same commit touches nothing (404), no constraint error', async () => {
    const {store} = open()
    await store.write((db) => writeRegistration(db, registration, 1), undefined, true)
    const removed = store.write((db) => writes.deleteInstance(db, 'd', 'a'))
    const report = store.write((db) => writes.run(db, 'd', 'a', 's', {state: 'succeeded', outputs: {out: 'x'}}, 2))
    const facts = store.write((db) => writes.facts(db, 'd', 'a', {k: 1}, '10.0.0.1', 2))
    expect(await Promise.all([removed, report, facts])).toEqual([1, 0, 0])
    const gone = store.write((db) => writes.deleteDeployment(db, 'd'))
    const late = store.write((db) => writes.run(db, 'd', 'b', 's', {state: 'running', outputs: {}}, 3))
    expect(await Promise.all([gone, late])).toEqual([1, 0])
  })

  it('refuses to open a state file that is not the one its directory had', async () => {
    const first = open()
    await first.store.write((db) => writeRegistration(db, registration, 1), undefined, true)
    first.store.close()
    const other = open()
    other.store.close()
    fs.copyFileSync(path.join(other.dir, 'configserver.sqlite'), path.join(first.dir, 'configserver.sqlite'))
    expect(() => new Store(first.dir)).toThrow(/configserver\.sqlite is not the state this directory had/)
    // With the marker moved away, the file opens as what it is.
    fs.rmSync(path.join(first.dir, 'configserver.id'))
    const reopened = open(first.dir)
    expect(reopened.store.deploymentNames()).toEqual([])
  })
})

/** One phone-home (or a node token's first use) of a generated sequence. */
interface Step {
  id: 'a' | 'b' | 'gone'
  facts: Record<string, string>
  exchange: boolean
  used: boolean
  firstContact: boolean
  /** The step commits after the ones before it, not with them. */
  newBatch: boolean
  later: number
}

const stepArb: fc.Arbitrary<Step> = fc.record({
  id: fc.constantFrom('a', 'b', 'gone'),
  facts: fc.oneof(
    {weight: 9, arbitrary: fc.dictionary(fc.constantFrom('k', 'm', 'n', 'hostname'), fc.string({maxLength: 4}))},
    // Over the key limit by itself: a 413, whatever is stored.
    {
      weight: 1,
      arbitrary: fc.constant(
        Object.fromEntries(Array.from({length: LIMITS.factsPerInstance + 1}, (_, i) => [`k${i}`, 'v'])),
      ),
    },
  ),
  exchange: fc.boolean(),
  used: fc.boolean(),
  firstContact: fc.boolean(),
  newBatch: fc.boolean(),
  later: fc.integer({min: 0, max: 60}),
})

/** The steps run on a new store, each with its hint as `hint` says: each step's outcome, and the rows as they end. */
async function runSteps(steps: Step[], hint: (step: Step) => boolean) {
  const {store} = open()
  await store.write((db) => writeRegistration(db, registration, 1), undefined, true)
  const outcomes: unknown[] = []
  let now = 10
  let batch: Array<Promise<unknown>> = []
  for (const [i, step] of steps.entries()) {
    if (step.newBatch) outcomes.push(...(await Promise.allSettled(batch)).map(settled), (batch = []).length)
    now += step.later
    const hash = Buffer.from(`hash-${i}`)
    const at = now
    batch.push(
      store.write((db) =>
        step.used && step.exchange
          ? writes.nodeTokenUsed(db, 'd', step.id, hash, at)
          : writes.phoneHome(db, 'd', step.id, {
              facts: step.facts,
              address: `10.0.0.${i % 250}`,
              now: at,
              firstContact: hint(step),
              ...(step.exchange ? {exchange: {hash, graceMs: 50}} : {}),
            }),
      ),
    )
  }
  outcomes.push(...(await Promise.allSettled(batch)).map(settled))
  const rows = store.db
    .prepare(
      'SELECT id, facts, address, first_contact, last_contact, node_token_hash, exchanged_at, node_token_used_at FROM instances ORDER BY id',
    )
    .all()
  return {outcomes, rows}
}

const settled = (result: PromiseSettledResult<unknown>) =>
  result.status === 'fulfilled'
    ? result.value
    : {refused: (result.reason as {statusCode?: number}).statusCode ?? String(result.reason)}

describe('a phone-home', () => {
  it('ends the same with the first-contact hint as without it, right or wrong (property)', async () => {
    let shortcuts = 0
    await fc.assert(
      fc.asyncProperty(fc.array(stepArb, {minLength: 1, maxLength: 12}), async (steps) => {
        const plain = await runSteps(steps, () => false)
        const hinted = await runSteps(steps, (step) => step.firstContact)
        expect(hinted).toEqual(plain)
        shortcuts += steps.filter((s) => s.firstContact && s.id !== 'gone' && !s.used).length
        for (const store of stores.splice(0)) store.close()
      }),
      {numRuns: 150},
    )
    // Not vacuous: the hint was given on steps it could take.
    expect(shortcuts).toBeGreaterThan(100)
  })
})

describe('the store option', () => {
  it('names a SQLite state directory or a PostgreSQL URL, and nothing else', () => {
    expect(parseStore(undefined, 'state')).toEqual({sqlite: path.resolve('state')})
    expect(parseStore('sqlite:/var/lib/nodeset', 'ignored')).toEqual({sqlite: '/var/lib/nodeset'})
    expect(parseStore('postgresql://cs@db/nodeset', undefined)).toEqual({postgresql: 'postgresql://cs@db/nodeset'})
    expect(parseStore('postgres://db/nodeset', undefined)).toEqual({postgresql: 'postgres://db/nodeset'})
    expect(() => parseStore('mysql://db/x', undefined)).toThrow(/sqlite:DIR or a postgresql:\/\/ URL, not mysql:/)
    expect(() => parseStore(undefined, undefined)).toThrow(/say where the state is/)
  })

  it('keeps the password of a PostgreSQL URL out of messages', () => {
    expect(describeUrl('postgresql://cs:secret@db:5432/nodeset')).toBe('PostgreSQL postgresql://cs@db:5432/nodeset')
  })
})

import fc from 'fast-check'
import {describe, expect, it} from 'vitest'
import {type InstanceRecord, Registration} from '../../src/configserver/model.js'
import {
  applyRolesDelta,
  diffRoles,
  type RoleMapJson,
  RoleVersions,
  rolesVersionOf,
} from '../../src/configserver/rolemap.js'

const T0 = Date.parse('2030-01-01T00:00:00Z')

function record(id: string, role: string, index: number, address?: string): InstanceRecord {
  return {
    id,
    role,
    index,
    services: [],
    tokenHash: Buffer.alloc(32),
    facts: {},
    runs: {},
    ...(address === undefined ? {} : {address}),
  }
}

function registration(instances: InstanceRecord[]): Registration {
  return new Registration({name: 'd', registeredAt: T0, inputs: {}, instances})
}

/** A copy that no later change of the registration reaches. */
const snapshot = (map: RoleMapJson): RoleMapJson => JSON.parse(JSON.stringify(map)) as RoleMapJson

const ids = ['a', 'b', 'c', 'd', 'e', 'f']
const operation = fc.oneof(
  fc.record({
    kind: fc.constant('phone-home' as const),
    id: fc.constantFrom(...ids),
    ip: fc.constantFrom('10.0.0.1', '10.0.0.2', '10.0.0.3'),
  }),
  fc.record({
    kind: fc.constant('register' as const),
    id: fc.constantFrom(...ids),
    role: fc.constantFrom('web', 'db', 'cache'),
    index: fc.integer({min: 1, max: 4}),
  }),
  fc.record({kind: fc.constant('remove' as const), id: fc.constantFrom(...ids)}),
)

describe('role map versions and deltas', () => {
  it('applying any delta the server gives to the map of `from` gives exactly the map of `to`', () => {
    fc.assert(
      fc.property(fc.array(operation, {minLength: 1, maxLength: 30}), fc.nat(), (operations, pick) => {
        let instances = [record('a', 'web', 1)]
        let current = registration(instances)
        const seen = new Map<string, RoleMapJson>()
        const note = () => seen.set(current.roles().version, snapshot(current.roles().map))
        note()
        for (const op of operations) {
          const known = instances.find((i) => i.id === op.id)
          if (op.kind === 'phone-home') {
            if (known) current.recordFacts(op.id, {}, op.ip, T0)
          } else {
            // A registration or a removal replaces the deployment, keeping what each instance reported.
            const kept = instances.filter((i) => i.id !== op.id).map((i) => ({...i, ...addressOf(current, i.id)}))
            const added =
              op.kind === 'register' ? [record(op.id, op.role, op.index, addressOf(current, op.id).address)] : []
            instances = [...kept, ...added]
            if (instances.length === 0) continue
            current = registration(instances)
          }
          note()
          // The version just left is known: its delta rebuilds the current map exactly.
          const versions = [...seen.keys()]
          const from = versions[pick % versions.length]
          const delta = current.rolesDelta(from)
          expect(delta).toBeDefined()
          const parsed = JSON.parse(delta!.toString()) as ReturnType<typeof diffRoles>
          expect(parsed.from).toBe(from)
          expect(parsed.to).toBe(current.roles().version)
          const rebuilt = applyRolesDelta(seen.get(from)!, parsed)
          expect(JSON.stringify(rebuilt)).toBe(current.roles().json.toString())
          expect(rolesVersionOf(rebuilt)).toBe(parsed.to)
        }
      }),
      {numRuns: 300},
    )
  })

  it('a version names the content: the same map has the same version whoever built it', () => {
    const one = registration([record('a', 'web', 1, '10.0.0.1'), record('b', 'db', 1)])
    const two = registration([record('b', 'db', 1), record('a', 'web', 1, '10.0.0.1')])
    expect(one.roles().version).toBe(two.roles().version)
    expect(Object.keys(one.roles().map)).toEqual(['db', 'web'])
    two.recordFacts('b', {}, '10.0.0.2', T0)
    expect(two.roles().version).not.toBe(one.roles().version)
  })

  it('an unchanged map is an empty delta; an unknown version none', () => {
    const d = registration([record('a', 'web', 1)])
    const version = d.roles().version
    expect(JSON.parse(d.rolesDelta(version)!.toString())).toEqual({from: version, to: version})
    expect(d.rolesDelta('never-served')).toBeUndefined()
  })

  it('a phone-home is the address alone; a new member its whole role', () => {
    const before: RoleMapJson = {db: [{name: 'db1'}], web: [{name: 'w1'}, {name: 'w2', ip: '10.0.0.2'}]}
    const after: RoleMapJson = {db: [{name: 'db1', ip: '10.0.0.9'}], web: [{name: 'w1'}, {name: 'w3'}, {name: 'w2'}]}
    expect(diffRoles('x', before, 'y', after)).toEqual({
      from: 'x',
      to: 'y',
      roles: {web: [{name: 'w1'}, {name: 'w3'}, {name: 'w2'}]},
      addresses: {db1: '10.0.0.9'},
    })
    expect(diffRoles('y', after, 'z', {web: after.web})).toEqual({from: 'y', to: 'z', roles: {db: null}})
  })

  it('keeps maps up to its bound of members, forgetting the least recently used', () => {
    const versions = new RoleVersions(10)
    const map = (n: number): RoleMapJson => ({r: Array.from({length: n}, (_, i) => ({name: `m${i}`}))})
    versions.remember('one', map(4))
    versions.remember('two', map(4))
    versions.remember('one', map(4))
    versions.remember('three', map(4))
    expect(versions.get('one')).toBeDefined()
    expect(versions.get('two')).toBeUndefined()
    expect(versions.get('three')).toBeDefined()
    versions.remember('big', map(50))
    expect(versions.get('big')).toBeDefined()
    expect(versions.get('one')).toBeUndefined()
  })
})

function addressOf(registration: Registration, id: string): {address?: string} {
  const address = registration.instance(id)?.address
  return address === undefined ? {} : {address}
}

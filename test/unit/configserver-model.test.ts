import fc from 'fast-check'
import {describe, expect, it} from 'vitest'
import {HttpError} from '../../src/configserver/errors.js'
import {
  checkInstances,
  Registration,
  type InstanceRecord,
  type RegistrationRecord,
} from '../../src/configserver/model.js'
import {type ServiceSpec, serviceSpecSchema} from '../../src/configserver/protocol.js'
import {planRegistration} from '../../src/configserver/register.js'
import {extractRefs, missingValues, renderTemplate, type World} from '../../src/plan/template.js'

const service = (spec: Partial<ServiceSpec> & {name: string}): ServiceSpec => serviceSpecSchema.parse(spec)

function instance(
  id: string,
  role: string,
  index: number,
  services: ServiceSpec[],
  extra: Partial<InstanceRecord> = {},
): InstanceRecord {
  return {id, role, index, services, tokenHash: Buffer.alloc(32), facts: {}, runs: {}, ...extra}
}

function deployment(instances: InstanceRecord[], extra: Partial<RegistrationRecord> = {}): Registration {
  return new Registration({
    name: 'd',
    registeredAt: Date.parse('2030-01-01T00:00:00Z'),
    inputs: {},
    instances,
    ...extra,
  })
}

const T0 = Date.parse('2030-01-01T00:00:00Z')

describe('resolution', () => {
  it('constants and inputs at once; templates once what they name is known', () => {
    const d = deployment(
      [
        instance('db', 'service:db', 1, [service({name: 'db', provides: ['password']})]),
        instance('app', 'appserver', 1, [
          service({
            name: 'app',
            params: {
              site: {value: 'blog'},
              when: {input: true},
              host: {template: 'mysql://{{ip "service:db"}}/{{output "db" "password"}}'},
            },
          }),
        ]),
      ],
      {inputs: {app: {app: {when: 'now'}}}},
    )
    const app = d.instance('app')!
    expect(d.config(app)).toEqual({
      deployment: 'd',
      instance: 'app',
      role: 'appserver',
      complete: false,
      services: {app: {complete: false, params: {site: 'blog', when: 'now'}}},
      waiting: [
        {service: 'app', param: 'host', kind: 'fact', instance: 'db', key: 'ip'},
        {service: 'app', param: 'host', kind: 'output', instance: 'db', outputService: 'db', key: 'password'},
      ],
    })
    expect(d.recordFacts('db', {hostname: 'db'}, '10.0.0.5', T0).sort()).toEqual(['app', 'db'])
    expect(d.config(app).waiting).toEqual([
      {service: 'app', param: 'host', kind: 'output', instance: 'db', outputService: 'db', key: 'password'},
    ])
    d.recordRun('db', 'db', {state: 'succeeded', exitCode: 0, outputs: {password: 'pw'}}, T0)
    expect(d.config(app).services.app).toEqual({
      complete: true,
      params: {site: 'blog', when: 'now', host: 'mysql://10.0.0.5/pw'},
    })
    // A later phone-home from another address changes the value (the cache follows).
    d.recordFacts('db', {}, '10.0.0.6', T0 + 1)
    expect(d.config(app).services.app.params.host).toBe('mysql://10.0.0.6/pw')
  })

  it('`nodes ROLE` waits for every member, and lists them in index order', () => {
    const d = deployment([
      instance('app2', 'appserver', 2, []),
      instance('app1', 'appserver', 1, []),
      instance('lb', 'balancer', 1, [
        service({name: 'lb', params: {upstream: {template: '{{#each (nodes "appserver")}}{{name}}={{ip}};{{/each}}'}}}),
      ]),
    ])
    const lb = d.instance('lb')!
    d.recordFacts('app2', {}, '10.0.0.2', T0)
    expect(d.config(lb).waiting).toEqual([
      {service: 'lb', param: 'upstream', kind: 'fact', instance: 'app1', key: 'ip'},
    ])
    d.recordFacts('app1', {}, '10.0.0.1', T0)
    expect(d.config(lb).services.lb.params.upstream).toBe('app1=10.0.0.1;app2=10.0.0.2;')
    expect(d.roles().map).toEqual({
      appserver: [
        {name: 'app1', ip: '10.0.0.1'},
        {name: 'app2', ip: '10.0.0.2'},
      ],
      balancer: [{name: 'lb'}],
    })
  })

  it('renders per instance when a template reads the instance itself', () => {
    const params = {id: {template: '{{name}}#{{n}} via {{ip "db"}} from {{ip}}'}}
    const d = deployment([
      instance('db', 'db', 1, []),
      instance('a1', 'app', 1, [service({name: 's', params})]),
      instance('a2', 'app', 2, [service({name: 's', params})]),
    ])
    d.recordFacts('db', {}, '10.0.0.9', T0)
    d.recordFacts('a1', {}, '10.0.0.1', T0)
    expect(d.config(d.instance('a1')!).services.s.params.id).toBe('a1#1 via 10.0.0.9 from 10.0.0.1')
    expect(d.config(d.instance('a2')!).services.s.params.id).toBe('a2#2 via 10.0.0.9 from ')
  })

  it('knows whose config a change may complete: by node name and by role', () => {
    const d = deployment([
      instance('db', 'service:db', 1, []),
      instance('byname', 'x', 1, [service({name: 's', params: {a: {template: '{{ip "db"}}'}}})]),
      instance('byrole', 'x', 2, [service({name: 's', params: {a: {template: '{{ip "service:db"}}'}}})]),
      instance('other', 'x', 3, [
        service({name: 's', params: {a: {template: '{{ip "byname"}}'}, b: {value: '{{ip "db"}}'}}}),
      ]),
    ])
    expect(d.dependentsOf('db').sort()).toEqual(['byname', 'byrole', 'db'])
    expect(d.dependentsOf('byname').sort()).toEqual(['byname', 'other'])
  })

  // Five nodes of three roles; each renders one template naming the others (or itself).
  const names = ['a', 'b', 'c', 'd', 'e']
  const roles = ['r1', 'r2', 'service:db']
  const refArb = fc.oneof(
    fc.constantFrom(...names, ...roles).map((t) => `{{ip "${t}"}}`),
    fc.constantFrom(...names, ...roles).map((t) => `{{hostname "${t}"}}`),
    fc.constantFrom(...names, ...roles).map((t) => `{{output "${t}" "k"}}`),
    fc.constantFrom(...roles).map((t) => `{{#each (nodes "${t}")}}{{name}}@{{ip}},{{/each}}`),
    fc.constant('{{name}}:{{n}}'),
    fc.constant('-'),
  )
  const knownArb = fc.record({
    ip: fc.option(fc.ipV4(), {nil: undefined}),
    hostname: fc.option(fc.stringMatching(/^[a-z]{1,8}$/), {nil: undefined}),
    k: fc.option(fc.stringMatching(/^[a-z0-9]{1,8}$/), {nil: undefined}),
  })
  type Known = {ip?: string; hostname?: string; k?: string}
  const exactly = {minLength: names.length, maxLength: names.length}
  const layoutArb = fc.record({
    roleOf: fc.array(fc.constantFrom(...roles), exactly),
    templates: fc.array(
      fc.array(refArb, {minLength: 1, maxLength: 3}).map((parts) => parts.join(' ')),
      exactly,
    ),
  })

  function deploymentOf(roleOf: string[], templates: string[]): Registration {
    return deployment(
      names.map((name, i) =>
        instance(name, roleOf[i], i + 1, [
          service({name: 'main', params: {p: {template: templates[i]}}}),
          service({name: 'out', provides: ['k']}),
        ]),
      ),
    )
  }

  /** Tell the deployment what node `i` knows now, as a phone-home and a service report would. */
  function learn(d: Registration, i: number, known: Known, now: number) {
    if (known.ip !== undefined)
      d.recordFacts(names[i], known.hostname === undefined ? {} : {hostname: known.hostname}, known.ip, now)
    if (known.k !== undefined) d.recordRun(names[i], 'out', {state: 'succeeded', outputs: {k: known.k}}, now)
  }

  /** Each config agrees with rendering afresh over the whole deployment as `known` describes it. */
  function expectFreshRenders(d: Registration, roleOf: string[], templates: string[], known: Known[]) {
    const world: World = {
      nodes: names.map((name, i) => ({
        name,
        role: roleOf[i],
        index: i + 1,
        facts:
          known[i].ip === undefined
            ? {}
            : {ip: known[i].ip, ...(known[i].hostname === undefined ? {} : {hostname: known[i].hostname})},
        outputs: known[i].k === undefined ? {} : ({out: {k: known[i].k!}} as Record<string, Record<string, string>>),
        provides: {main: [], out: ['k']},
      })),
    }
    names.forEach((name, i) => {
      const resolved = d.config(d.instance(name)!).services.main
      const self = world.nodes[i]
      let expected: string | undefined
      try {
        expected = renderTemplate(templates[i], world, {
          ...self.facts,
          name,
          role: self.role,
          index: self.index,
          n: self.index,
          facts: self.facts,
          outputs: self.outputs,
        })
      } catch {
        expected = undefined
      }
      expect(resolved.complete).toBe(missingValues(extractRefs(templates[i]), world).length === 0)
      if (resolved.complete) expect(resolved.params.p).toBe(expected)
      else expect(resolved.params.p).toBeUndefined()
    })
  }

  it('agrees with rendering over the whole deployment (property)', () => {
    fc.assert(
      fc.property(layoutArb, fc.array(knownArb, exactly), ({roleOf, templates}, known) => {
        const d = deploymentOf(roleOf, templates)
        known.forEach((k, i) => learn(d, i, k, T0))
        expectFreshRenders(d, roleOf, templates, known)
      }),
      {numRuns: 300},
    )
  })

  // What is rendered is remembered (per template and the nodes it names): after every change, read
  // after read, no config may show a value of before it.
  it('agrees with rendering afresh after every change, what was rendered before remembered (property)', () => {
    const changeArb = fc.record({node: fc.integer({min: 0, max: names.length - 1}), known: knownArb})
    fc.assert(
      fc.property(layoutArb, fc.array(changeArb, {minLength: 1, maxLength: 12}), ({roleOf, templates}, changes) => {
        const d = deploymentOf(roleOf, templates)
        const known: Known[] = names.map(() => ({}))
        expectFreshRenders(d, roleOf, templates, known)
        changes.forEach((change, step) => {
          // What the node reported before stays unless reported again (facts and outputs merge).
          const before = known[change.node]
          known[change.node] = {
            ip: change.known.ip ?? before.ip,
            hostname: change.known.ip === undefined ? before.hostname : (change.known.hostname ?? before.hostname),
            k: change.known.k ?? before.k,
          }
          learn(d, change.node, change.known, T0 + step)
          expectFreshRenders(d, roleOf, templates, known)
        })
      }),
      {numRuns: 300},
    )
  })
})

describe('status', () => {
  const build = (startupTimeoutSec?: number) =>
    deployment(
      [
        instance('db', 'service:db', 1, [
          service({name: 'setup'}),
          service({name: 'db', provides: ['password'], after: ['setup']}),
        ]),
        instance('app', 'appserver', 1, [
          service({name: 'app', params: {pw: {template: '{{output "db" "password"}}'}}}),
        ]),
      ],
      startupTimeoutSec === undefined ? {} : {startupTimeoutSec},
    )

  it('waiting (on what, `after` included), ready, running, succeeded; settled when all succeeded', () => {
    const d = build()
    const services = () => d.status(T0).instances.flatMap((i) => i.services)
    expect(services()).toEqual([
      {name: 'setup', status: 'ready'},
      {name: 'db', status: 'waiting', waitingFor: ['db/setup to succeed']},
      {name: 'app', status: 'waiting', waitingFor: ['output password of db/db']},
    ])
    d.recordRun('db', 'setup', {state: 'running', outputs: {}}, T0)
    expect(services()[0]).toEqual({name: 'setup', status: 'running'})
    d.recordRun('db', 'setup', {state: 'succeeded', exitCode: 0, outputs: {}}, T0)
    expect(services()[1]).toEqual({name: 'db', status: 'ready'})
    d.recordRun('db', 'db', {state: 'succeeded', exitCode: 0, outputs: {password: 'x'}}, T0)
    expect(services()[2]).toEqual({name: 'app', status: 'ready'})
    expect(d.status(T0).state).toBe('pending')
    d.recordRun('app', 'app', {state: 'succeeded', exitCode: 0, outputs: {}}, T0)
    expect(d.status(T0)).toMatchObject({state: 'settled', registeredAt: '2030-01-01T00:00:00.000Z'})
    expect(d.status(T0).reason).toBeUndefined()
  })

  it('a failure wins over the deadline, and names the service and its exit code', () => {
    const d = build(10)
    d.recordRun('db', 'setup', {state: 'failed', exitCode: 7, outputs: {}, message: 'disk full'}, T0)
    const status = d.status(T0 + 60_000)
    expect(status.state).toBe('failed')
    expect(status.reason).toBe('1 service failed: db/setup (exit code 7)')
    expect(status.instances[0].services[0]).toEqual({
      name: 'setup',
      status: 'failed',
      exitCode: 7,
      message: 'disk full',
    })
    expect(status.instances[0].services[1].status).toBe('timed out')
  })

  it('the deadline: before it, pending; after it, every service not started is timed out', () => {
    const d = build(10)
    d.recordRun('db', 'setup', {state: 'running', outputs: {}}, T0)
    expect(d.status(T0 + 10_000).state).toBe('pending')
    const status = d.status(T0 + 10_001)
    expect(status).toMatchObject({state: 'failed', deadline: '2030-01-01T00:00:10.000Z'})
    expect(status.reason).toBe(
      'the startup deadline 2030-01-01T00:00:10.000Z passed with 2 services not started: db/db, app/app',
    )
    expect(status.instances.flatMap((i) => i.services.map((s) => s.status))).toEqual([
      'running',
      'timed out',
      'timed out',
    ])
  })

  it('lists at most ten services in a reason', () => {
    const d = deployment(
      Array.from({length: 13}, (_, i) => instance(`n${i}`, 'r', i + 1, [service({name: 's'})])),
      {startupTimeoutSec: 1},
    )
    expect(d.status(T0 + 2000).reason).toMatch(/13 services not started: n0\/s, .*, n9\/s and 3 more$/)
  })
})

describe('registration checks', () => {
  const expectProblems = (body: unknown, messages: RegExp[]) => {
    try {
      planRegistration('d', body)
    } catch (error) {
      expect(error).toBeInstanceOf(HttpError)
      const e = error as HttpError
      expect(e.statusCode).toBe(400)
      const found = ((e.extra.diagnostics ?? e.extra.issues) as Array<{message: string}>).map((d) => d.message)
      expect(found).toHaveLength(messages.length)
      messages.forEach((m, i) => expect(found[i]).toMatch(m))
      return
    }
    throw new Error('expected a 400')
  }

  it('refuses duplicate instances and services, unknown `after`, reissuing unknown instances', () => {
    expectProblems(
      {
        instances: [
          {id: 'a', role: 'r', services: [{name: 's'}, {name: 's'}]},
          {id: 'a', role: 'r', services: [{name: 't', after: ['nope']}]},
        ],
        reissueTokens: ['ghost'],
      },
      [
        /instance a runs service s twice/,
        /instance a is listed twice/,
        /service t of a runs after "nope", which a does not run/,
        /reissueTokens names ghost/,
      ],
    )
  })

  it('refuses unknown fields and bad values, saying where', () => {
    const issues = (body: unknown) => {
      try {
        planRegistration('d', body)
      } catch (error) {
        return (error as HttpError).extra.issues
      }
      throw new Error('expected a 400')
    }
    expect(
      issues({instances: [{id: 'a', role: 'r', services: [{name: 's', params: {p: {value: 'x', extra: 1}}}]}]}),
    ).toEqual([{path: 'instances.0.services.0.params.p', message: 'Unrecognized key: "extra"'}])
    expect(issues({instances: [], startupTimeoutSec: -1})).toEqual([
      {path: 'startupTimeoutSec', message: 'Too small: expected number to be >0'},
      {path: 'instances', message: 'Too small: expected array to have >=1 items'},
    ])
  })

  it('numbers instances within their role when no index is given', () => {
    const plan = planRegistration('d', {
      instances: [
        {id: 'a', role: 'r'},
        {id: 'b', role: 'q'},
        {id: 'c', role: 'r'},
        {id: 'd', role: 'r', index: 7},
      ],
    })
    expect(plan.instances.map((i) => [i.id, i.index])).toEqual([
      ['a', 1],
      ['b', 1],
      ['c', 2],
      ['d', 7],
    ])
  })

  it('hands templates to the graph checks; constants (which may hold `{{`) and inputs not', () => {
    const [checked] = checkInstances([
      {
        id: 'a',
        role: 'r',
        index: 1,
        services: [
          service({
            name: 's',
            params: {
              c: {value: 'pa{{ss', secret: true},
              t: {template: '{{ip "a"}}', source: {file: 'f', line: 2}},
              i: {input: true},
            },
          }),
        ],
      },
    ])
    expect(checked.services[0].params).toEqual([{name: 't', value: '{{ip "a"}}', source: {file: 'f', line: 2}}])
  })
})

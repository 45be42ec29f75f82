import fc from 'fast-check'
import {describe, expect, it} from 'vitest'
import {analyze, type CheckInstance, type CheckService} from '../../src/plan/check.js'
import {referenceAnalyze} from './plan-reference.js'

// Deployments with every kind of reference and mistake: the numbered graph, the shared param checks
// and the scanner must leave analyze's answer exactly as it was, problems and their order included.
// `x/y` + `web` and `x` + `y/web` name one vertex, as two services named alike on one node do.
const ids = ['db', 'app1', 'app2', 'lb', 'cache', 'x', 'x/y']
const roles = ['db', 'app', 'lb', 'service:mysql']
const serviceNames = ['mysql', 'web', 'nginx', 'svc', 'y/web']
const keys = ['port', 'password', 'value', 'url']
const target = fc.constantFrom(...ids, ...roles, 'nowhere', 'ap')
const q = (s: string) => `"${s}"`

const template = fc.oneof(
  fc.tuple(target, fc.constantFrom(...keys)).map(([t, k]) => `{{output ${q(t)} ${q(k)}}}`),
  fc
    .tuple(target, fc.constantFrom(...serviceNames, 'nope'), fc.constantFrom(...keys))
    .map(([t, s, k]) => `{{output ${q(t)} ${q(s)} ${q(k)}}}`),
  fc.tuple(fc.constantFrom('ip', 'hostname', 'private_ip'), target).map(([h, t]) => `{{${h} ${q(t)}}}`),
  fc.tuple(target, fc.constantFrom('sshd_port', 'ip')).map(([t, k]) => `{{fact ${q(t)} ${q(k)}}}`),
  target.map((t) => `{{#each (nodes ${q(t)})}}{{ip}} {{/each}}`),
  target.map((t) => `{{#each (nodes ${q(t)})}}{{output "db" "port"}}{{/each}}`),
  fc.constantFrom(
    'plain text',
    '{{name}}:{{index}}',
    '{{facts.sshd_port}}',
    '{{params.port}}',
    '{{output db "port"}}',
    '{{output "db"}}',
    '{{nodes "app"}}',
    '{{bogus "x"}}',
    '{{ip "db"',
    '{{#if x}}',
    '\\{{ip "db"}}',
    '{{! comment }}{{ip "db"}}',
  ),
)
const text = fc
  .array(fc.oneof(template, fc.constantFrom('x', ' ', '\n', '://')), {minLength: 1, maxLength: 3})
  .map((parts) => parts.join(''))

const service: fc.Arbitrary<CheckService> = fc.record(
  {
    name: fc.constantFrom(...serviceNames),
    params: fc.array(
      fc.record(
        {
          name: fc.constantFrom('p', 'q', 'port'),
          value: text,
          source: fc.option(fc.record({file: fc.constant('x.conf'), line: fc.integer({min: 1, max: 9})}), {
            nil: undefined,
          }),
        },
        {requiredKeys: ['name', 'value']},
      ),
      {maxLength: 3},
    ),
    provides: fc.subarray(keys),
    after: fc.subarray([...serviceNames, 'ghost']),
    body: fc.option(
      fc.record({
        text: fc.oneof(text, fc.constant('#!/bin/sh\n{{#each locations}}{{url}}{{/each}}{{> part}}{{params.p}}\n')),
        file: fc.constant('setup.sh.hbs'),
        partials: fc.constant({part: {text: 'echo {{ip "db"}} {{output "app" "value"}}', file: 'part.hbs'}}),
      }),
      {nil: undefined},
    ),
  },
  {requiredKeys: ['name', 'params', 'provides', 'after']},
)

const deployment: fc.Arbitrary<CheckInstance[]> = fc.array(
  fc.record({
    id: fc.constantFrom(...ids),
    role: fc.constantFrom(...roles),
    index: fc.integer({min: 1, max: 3}),
    services: fc.array(service, {maxLength: 3}),
  }),
  {maxLength: 5},
)

describe('analyze', () => {
  it('finds what the first analyze found: references, edges, vertices and problems, in order', () => {
    fc.assert(
      fc.property(deployment, (instances) => {
        expect(analyze(instances)).toStrictEqual(referenceAnalyze(instances))
      }),
      {numRuns: 1500},
    )
  })

  it('reports a cycle through outputs the same way', () => {
    const app = (id: string, needs: string): CheckInstance => ({
      id,
      role: id,
      index: 1,
      services: [
        {name: 'svc', params: [{name: 'p', value: `{{output "${needs}" "value"}}`}], provides: ['value'], after: []},
      ],
    })
    const instances = [app('a', 'b'), app('b', 'c'), app('c', 'a'), app('d', 'd')]
    const found = analyze(instances)
    expect(found.problems.map((p) => p.message)).toEqual([
      'deadlock: 3 services wait for each other in a cycle',
      'deadlock: d/svc waits for its own output',
    ])
    expect(found).toStrictEqual(referenceAnalyze(instances))
  })
})

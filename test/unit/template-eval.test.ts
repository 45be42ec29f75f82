import fc from 'fast-check'
import Handlebars from 'handlebars'
import {describe, expect, it} from 'vitest'
import {evaluatePlain, type Helper} from '../../src/plan/template-eval.js'
import {scanPlain} from '../../src/plan/template-scan.js'
import {
  checkTemplate,
  MissingValueError,
  nodeNameScope,
  paramScope,
  renderTemplate,
  renderWithHandlebars,
  shapeOfVars,
  type World,
} from '../../src/plan/template.js'

type Outcome = {output: string} | {error: string; kind: string}

function outcome(run: () => string): Outcome {
  try {
    return {output: run()}
  } catch (error) {
    return {error: (error as Error).message, kind: (error as Error).constructor.name}
  }
}

// Helpers of every kind a template may meet: ones that read `this`, their arguments, or throw.
class NotKnown extends Error {}
const helpers: Record<string, Helper> = {
  ip: function (this: unknown, ...args: unknown[]) {
    if (args.length === 1) return (this as Record<string, unknown> | undefined)?.ip ?? ''
    if (args[0] === 'nowhere') throw new NotKnown(`no node for "${String(args[0])}"`)
    return `ip of ${String(args[0])}`
  },
  output: (...args: unknown[]) => args.slice(0, -1).map(String).join('|'),
  count: (...args: unknown[]) => args.length - 1,
  flag: (value: unknown) => value === true,
  nothing: () => undefined,
  nil: () => null,
  list: () => [1, 2],
  object: () => ({a: 1}),
  first: (value: unknown) => value,
}

class Point {
  x = 1
}
const proto = {inherited: 'from proto'}

const primitive = fc.oneof(
  fc.string({maxLength: 4}),
  fc.constantFrom('', ' ', '0', 'x.test'),
  fc.integer({min: -3, max: 12}),
  fc.constantFrom(0, -0, 1.5, NaN, Infinity),
  fc.boolean(),
  fc.constant(null),
  fc.constant(undefined),
)
const exotic = fc.constantFrom<unknown>(
  () => 'called',
  new Point(),
  Object.create(proto),
  new Date(0),
  Object.create(null),
  Symbol('s'),
  10n,
)
const key = fc.constantFrom(
  'n',
  'name',
  'role',
  'a',
  'b',
  'ip',
  'params',
  'x',
  'length',
  'inherited',
  'a-b',
  'x-this',
  'constructor',
)
const value = fc.letrec<{value: unknown}>((tie) => ({
  value: fc.oneof(
    {depthSize: 'small', withCrossShrink: true},
    {weight: 8, arbitrary: primitive},
    {weight: 1, arbitrary: exotic},
    {weight: 3, arbitrary: fc.dictionary(key, tie('value'), {maxKeys: 3})},
    {weight: 1, arbitrary: fc.array(tie('value'), {maxLength: 2})},
  ),
})).value
const context = fc.dictionary(key, value, {minKeys: 3, maxKeys: 8})

// Plain templates (what the scanner reads) over those names, helpers and handlebars' own helpers.
const head = fc.oneof(
  {
    weight: 12,
    arbitrary: fc.constantFrom('n', 'name', 'role', 'a', 'b', 'x', 'a-b', 'missing', 'length', 'params', 'inherited'),
  },
  {weight: 6, arbitrary: fc.constantFrom(...Object.keys(helpers))},
  {weight: 1, arbitrary: fc.constantFrom('if', 'unless', 'each', 'with', 'log', 'lookup', 'helperMissing')},
  {weight: 1, arbitrary: fc.constantFrom('blockHelperMissing', 'constructor', 'toString', '__proto__', 'valueOf')},
  {weight: 1, arbitrary: fc.constantFrom('x-this', 'hasOwnProperty')},
)
const path = fc
  .tuple(
    fc.oneof({weight: 12, arbitrary: fc.constant('')}, {weight: 1, arbitrary: fc.constantFrom('this.', './', '../')}),
    head,
    fc.array(fc.tuple(fc.constantFrom('.', '/'), head), {maxLength: 2}),
  )
  .map(([prefix, first, rest]) => prefix + first + rest.map(([s, w]) => s + w).join(''))
const literal = fc.constantFrom(
  '"a"',
  "'b c'",
  '"nowhere"',
  '""',
  '1',
  '-2.5',
  '0',
  'true',
  'false',
  'null',
  'undefined',
)
const param = fc.oneof({weight: 3, arbitrary: literal}, path)
const expression = fc.oneof(
  {weight: 3, arbitrary: path},
  {
    weight: 3,
    arbitrary: fc
      .tuple(fc.constantFrom(...Object.keys(helpers)), fc.array(param, {maxLength: 3}))
      .map(([name, params]) => [name, ...params].join(' ')),
  },
  {weight: 1, arbitrary: fc.tuple(path, fc.array(param, {maxLength: 3})).map((words) => words.flat().join(' '))},
)
const mustache = fc
  .tuple(fc.constantFrom('', ' ', '\n '), expression)
  .map(([pad, inside]) => `{{${pad}${inside}${pad}}}`)
const text = fc.oneof(
  {weight: 2, arbitrary: fc.constant('')},
  {weight: 3, arbitrary: fc.constantFrom('app', '.', ' ', '\n', '-', '1', 'x.test')},
)
const template = fc
  .array(fc.tuple(text, mustache), {minLength: 1, maxLength: 3})
  .chain((pairs) => text.map((tail) => pairs.map(([t, m]) => t + m).join('') + tail))

function byHandlebars(source: string, vars: Record<string, unknown>): Outcome {
  const hbs = Handlebars.create()
  hbs.registerHelper(helpers)
  return outcome(() => hbs.compile(source, {noEscape: true, strict: false})(vars))
}

describe('rendering plain templates without handlebars', () => {
  it('gives what handlebars gives, or leaves the template to it', () => {
    let evaluated = 0
    fc.assert(
      fc.property(template, context, (source, vars) => {
        const program = scanPlain(source)
        if (!program) return
        const mine = outcome(() => evaluatePlain(program, vars, helpers) ?? '<handlebars>')
        if ('output' in mine && mine.output === '<handlebars>') return
        evaluated++
        // Silence handlebars' own warnings (access to inherited properties) while it runs.
        const warn = console.error
        console.error = () => {}
        try {
          expect(mine).toEqual(byHandlebars(source, vars))
        } finally {
          console.error = warn
        }
      }),
      {numRuns: 3000},
    )
    expect(evaluated).toBeGreaterThan(600)
  })

  it('adds numbers and booleans as handlebars does, until a text comes', () => {
    const vars = {a: 1, b: 2, t: true}
    for (const source of ['{{a}}{{b}}', '{{a}}{{b}}x', 'x{{a}}{{b}}', '{{t}}{{a}}', '{{a}} {{b}}', '{{a}}'])
      expect({output: evaluatePlain(scanPlain(source)!, vars, {})}).toEqual(byHandlebars(source, vars))
    expect(evaluatePlain(scanPlain('{{a}}{{b}}')!, vars, {})).toBe('3')
  })

  it('leaves to handlebars what only it can answer', () => {
    const cases: Array<[string, Record<string, unknown>]> = [
      ['{{this}}', {}],
      ['{{../x}}', {x: 1}],
      ['{{f}}', {f: () => 'called'}],
      ['{{o}}', {o: {a: 1}}],
      ['{{p.x}}', {p: new Point()}],
      ['{{q.inherited}}', {q: Object.create(proto) as unknown}],
      ['{{constructor}}', {}],
      ['{{log "x"}}', {}],
      ['{{unknown "x"}}', {}],
      ['{{list}}', {}],
      ...['if', 'unless', 'each', 'with', 'log', 'lookup', 'helperMissing', 'blockHelperMissing'].flatMap(
        (name): Array<[string, Record<string, unknown>]> => [
          [`{{${name}}}`, {}],
          [`{{${name} "x"}}`, {[name]: 'x'}],
        ],
      ),
    ]
    for (const [source, vars] of cases) expect(evaluatePlain(scanPlain(source)!, vars, helpers)).toBeUndefined()
  })
})

const world: World = {
  nodes: [
    {name: 'app1.x.test', role: 'appserver', index: 1, facts: {ip: '10.0.0.2'}, outputs: {appserver: {port: '80'}}},
    {name: 'app2.x.test', role: 'appserver', index: 2, facts: {ip: '10.0.0.3'}, outputs: {}},
    {name: 'db.x.test', role: 'service:mysql', index: 1, facts: {}, outputs: {mysql: {password: 'pw'}}},
  ],
}

describe('renderTemplate of plain templates', () => {
  const target = fc.constantFrom('"appserver"', '"service:mysql"', '"db.x.test"', '"nowhere"', 'role')
  const call = fc.oneof(
    fc.constantFrom('{{n}}', '{{index}}', '{{role}}', '{{name}}', '{{general.base_domain}}', '{{general.name}}'),
    fc.constantFrom('{{params.port}}', '{{params.missing}}', '{{ip}}', '{{hostname}}', '{{facts.ip}}'),
    fc.tuple(fc.constantFrom('ip', 'private_ip', 'hostname'), target).map(([h, t]) => `{{${h} ${t}}}`),
    fc.tuple(target, fc.constantFrom('"ip"', '"sshd_port"')).map(([t, k]) => `{{fact ${t} ${k}}}`),
    fc
      .tuple(target, fc.constantFrom('"port"', '"mysql" "password"', '"appserver" "port"', '"password"'))
      .map(([t, k]) => `{{output ${t} ${k}}}`),
  )
  const source = fc
    .array(fc.tuple(fc.constantFrom('', 'app', '.', '-', ' '), call), {minLength: 1, maxLength: 3})
    .map((parts) => parts.map(([t, c]) => t + c).join(''))
  const vars = fc.record({
    n: fc.integer({min: 0, max: 12}),
    index: fc.integer({min: 0, max: 12}),
    role: fc.constantFrom('appserver', 'service:mysql', 'balancer'),
    name: fc.constantFrom('app1.x.test', 'db.x.test'),
    ip: fc.constantFrom('10.0.0.9', ''),
    facts: fc.constantFrom({ip: '10.0.0.9'}, {}),
    general: fc.record({name: fc.constantFrom('x', 'my-setup'), base_domain: fc.constantFrom('x.test', 'foobar.com')}),
    params: fc.dictionary(fc.constantFrom('port', 'user', 'missing'), fc.constantFrom('8080', '', 'root')),
  })

  it('gives what handlebars gives with nodeset helpers, values and errors alike', () => {
    fc.assert(
      fc.property(source, vars, (text, v) => {
        if (checkTemplate(text, {root: shapeOfVars(v)}).length > 0) return
        expect(outcome(() => renderTemplate(text, world, v))).toEqual(
          outcome(() => renderWithHandlebars(text, world, v)),
        )
      }),
      {numRuns: 1000},
    )
  })

  it('renders node names and params with the same errors for what is not known yet', () => {
    const vars = {n: 3, index: 3, role: 'appserver', general: {name: 'x', base_domain: 'x.test'}}
    expect(checkTemplate('app{{n}}.{{general.base_domain}}', {root: nodeNameScope(), helpers: 'builtins'})).toEqual([])
    expect(renderTemplate('app{{n}}.{{general.base_domain}}', {nodes: []}, vars)).toBe('app3.x.test')
    expect(checkTemplate('{{output "db.x.test" "mysql" "password"}}', {root: paramScope()})).toEqual([])
    expect(renderTemplate('{{output "db.x.test" "mysql" "password"}}:{{ip "appserver"}}', world, {})).toBe(
      'pw:10.0.0.2',
    )
    expect(() => renderTemplate('{{ip "service:mysql"}}', world, {})).toThrow(MissingValueError)
    expect(() => renderTemplate('{{ip "service:mysql"}}', world, {})).toThrow('fact ip of db.x.test is not known yet')
  })
})

import fs from 'node:fs'
import path from 'node:path'
import fc from 'fast-check'
import {describe, expect, it} from 'vitest'
import {loadCatalog, TEMPLATES_DIR} from '../../src/services/catalog.js'
import {
  checkTemplate,
  type CheckOptions,
  extractRefs,
  missingValues,
  paramScope,
  renderTemplate,
  renderWithHandlebars,
  scriptScope,
  TemplateError,
  type World,
} from '../../src/plan/template.js'

const world: World = {
  nodes: [
    {
      name: 'app2.x.test',
      role: 'appserver',
      index: 2,
      facts: {ip: '10.0.0.3'},
      outputs: {appserver: {port: '8080'}},
      provides: {appserver: ['port']},
    },
    {
      name: 'app1.x.test',
      role: 'appserver',
      index: 1,
      facts: {ip: '10.0.0.2', hostname: 'app1'},
      outputs: {appserver: {port: '8080'}},
      provides: {appserver: ['port']},
    },
    {
      name: 'db.x.test',
      role: 'service:mysql',
      index: 1,
      facts: {},
      outputs: {},
      provides: {mysql: ['port', 'admin_password']},
    },
  ],
}

describe('node-time templates', () => {
  it('finds references in the AST with their lines, including block params and sub-expressions', () => {
    const refs = extractRefs(
      'a {{ip "service:mysql"}}\n{{#each (nodes "appserver")}}{{name}} {{ip}}\n{{/each}}{{output "service:mysql" "mysql" "port"}}\n{{fact "app1.x.test" "sshd_port"}}',
    )
    expect(refs.map((r) => [r.kind, r.target, r.key, r.service, r.all, r.line])).toEqual([
      ['fact', 'service:mysql', 'ip', undefined, false, 1],
      ['fact', 'appserver', 'ip', undefined, true, 2],
      ['output', 'service:mysql', 'port', 'mysql', false, 3],
      ['fact', 'app1.x.test', 'sshd_port', undefined, false, 4],
    ])
  })

  it('does not mistake look-alike text for a reference', () => {
    expect(extractRefs('echo "{ip service:mysql}" # {{!-- {{ip "x"}} --}}')).toEqual([])
  })

  it('refuses a non-literal target with the line', () => {
    expect(() => extractRefs('x\n{{ip role}}')).toThrowError(TemplateError)
    try {
      extractRefs('x\n{{ip role}}')
    } catch (error) {
      expect((error as TemplateError).line).toBe(2)
      expect((error as Error).message).toContain('must be quoted strings')
    }
  })

  it('says what is missing, and renders once everything is known', () => {
    const template =
      'db={{ip "service:mysql"}} pw={{output "service:mysql" "admin_password"}} up={{#each (nodes "appserver")}}{{ip}}:{{output "appserver" "port"}} {{/each}}'
    const refs = extractRefs(template)
    expect(missingValues(refs, world).map((m) => `${m.kind} ${m.key} of ${m.node}`)).toEqual([
      'fact ip of db.x.test',
      'output admin_password of db.x.test',
    ])
    const complete: World = {
      nodes: world.nodes.map((n) =>
        n.role === 'service:mysql' ? {...n, facts: {ip: '10.0.0.9'}, outputs: {mysql: {admin_password: 'pw<&>'}}} : n,
      ),
    }
    expect(missingValues(refs, complete)).toEqual([])
    expect(renderTemplate(template, complete)).toBe('db=10.0.0.9 pw=pw<&> up=10.0.0.2:8080 10.0.0.3:8080 ')
  })

  it('reads the root context for {{ip}} and vars', () => {
    expect(
      renderTemplate('{{name}} {{ip}} {{params.port}}', world, {name: 'self', ip: '1.2.3.4', params: {port: '80'}}),
    ).toBe('self 1.2.3.4 80')
  })
})

const ROOT = path.resolve(__dirname, '../..')
const script: CheckOptions = {root: scriptScope('web', ['port']), partials: {}}
const param: CheckOptions = {root: paramScope()}
const found = (template: string, options: CheckOptions) =>
  checkTemplate(template, options).map((p) => [p.line, p.message, p.hint])

describe('checking templates before they run', () => {
  it('refuses an unknown helper, with the closest one', () => {
    expect(found('x\n{{outptu "service:mysql" "port"}}', param)).toEqual([
      [2, '{{outptu "service:mysql" "port"}}: unknown helper "outptu"', 'did you mean output?'],
    ])
    expect(found('{{#eahc locations}}{{url}}{{/eahc}}', script)).toEqual([
      [1, '{{#eahc locations}}: unknown helper "eahc"', 'did you mean each?'],
    ])
  })

  it('refuses an unknown variable or param, with the closest name', () => {
    expect(found('{{parms.port}}\n\n{{params.prot}}', script)).toEqual([
      [1, '{{parms.port}}: unknown variable "parms"', 'did you mean {{params.port}}?'],
      [3, '{{params.prot}}: service web has no param "prot"', 'did you mean {{params.port}}?'],
    ])
    expect(found('{{#each locations}}{{prot}}{{/each}} {{general.domain}}', script)).toEqual([
      [1, '{{prot}}: a location has no field "prot"', 'did you mean {{port}}?'],
      [1, '{{general.domain}}: general has no "domain"', 'known here: name, base_domain'],
    ])
    expect(found('{{sshd_port}}', script)[0][2]).toContain('{{facts.sshd_port}}')
  })

  it('gives a param value only what both setup-node and the config server render it with', () => {
    expect(found('{{name}}-{{n}}-{{index}}-{{role}}-{{ip}}-{{facts.x}} {{ip "db"}}', param)).toEqual([])
    for (const name of ['params.port', 'general.name', 'deployment', 'locations', 'hostnames'])
      expect(found(`{{${name}}}`, param)[0][2]).toMatch(/is for a service's templates/)
  })

  it('checks partials: that they exist, and what they hold, at their own file and line', () => {
    const partials = {helper: {text: 'line one\n{{nmae}}', file: '/svc/web/helper.hbs'}, loop: {text: '{{> loop}}'}}
    const options = {...script, partials}
    expect(checkTemplate('{{> helper}}\n{{> helpr}}\n{{> loop}}', options)).toEqual([
      {
        line: 2,
        file: '/svc/web/helper.hbs',
        message: '{{nmae}}: unknown variable "nmae"',
        hint: 'did you mean {{name}}?',
      },
      {line: 2, message: '{{> helpr}}: no partial "helpr"', hint: 'did you mean {{> helper}}?'},
      {
        line: 1,
        message: '{{> loop}}: partial loop includes itself',
        hint: 'a partial cannot include itself, directly or not',
      },
    ])
    expect(found('{{> helper}}', param)).toEqual([
      [
        1,
        '{{> helper}}: partials are only for the templates of a service',
        "a value cannot include a file; put the text in the service's setup.sh.hbs",
      ],
    ])
  })

  it('refuses blocks without what they need, and helpers used as the wrong kind', () => {
    expect(found('{{#each}}x{{/each}}\n{{#if}}x{{/if}}\n{{each locations}}\n{{#ip "db"}}x{{/ip}}', script)).toEqual([
      [
        1,
        '{{#each}}: each needs one list to go through',
        'e.g. {{#each locations}}…{{/each}} or {{#each (nodes "appserver")}}…{{/each}}',
      ],
      [2, '{{#if}}: if needs one value to test', 'e.g. {{#if params.port}}…{{/if}}'],
      [3, '{{each locations}}: each is a block helper', 'write {{#each …}}…{{/each}}'],
      [4, '{{#ip "db"}}: ip is not a block helper', 'write {{ip …}}, with no {{/ip}}'],
    ])
    expect(found('{{#each name}}x{{/each}} {{@index}}', script).map((p) => p[1])).toEqual([
      '{{#each name}}: name is a single value, not a list',
      '{{@index}}: @index is set only inside {{#each}}',
    ])
  })

  it('refuses printing a list or an object', () => {
    expect(found('{{params}} {{nodes "appserver"}} {{facts}}', script)).toEqual([
      [1, '{{params}}: prints an object', 'print one of its fields: {{params.port}}'],
      [1, '{{nodes "appserver"}}: prints a list', 'go through it: {{#each (nodes "appserver")}}…{{/each}}'],
      [1, '{{facts}}: prints an object', 'print one of its keys: {{facts.KEY}}'],
    ])
  })

  it("says what is wrong with malformed syntax, on its line, instead of the parser's token list", () => {
    const one = (t: string) => {
      const [p] = checkTemplate(t, script)
      expect(p.message).not.toMatch(/Expecting|OPEN|CLOSE|'ID'/)
      return [p.line, p.message]
    }
    expect(one('a\nb {{num')).toEqual([2, '{{num is not closed with }}'])
    expect(one('{{ip "db}}')).toEqual([1, 'a quote in {{ip "db}} is not closed'])
    expect(one('x\n{{#each locations}}\n{{url}}')).toEqual([3, 'a {{#…}} block is never closed'])
    expect(one('{{#each locations}}{{/if}}')).toEqual([1, '{{/if}} closes {{#each}}'])
    expect(one('{{else}}')).toEqual([1, '{{else}} outside a block'])
    expect(one('{{a b=}}')).toEqual([1, 'syntax error: unexpected }} at "{{a b=}}" (expected a name)'])
  })

  it('passes every service nodeset ships and every one the examples, tests and benchmarks use', () => {
    const dirs = ['examples/services', 'test/fixtures/services', 'bench/setup/services'].map((d) => path.join(ROOT, d))
    const {catalog, problems} = loadCatalog(dirs)
    expect(problems).toEqual([])
    const names = new Set<string>()
    for (const dir of [path.join(TEMPLATES_DIR, 'services'), ...dirs])
      for (const name of fs.readdirSync(dir)) names.add(name)
    expect(names.size).toBeGreaterThanOrEqual(9)
    for (const name of names) {
      const s = catalog.get(name)!
      const partials = Object.fromEntries(
        Object.entries(s.partials).map(([n, text]) => [n, {text, file: s.partialPaths[n]}]),
      )
      expect([name, checkTemplate(s.script, {root: scriptScope(name, Object.keys(s.params)), partials})]).toEqual([
        name,
        [],
      ])
      for (const spec of Object.values(s.params)) expect(checkTemplate(spec.default ?? '', param)).toEqual([])
    }
    const base = fs.readFileSync(path.join(TEMPLATES_DIR, 'base', 'setup.sh.hbs'), 'utf8')
    expect(checkTemplate(base, {root: scriptScope('base', [])})).toEqual([])
  })
})

describe('strict rendering', () => {
  const facts = {ip: '10.0.0.5', hostname: 'self'}
  // What setup-node renders a param with, and what the config server does.
  const setupVars = {
    general: {name: 'd', base_domain: 'd.test'},
    hostnames: [],
    locations: [],
    ...facts,
    deployment: 'd',
    name: 'app1.d.test',
    role: 'appserver',
    index: 1,
    n: 1,
    facts,
  }
  const serverVars = {...facts, name: 'app1.d.test', role: 'appserver', index: 1, n: 1, facts, outputs: {}}

  it('throws on an unknown name instead of printing nothing; an unreported fact is empty', () => {
    expect(() => renderTemplate('port={{params.prot}}', world, {params: {port: '80'}})).toThrowError(
      /\{\{params\.prot\}\}: params has no "prot" \(did you mean \{\{params\.port\}\}\?\)/,
    )
    expect(() => renderTemplate('{{nmae}}', world, serverVars)).toThrowError(TemplateError)
    expect(renderTemplate('[{{facts.sshd_port}}]', world, serverVars)).toBe('[]')
  })

  it('renders in both places every param value the check accepts', () => {
    const accepted = [
      '{{name}}#{{n}} {{index}} {{role}}',
      '{{ip}} {{hostname}} [{{private_ip}}] {{facts.ip}}',
      '{{#if private_ip}}p{{else}}{{ip}}{{/if}}',
      '{{#each (nodes "appserver")}}{{name}}={{ip}}:{{output "appserver" "port"}}/{{outputs.appserver.port}}{{#unless @last}},{{/unless}}{{/each}}',
      '{{#with facts}}{{ip}}{{/with}} {{lookup facts "hostname"}}',
    ]
    for (const t of accepted) {
      expect(checkTemplate(t, param)).toEqual([])
      const a = renderTemplate(t, world, setupVars)
      expect(renderTemplate(t, world, serverVars)).toBe(a)
    }
  })
})

describe('handlebars templates compiled once', () => {
  // Each world: a db and two apps, with addresses drawn per run; the same texts rendered in each.
  const worldOf = ([db, a1, a2]: string[]): World => ({
    nodes: [
      {name: 'db.x.test', role: 'service:db', index: 1, facts: {ip: db}, outputs: {db: {pw: `pw-${db}`}}},
      {name: 'app1.x.test', role: 'appserver', index: 1, facts: {ip: a1}, outputs: {}},
      {name: 'app2.x.test', role: 'appserver', index: 2, facts: {ip: a2}, outputs: {}},
    ],
  })
  const partials = {peers: '{{#each (nodes "appserver")}}[{{ip}}]{{/each}}', peer: '<{{name}} {{ip "service:db"}}>'}
  /** Each template with what it must give in a world of these addresses. */
  const cases: Array<[string, (db: string, a1: string, a2: string, on: boolean) => string]> = [
    ['{{#each (nodes "appserver")}}{{ip}};{{/each}} db={{ip "service:db"}}', (db, a1, a2) => `${a1};${a2}; db=${db}`],
    [
      '{{#if params.on}}{{output "service:db" "db" "pw"}}{{else}}off{{/if}} {{> peers}}',
      (db, a1, a2, on) => `${on ? `pw-${db}` : 'off'} [${a1}][${a2}]`,
    ],
    ['{{#each (nodes "appserver")}}{{> peer}}{{/each}}', (db) => `<app1.x.test ${db}><app2.x.test ${db}>`],
  ]

  it('renders each world with its own values and partials, call after call (property)', () => {
    const address = fc.tuple(fc.nat(255), fc.nat(255)).map(([a, b]) => `10.0.${a}.${b}`)
    fc.assert(
      fc.property(
        fc.array(fc.tuple(address, address, address, fc.boolean()), {minLength: 2, maxLength: 6}),
        (worlds) => {
          for (const [db, a1, a2, on] of worlds)
            for (const [template, expected] of cases)
              expect(renderWithHandlebars(template, worldOf([db, a1, a2]), {params: {on}}, partials)).toBe(
                expected(db, a1, a2, on),
              )
        },
      ),
      {numRuns: 50},
    )
  })

  it('a partial of the same name with another text is its own template', () => {
    const world = worldOf(['10.0.0.1', '10.0.0.2', '10.0.0.3'])
    expect(renderWithHandlebars('{{> p}}', world, {}, {p: 'one {{ip "service:db"}}'})).toBe('one 10.0.0.1')
    expect(renderWithHandlebars('{{> p}}', world, {}, {p: 'two'})).toBe('two')
    expect(renderWithHandlebars('{{> p}}', world, {}, {p: 'one {{ip "service:db"}}'})).toBe('one 10.0.0.1')
  })
})

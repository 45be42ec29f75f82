import {describe, expect, it} from 'vitest'
import {extractRefs, missingValues, renderTemplate, TemplateError, type World} from '../../src/plan/template.js'

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

/**
 * The config server's registration runs plan's checks (analyze): a template it accepts, it can
 * render, and what it refuses it refuses with the same message and source as `nodeset plan`.
 */
import {describe, expect, it} from 'vitest'
import type {Diagnostic} from '../../src/core/diagnostics.js'
import {HttpError} from '../../src/configserver/errors.js'
import {planRegistration} from '../../src/configserver/register.js'
import {renderTemplate, type World} from '../../src/plan/template.js'

const body = (template: string) => ({
  instances: [
    {id: 'db', role: 'service:db', services: [{name: 'db', provides: ['port']}]},
    {
      id: 'app1',
      role: 'appserver',
      services: [{name: 'app', params: {dsn: {template, source: {file: 'shop.conf', line: 12}}}}],
    },
  ],
})

function refused(template: string): Diagnostic[] {
  try {
    planRegistration('shop', body(template))
  } catch (error) {
    if (error instanceof HttpError) return (error.extra.diagnostics as Diagnostic[]) ?? []
    throw error
  }
  throw new Error('expected the registration to be refused')
}

describe('registration checks templates as plan does', () => {
  it('refuses an unknown helper, variable or partial, and a malformed template, with the source', () => {
    expect(refused('{{outptu "db" "port"}}').map((d) => [d.source?.line, d.message, d.hint])).toEqual([
      [12, 'param dsn of app: {{outptu "db" "port"}}: unknown helper "outptu"', 'did you mean output?'],
    ])
    expect(refused('x\n{{nmae}}:{{output "db" "port"}}').map((d) => [d.source?.line, d.message])).toEqual([
      [13, 'param dsn of app: {{nmae}}: unknown variable "nmae"'],
    ])
    expect(refused('{{general.name}}')[0].hint).toMatch(/^general is for a service's templates/)
    expect(refused('{{> helper}}')[0].message).toBe(
      'param dsn of app: {{> helper}}: partials are only for the templates of a service',
    )
    expect(refused('{{#each (nodes "appserver")}}{{name}}')[0].message).toBe(
      'param dsn of app: a {{#…}} block is never closed',
    )
  })

  it('accepts what it can render with the variables it renders with', () => {
    const template = '{{name}}#{{n}} {{ip "db"}}:{{output "db" "port"}} {{#each (nodes "appserver")}}{{name}}{{/each}}'
    expect(planRegistration('shop', body(template)).analysis.problems).toEqual([])
    const world: World = {
      nodes: [
        {name: 'db', role: 'service:db', index: 1, facts: {ip: '10.0.0.9'}, outputs: {db: {port: '5432'}}},
        {name: 'app1', role: 'appserver', index: 1, facts: {}, outputs: {}},
      ],
    }
    const vars = {name: 'app1', role: 'appserver', index: 1, n: 1, facts: {}, outputs: {}}
    expect(renderTemplate(template, world, vars)).toBe('app1#1 10.0.0.9:5432 app1')
  })
})

import path from 'node:path'
import {describe, expect, it} from 'vitest'
import {DiagnosticsError, formatDiagnostic} from '../../src/core/diagnostics.js'
import type {ReaderIO} from '../../src/nodeset/merge.js'
import {readNodeset} from '../../src/nodeset/read.js'
import {planNodeset} from '../../src/plan/plan.js'

const examples = path.resolve(__dirname, '../../examples')
const main = '/conf/main.conf'
const io = (text: string, extra: Record<string, string> = {}): ReaderIO => ({
  readFile: (f) => ({[main]: text, ...extra})[f],
  env: {},
})
const plan = (text: string) => {
  const {nodeset, catalog} = readNodeset(main, io(text))
  return planNodeset(nodeset, catalog)
}
const head = `[general]\nname = shop\nbase_domain = shop.test\n[provider]\nprovider = local\n`

function refused(fn: () => unknown): string {
  try {
    fn()
  } catch (error) {
    if (error instanceof DiagnosticsError) return error.diagnostics.map(formatDiagnostic).join('\n')
    throw error
  }
  throw new Error('expected a refusal')
}

describe('planning', () => {
  it('plans the seed file: ten appservers, the mysql node and the balancer, with load balancing on', () => {
    const {nodeset, catalog} = readNodeset(path.join(examples, 'foobar.conf'))
    const {plan, analysis, loadBalancing} = planNodeset(nodeset, catalog)
    expect(plan.nodes.map((n) => n.name)).toEqual([
      ...Array.from({length: 10}, (_, i) => `app${i + 1}.foobar.com`),
      'mysql.foobar.com',
      'balancer.foobar.com',
    ])
    expect(loadBalancing).toBe(true)
    expect(nodeset.roles.find((r) => r.role === 'balancer')!.hostnames).toEqual(['foobar.com', 'baz.com'])
    expect(plan.nodes[0].size).toEqual({kind: 'ram', megabytes: 256})
    expect(analysis.problems).toEqual([])
  })

  it('names nodes by default from base_domain', () => {
    const {plan: p} = plan(`${head}[appserver]\nnodes = 2\n[service:mysql]\n[balancer]\n[role:worker]\nnodes = 2\n`)
    expect(p.nodes.map((n) => `${n.role} ${n.name}`)).toEqual([
      'appserver app1.shop.test',
      'appserver app2.shop.test',
      'service:mysql mysql.shop.test',
      'balancer balancer.shop.test',
      'worker worker1.shop.test',
      'worker worker2.shop.test',
    ])
  })

  it('infers load balancing from the node count and a [balancer] section', () => {
    expect(plan(`${head}[appserver]\nnodes = 1\n[balancer]\n`).loadBalancing).toBe(false)
    expect(plan(`${head}[appserver]\nnodes = 3\n`).loadBalancing).toBe(false)
    expect(plan(`${head}[appserver]\nnodes = 3\n[balancer]\n`).loadBalancing).toBe(true)
    expect(refused(() => plan(`${head}[appserver]\nload_balancer = true\n`))).toContain(
      '/conf/main.conf:7: load_balancer = true but there is no [balancer] section',
    )
  })

  it('refuses duplicate names across roles and a node_name without {{n}} for several nodes', () => {
    const text = refused(() =>
      plan(
        `${head}[appserver]\nnodes = 2\nnode_name = web.shop.test\n[service:mysql]\nnode_name = balancer.shop.test\n[balancer]\n`,
      ),
    )
    expect(text).toContain(
      '/conf/main.conf:8: node_name "web.shop.test" gives all 2 nodes of [appserver] the same name',
    )
    expect(text).toContain('node name balancer.shop.test is used by [service:mysql] and [balancer]')
  })

  it('plans the seed-004 scenario: instances need each other, services do not', () => {
    const {nodeset, catalog} = readNodeset(path.join(examples, 'interdependent.conf'))
    const {analysis, plan} = planNodeset(nodeset, catalog)
    expect(analysis.problems).toEqual([])
    expect(analysis.edges.map((e) => `${e.from} -> ${e.to}`).sort()).toEqual([
      'i1.example.test/consume -> i2.example.test/produce',
      'i2.example.test/consume -> i1.example.test/produce',
    ])
    expect(plan.steps).toHaveLength(4)
  })

  it('refuses a deadlock and prints the cycle as a path, an edge per line with file:line', () => {
    const {nodeset, catalog} = readNodeset(path.join(examples, 'deadlock.conf'))
    const {analysis} = planNodeset(nodeset, catalog)
    expect(analysis.problems).toHaveLength(1)
    const text = formatDiagnostic(analysis.problems[0])
    const file = path.join(examples, 'deadlock.conf')
    expect(analysis.problems[0].details).toEqual([
      `i1.example.test/consume needs {{output "i2" "consume" "value"}} i2.example.test/consume  (${path.relative(process.cwd(), file)}:13)`,
      `i2.example.test/consume needs {{output "i1" "consume" "value"}} i1.example.test/consume  (${path.relative(process.cwd(), file)}:18)`,
    ])
    expect(text).toContain('deadlock: 2 services wait for each other in a cycle')
  })

  it('refuses a self-reference', () => {
    const services = path.join(examples, 'services')
    const text = `[general]\nname = s\nservices_dir = ${services}\n[provider]\nprovider = local\n[role:solo]\nservices = consume\nconsume.peer_value = {{output "solo" "value"}}\n`
    const {analysis} = plan(text)
    expect(analysis.problems.map((p) => `${p.source?.line}: ${p.message}`)).toEqual([
      '8: deadlock: solo1.s/consume waits for its own output',
    ])
  })

  it('refuses references to a role, service or output that nothing provides, with file:line', () => {
    const text = `${head}[appserver]\nappserver.port = {{ip "service:mysq"}}\n[service:mysql]\nmysql.port = {{output "appserver" "nope"}}\n[balancer]\nbalancer.listen_port = {{output "service:mysql" "postgres" "port"}}\n`
    const {analysis} = plan(text)
    expect(analysis.problems.map((p) => `${p.source?.line}: ${p.message} | ${p.hint}`)).toEqual([
      '7: {{ip "service:mysq"}} refers to "service:mysq", but no role or node has that name | did you mean "service:mysql"?',
      '9: {{output "appserver" "nope"}}: no service of app1.shop.test (role appserver) provides "nope" | its services provide: port',
      '11: {{output "service:mysql" "postgres" "port"}}: mysql.shop.test runs no service "postgres" | mysql.shop.test runs: mysql',
    ])
  })

  it('checks templates in config values at the line of the value, multi-line ones included', () => {
    const probe = path.resolve(__dirname, '../fixtures/services')
    const text = `[general]\nname = shop\nservices_dir = ${probe}\n[provider]\nprovider = local\n[service:mysql]\n[role:probe]\nservices = probe\nprobe.db_host = first line\n  {{outptu "service:mysql" "port"}}\n`
    const {analysis} = plan(text)
    expect(analysis.problems.map((p) => [p.source?.line, p.message, p.hint])).toEqual([
      [
        10,
        'param db_host of probe: {{outptu "service:mysql" "port"}}: unknown helper "outptu"',
        'did you mean output?',
      ],
    ])
    const again = plan(text.replace(/probe.db_host = [^]*$/, 'probe.db_host = {{params.port}}\n'))
    expect(again.analysis.problems.map((p) => [p.source?.line, p.message])).toEqual([
      [9, 'param db_host of probe: {{params.port}}: unknown variable "params"'],
    ])
  })

  it('checks a service template and its partials at their own file and line, once per service', () => {
    const svc = path.resolve(__dirname, '../fixtures/broken/svc')
    const at = (service: string) => {
      const {analysis} = plan(
        `[general]\nname = shop\nservices_dir = ${svc}\n[provider]\nprovider = local\n[role:worker]\nnodes = 3\nservices = ${service}\n`,
      )
      return analysis.problems.map(
        (p) => `${path.relative(svc, p.source!.file)}:${p.source?.line}: ${p.message} | ${p.hint}`,
      )
    }
    expect(at('typo')).toEqual([
      'typo/setup.sh.hbs:3: template of typo: {{params.prot}}: service typo has no param "prot" | did you mean {{params.port}}?',
      'typo/setup.sh.hbs:4: template of typo: {{parms.port}}: unknown variable "parms" | did you mean {{params.port}}?',
      'typo/setup.sh.hbs:5: template of typo: {{outptu "db" "port"}}: unknown helper "outptu" | did you mean output?',
    ])
    expect(at('partial')).toEqual([
      'partial/helper.hbs:2: template of partial: {{nmae}}: unknown variable "nmae" | did you mean {{name}}?',
      'partial/setup.sh.hbs:3: template of partial: {{> helpr}}: no partial "helpr" | did you mean {{> helper}}?',
    ])
    expect(at('syntax')).toEqual([
      'syntax/setup.sh.hbs:3: template of syntax: {{name" is not closed with }} | write {{NAME}}, {{HELPER "ARG"}} or {{#each LIST}}…{{/each}}, with every {{ closed by }} and every quote closed; a literal {{ is written \\{{',
    ])
  })

  it('refuses a node_name that uses an unknown variable, with the closest one', () => {
    expect(refused(() => plan(`${head}[appserver]\nnodes = 2\nnode_name = app{{num}}.shop.test\n`))).toBe(
      '/conf/main.conf:8: node_name "app{{num}}.shop.test": {{num}}: unknown variable "num"\n  hint: did you mean {{n}}?',
    )
  })

  it('gives every declared param a value: an optional one without a default is empty', () => {
    const svc = path.resolve(__dirname, '../fixtures/broken/svc')
    const {plan: p, analysis} = plan(
      `[general]\nname = shop\nservices_dir = ${svc}\n[provider]\nprovider = local\n[role:worker]\nservices = optional\n`,
    )
    expect(analysis.problems).toEqual([])
    expect(p.steps[0].params.map((x) => [x.name, x.value])).toEqual([['note', '']])
  })
})

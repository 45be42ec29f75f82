/**
 * Nodeset → Plan: expand each role into named nodes, give each node its services with their params,
 * and find the references between (node, service) pairs. Pure: no I/O.
 */
import Handlebars from 'handlebars'
import {type Diagnostic, DiagnosticsError} from '../core/diagnostics.js'
import {isValidHostname} from '../nodeset/read.js'
import type {Nodeset, RoleSpec} from '../nodeset/types.js'
import {type Catalog, isSecretName} from '../services/catalog.js'
import {type Analysis, analyze, type CheckInstance} from './check.js'
import type {NodePlan, ParamPlan, Plan, StepPlan} from './types.js'

export interface PlanResult {
  plan: Plan
  analysis: Analysis
  /** Whether the appservers sit behind the balancer (explicit, or inferred from the node count and [balancer]). */
  loadBalancing: boolean
}

function defaultNodeName(role: RoleSpec, domain: string): string {
  if (role.role === 'appserver') return `app{{n}}.${domain}`
  if (role.role === 'balancer') return `balancer.${domain}`
  // A one-node service keeps the seed's `mysql.foobar.com`; other roles are numbered from the start,
  // so raising their `nodes` adds nodes without renaming the first.
  if (role.role.startsWith('service:')) {
    const base = role.role.slice('service:'.length)
    return role.nodes.value === 1 ? `${base}.${domain}` : `${base}{{n}}.${domain}`
  }
  return `${role.role}{{n}}.${domain}`
}

function nodeNames(nodeset: Nodeset, role: RoleSpec, problems: Diagnostic[]): string[] {
  const domain = nodeset.general.baseDomain ?? nodeset.general.name
  const pattern = role.nodeName?.value ?? defaultNodeName(role, domain)
  const source = role.nodeName?.source ?? role.source
  let render: (n: number) => string
  try {
    const compiled = Handlebars.compile(pattern, {noEscape: true, strict: true})
    render = (n) =>
      compiled({n, index: n, role: role.role, general: {name: nodeset.general.name, base_domain: domain}}).trim()
    render(1)
  } catch (error) {
    problems.push({
      message: `node_name "${pattern}" cannot be rendered: ${(error as Error).message.split('\n')[0]}`,
      source,
      hint: 'node_name may use {{n}} (the node number), {{role}} and {{general.base_domain}}',
    })
    return []
  }
  if (role.nodes.value > 1 && render(1) === render(2)) {
    problems.push({
      message: `node_name "${pattern}" gives all ${role.nodes.value} nodes of [${role.section}] the same name`,
      source,
      hint: 'put {{n}} in it, e.g. app{{n}}.foobar.com',
    })
    return []
  }
  const names: string[] = []
  for (let n = 1; n <= role.nodes.value; n++) {
    const name = render(n)
    if (!isValidHostname(name)) {
      problems.push({
        message: `node name "${name}" (from node_name "${pattern}") is not a valid host name`,
        source,
        hint: 'use labels of letters, digits and "-", separated by dots',
      })
      return []
    }
    names.push(name)
  }
  return names
}

function stepParams(
  nodeset: Nodeset,
  role: RoleSpec,
  service: string,
  catalog: Catalog,
  node: string,
  problems: Diagnostic[],
): ParamPlan[] {
  const meta = catalog.get(service)
  const params: ParamPlan[] = []
  for (const [name, spec] of Object.entries(meta?.params ?? {})) {
    const set = role.params[service]?.[name]
    const secret = spec.secret || isSecretName(name)
    if (set) params.push({name, value: set.value, source: set.source, secret})
    else if (spec.default !== undefined)
      params.push({name, value: spec.default, source: {file: meta!.dir + '/service.json', line: 1}, secret})
    else if (spec.required) {
      problems.push({
        message: `${node}: service ${service} needs param "${name}" (${spec.description || 'no description'})`,
        source: role.source,
        hint: `set "${service}.${name} = …" in [${role.section}]`,
      })
    }
  }
  return params
}

/** Plan the nodeset; throws DiagnosticsError when names clash or a value is missing. Graph problems are in analysis. */
export function planNodeset(nodeset: Nodeset, catalog: Catalog): PlanResult {
  const problems: Diagnostic[] = []
  const nodes: NodePlan[] = []
  const steps: StepPlan[] = []
  const owner = new Map<string, RoleSpec>()
  for (const role of nodeset.roles) {
    nodeNames(nodeset, role, problems).forEach((name, i) => {
      const clash = owner.get(name)
      if (clash) {
        problems.push({
          message: `node name ${name} is used by [${clash.section}] and [${role.section}]`,
          source: role.nodeName?.source ?? role.source,
          hint: 'give one of them another node_name',
        })
        return
      }
      owner.set(name, role)
      nodes.push({name, role: role.role, index: i + 1, size: role.size?.value, services: role.services.value})
      for (const service of role.services.value) {
        const meta = catalog.get(service)
        steps.push({
          node: name,
          service,
          params: stepParams(nodeset, role, service, catalog, name, problems),
          provides: meta?.provides ?? [],
          after: meta?.after ?? [],
        })
      }
    })
  }
  const appserver = nodeset.roles.find((r) => r.role === 'appserver')
  const balancer = nodeset.roles.find((r) => r.role === 'balancer')
  let loadBalancing = false
  if (appserver) {
    loadBalancing = appserver.loadBalancer?.value ?? (appserver.nodes.value > 1 && balancer !== undefined)
    if (loadBalancing && !balancer) {
      problems.push({
        message: 'load_balancer = true but there is no [balancer] section',
        source: appserver.loadBalancer?.source,
        hint: 'add a [balancer] section (node_name, hostnames), or set load_balancer = false',
      })
    }
  }
  if (problems.length > 0) throw new DiagnosticsError(problems)

  const instances: CheckInstance[] = nodes.map((node) => ({
    id: node.name,
    role: node.role,
    index: node.index,
    services: steps
      .filter((s) => s.node === node.name)
      .map((s) => {
        const meta = catalog.get(s.service)
        return {
          name: s.service,
          params: s.params.map((p) => ({name: p.name, value: p.value, source: p.source})),
          provides: s.provides,
          after: s.after,
          body: meta?.script ? {text: meta.script, file: meta.scriptPath} : undefined,
        }
      }),
  }))
  const analysis = analyze(instances)
  const plan: Plan = {
    deployment: nodeset.general.name,
    baseDomain: nodeset.general.baseDomain,
    setEtcHosts: nodeset.general.setEtcHosts,
    nodes,
    steps,
    references: analysis.references,
  }
  return {plan, analysis, loadBalancing}
}

/**
 * Nodeset → Plan: expand each role into named nodes, give each node its services with their params,
 * and find the references between (node, service) pairs. Pure: no I/O.
 */
import {type Diagnostic, DiagnosticsError} from '../core/diagnostics.js'
import {isInputMarker, isValidHostname} from '../nodeset/read.js'
import type {Nodeset, RoleSpec, SiteSpec} from '../nodeset/types.js'
import {type Catalog, isSecretName, paramSource} from '../services/catalog.js'
import {type Analysis, analyze, type CheckInstance, type CheckService} from './check.js'
import {checkTemplate, nodeNameScope, renderTemplate} from './template.js'
import type {NodePlan, ParamPlan, Plan, PlanInput, SitePlan, StepPlan} from './types.js'

export interface PlanResult {
  plan: Plan
  analysis: Analysis
  /** Whether the appservers sit behind the balancer (explicit, or inferred from the node count and [balancer]). */
  loadBalancing: boolean
  /** The params awaited at launch, in file order. */
  inputs: PlanInput[]
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
  const found = checkTemplate(pattern, {root: nodeNameScope(), helpers: 'builtins'})
  if (found.length > 0) {
    for (const p of found)
      problems.push({
        message: `node_name "${pattern}": ${p.message}`,
        source,
        hint: p.hint ?? 'node_name may use {{n}} (the node number), {{role}} and {{general.base_domain}}',
      })
    return []
  }
  const general = {name: nodeset.general.name, base_domain: domain}
  const render = (n: number) => renderTemplate(pattern, {nodes: []}, {n, index: n, role: role.role, general}).trim()
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
  role: RoleSpec,
  service: string,
  catalog: Catalog,
  node: string,
  problems: Diagnostic[],
  inputs: Map<string, PlanInput>,
): ParamPlan[] {
  const meta = catalog.get(service)
  const params: ParamPlan[] = []
  for (const [name, spec] of Object.entries(meta?.params ?? {})) {
    const set = role.params[service]?.[name]
    const secret = spec.secret || isSecretName(name)
    if ((set && isInputMarker(set.value)) || (!set && spec.input)) {
      const source = set?.source ?? paramSource(meta!, name)
      const key = `${role.section}.${service}.${name}`
      let input = inputs.get(key)
      if (!input) {
        input = {
          section: role.section,
          role: role.role,
          service,
          param: name,
          key,
          description: spec.description,
          secret,
          nodes: [],
          source,
        }
        inputs.set(key, input)
      }
      input.nodes.push(node)
      params.push({name, value: '', source, secret, input: true})
    } else if (set) params.push({name, value: set.value, source: set.source, secret})
    else if (spec.default !== undefined)
      params.push({name, value: spec.default, source: paramSource(meta!, name), secret})
    else if (spec.required) {
      problems.push({
        message: `${node}: service ${service} needs param "${name}" (${spec.description || 'no description'})`,
        source: role.source,
        hint: `set "${service}.${name} = …" in [${role.section}]`,
      })
    } else params.push({name, value: '', source: {file: meta!.dir + '/service.json', line: 1}, secret})
  }
  return params
}

/** Plan the nodeset; throws DiagnosticsError when names clash or a value is missing. Graph problems are in analysis. */
export function planNodeset(nodeset: Nodeset, catalog: Catalog): PlanResult {
  const problems: Diagnostic[] = []
  const nodes: NodePlan[] = []
  const steps: StepPlan[] = []
  const owner = new Map<string, RoleSpec>()
  const inputs = new Map<string, PlanInput>()
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
      const site = role.site ? {site: role.site.value} : {}
      nodes.push({name, role: role.role, index: i + 1, size: role.size?.value, services: role.services.value, ...site})
      for (const service of role.services.value) {
        const meta = catalog.get(service)
        steps.push({
          node: name,
          service,
          params: stepParams(role, service, catalog, name, problems, inputs),
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

  // One body object per service: every node of it shares the check of its template.
  const bodies = new Map<string, CheckService['body']>()
  const bodyOf = (service: string): CheckService['body'] => {
    if (!bodies.has(service)) {
      const meta = catalog.get(service)
      const partials = Object.fromEntries(
        Object.entries(meta?.partials ?? {}).map(([name, text]) => [name, {text, file: meta!.partialPaths[name]}]),
      )
      bodies.set(service, meta?.script ? {text: meta.script, file: meta.scriptPath, partials} : undefined)
    }
    return bodies.get(service)
  }
  const instances: CheckInstance[] = nodes.map((node) => ({
    id: node.name,
    role: node.role,
    index: node.index,
    services: steps
      .filter((s) => s.node === node.name)
      .map((s) => ({
        name: s.service,
        // An input's value is empty here: it carries no reference, and the config server serves it as given.
        params: s.params.map((p) => ({name: p.name, value: p.value, source: p.source})),
        provides: s.provides,
        after: s.after,
        body: bodyOf(s.service),
      })),
  }))
  const analysis = analyze(instances)
  const plan: Plan = {
    deployment: nodeset.general.name,
    baseDomain: nodeset.general.baseDomain,
    setEtcHosts: nodeset.general.setEtcHosts,
    nodes,
    steps,
    references: analysis.references,
    ...(nodeset.sites?.length ? {sites: nodeset.sites.map(sitePlanOf)} : {}),
  }
  return {plan, analysis, loadBalancing, inputs: [...inputs.values()]}
}

function sitePlanOf(site: SiteSpec): SitePlan {
  const {name, source, provider, configServer, broker} = site
  return {name, source, provider, configServer: configServer.value, ...(broker ? {broker: broker.value} : {})}
}

/** Plans and graphs as text and JSON (DOT is drawn by src/web/dot.ts): pure functions, printed by the commands. */
import {REDACTED} from '../core/redact.js'
import {INPUT_MARKER} from '../nodeset/read.js'
import type {Nodeset} from '../nodeset/types.js'
import type {PlanResult} from './plan.js'
import {formatSource, type SizeSpec} from '../core/source.js'

export function formatSize(size: SizeSpec | undefined): string {
  if (!size) return '-'
  return size.kind === 'ram'
    ? `ram ${size.megabytes >= 1024 && size.megabytes % 1024 === 0 ? `${size.megabytes / 1024}GB` : `${size.megabytes}MB`}`
    : `${size.kind} ${size.value}`
}

/** Columns padded to their widest cell. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd()
  return [line(header), ...rows.map(line)].join('\n')
}

export function planJson(nodeset: Nodeset, result: PlanResult): unknown {
  const {plan, analysis, loadBalancing} = result
  const balancer = nodeset.roles.find((r) => r.role === 'balancer')
  return {
    ok: analysis.problems.length === 0,
    deployment: plan.deployment,
    file: nodeset.file,
    provider: nodeset.provider.kind,
    loadBalancing,
    hostnames: balancer?.hostnames ?? [],
    locations: nodeset.roles.flatMap((r) => r.locations.map((l) => ({url: l.url, app: l.app, role: r.role}))),
    nodes: plan.nodes.map((n) => ({
      name: n.name,
      role: n.role,
      index: n.index,
      size: formatSize(n.size),
      services: n.services,
    })),
    steps: plan.steps.map((s) => ({
      node: s.node,
      service: s.service,
      after: s.after,
      provides: s.provides,
      params: Object.fromEntries(
        s.params.map((p) => [
          p.name,
          p.input ? INPUT_MARKER : p.secret && !p.value.includes('{{') && p.value !== '' ? REDACTED : p.value,
        ]),
      ),
    })),
    inputs: result.inputs.map((i) => ({
      key: i.key,
      section: i.section,
      role: i.role,
      service: i.service,
      param: i.param,
      description: i.description,
      secret: i.secret,
      nodes: i.nodes,
      source: i.source ? formatSource(i.source) : undefined,
    })),
    references: plan.references.map((r) => ({
      from: `${r.from.node}/${r.from.service}${r.from.param ? `.${r.from.param}` : ''}`,
      kind: r.kind,
      to: r.to.service ? `${r.to.node}/${r.to.service}` : r.to.node,
      key: r.key,
      expression: r.expression,
      source: r.source ? formatSource(r.source) : undefined,
    })),
    problems: analysis.problems,
  }
}

export function planText(nodeset: Nodeset, result: PlanResult): string {
  const {plan, analysis, loadBalancing} = result
  const out: string[] = []
  const balancer = nodeset.roles.find((r) => r.role === 'balancer')
  out.push(`nodeset ${plan.deployment} (${nodeset.file}), provider ${nodeset.provider.kind}`)
  const appservers = plan.nodes.filter((n) => n.role === 'appserver').length
  const balancerNode = plan.nodes.find((n) => n.role === 'balancer')
  out.push(
    `load balancing: ${loadBalancing ? `on (${appservers} appservers behind ${balancerNode?.name ?? 'the balancer'})` : 'off'}${balancer?.hostnames.length ? `; hostnames: ${balancer.hostnames.join(', ')}` : ''}`,
  )
  for (const role of nodeset.roles) for (const l of role.locations) out.push(`location: ${l.url} → ${l.app}`)
  out.push('')
  out.push(
    table(
      ['NODE', 'ROLE', 'SIZE', 'SERVICES'],
      plan.nodes.map((n) => [n.name, n.role, formatSize(n.size), n.services.join(' ') || '-']),
    ),
  )
  out.push('')
  if (plan.references.length > 0) {
    out.push(`references (${plan.references.length}):`)
    const shown = plan.references.slice(0, 50)
    out.push(
      table(
        ['FROM', 'NEEDS', 'OF', 'AT'],
        shown.map((r) => [
          `${r.from.node}/${r.from.service}${r.from.param ? `.${r.from.param}` : ''}`,
          `${r.kind} ${r.key}`,
          r.to.service ? `${r.to.node}/${r.to.service}` : r.to.node,
          r.source ? formatSource(r.source) : '',
        ]),
      ),
    )
    if (plan.references.length > shown.length)
      out.push(`… and ${plan.references.length - shown.length} more (--json lists them all)`)
    out.push('')
  }
  if (result.inputs.length > 0) {
    out.push(`awaited at launch (${result.inputs.length}):`)
    out.push(
      table(
        ['INPUT', 'NODES', 'ABOUT', 'AT'],
        result.inputs.map((i) => [
          i.key,
          String(i.nodes.length),
          `${i.secret ? '(secret) ' : ''}${i.description}`,
          i.source ? formatSource(i.source) : '',
        ]),
      ),
    )
    out.push(
      '  create-node, setup-node and up ask for them on a terminal; or give them with --set INPUT=VALUE or --values FILE',
      '',
    )
  }
  if (analysis.problems.length === 0) {
    out.push(
      `checks: ok — ${plan.nodes.length} nodes, ${plan.steps.length} (node, service) steps, ${plan.references.length} references, no cycle, nothing dangling`,
    )
  } else {
    out.push(
      `checks: ${analysis.problems.length} problem${analysis.problems.length === 1 ? '' : 's'} (on stderr); nothing can be created from this file`,
    )
  }
  return out.join('\n')
}

export interface GraphData {
  /** `site`: the site a node belongs to, in a deployment that spans sites. */
  nodes: Array<{name: string; role: string; site?: string; services: string[]}>
  edges: Array<{from: string; to: string; kind: 'output' | 'after' | 'fact'; key?: string; source?: string}>
  cycles: string[][]
}

export function graphData(result: PlanResult): GraphData {
  const {plan, analysis} = result
  const edges: GraphData['edges'] = analysis.edges.map((e) => ({
    from: e.from,
    to: e.to,
    kind: e.label?.kind ?? 'output',
    key: e.label?.key,
    source: e.label?.source ? formatSource(e.label.source) : undefined,
  }))
  const seen = new Set<string>()
  for (const r of plan.references.filter((r) => r.kind === 'fact')) {
    const from = `${r.from.node}/${r.from.service}`
    const key = `${from}|${r.to.node}|${r.key}`
    if (seen.has(key)) continue
    seen.add(key)
    edges.push({from, to: r.to.node, kind: 'fact', key: r.key, source: r.source ? formatSource(r.source) : undefined})
  }
  const cycles = analysis.problems.filter((p) => p.message.startsWith('deadlock')).map((p) => p.details ?? [])
  const nodes = plan.nodes.map((n) => {
    const site = (n as {site?: string}).site
    return {name: n.name, role: n.role, ...(site === undefined ? {} : {site}), services: n.services}
  })
  return {nodes, edges, cycles}
}

export function graphText(data: GraphData): string {
  const out: string[] = []
  const needs = new Map<string, GraphData['edges']>()
  for (const e of data.edges) needs.set(e.from, [...(needs.get(e.from) ?? []), e])
  for (const node of data.nodes) {
    out.push(`${node.name} (${node.role})`)
    for (const service of node.services) {
      const vertex = `${node.name}/${service}`
      out.push(`  ${service}`)
      for (const e of needs.get(vertex) ?? []) {
        const what = e.kind === 'after' ? 'after' : e.kind === 'fact' ? `fact ${e.key} of` : `output ${e.key} of`
        out.push(`    needs ${what} ${e.to}${e.source ? `  (${e.source})` : ''}`)
      }
    }
  }
  if (data.cycles.length > 0) {
    out.push('', 'cycles:')
    for (const c of data.cycles) out.push(...c.map((l) => `  ${l}`), '')
  }
  return out.join('\n')
}

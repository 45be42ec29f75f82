/**
 * A picture (picture.ts) as Graphviz DOT. Without live states it is the plan's graph (`nodeset graph`);
 * with them each vertex is filled by its state and says it in words and with an icon, so the picture
 * reads without colour too. Pure and imported by the page's own code.
 */
import type {LiveState, VertexState} from './live.js'
import {groupCounts, type Picture, type PictureGraph, type Vertex, vertexLive} from './picture.js'

export interface StateStyle {
  icon: string
  fill: string
  border: string
}

/** Fill and border colours with dark text on every fill (WCAG AA), and an icon for each state. */
export const STATE_STYLES: Record<VertexState, StateStyle> = {
  'not created': {icon: '○', fill: '#f3f4f6', border: '#6b7280'},
  waiting: {icon: '◔', fill: '#fef3c7', border: '#b45309'},
  ready: {icon: '▷', fill: '#dbeafe', border: '#1d4ed8'},
  running: {icon: '↻', fill: '#bfdbfe', border: '#1e40af'},
  succeeded: {icon: '✔', fill: '#dcfce7', border: '#15803d'},
  failed: {icon: '✖', fill: '#fee2e2', border: '#b91c1c'},
  'timed out': {icon: '⊘', fill: '#ffedd5', border: '#c2410c'},
}

export const CYCLE_COLOR = '#dc2626'

const quote = (s: string): string => JSON.stringify(s)

/**
 * Above this many edges, an edge's key is its tooltip, not a label: dot lays out each label as a vertex
 * of its own, and thousands of them converging on one node (every appserver needing the database's
 * address) cost it minutes instead of seconds. The edge's kind stays in its style.
 */
export const LABELLED_EDGES_MAX = 1000

export interface DotOptions {
  /** Live states: vertices filled and labelled by state, and ids (`v0`, `v1`…) the page finds them by. */
  live?: LiveState
}

export function pictureDot(pic: Picture, graph: PictureGraph, name: string, options: DotOptions = {}): string {
  const out = [
    `digraph ${quote(name)} {`,
    '  rankdir=LR;',
    '  graph [fontname="Helvetica"];',
    '  node [shape=box, style=rounded, fontname="Helvetica"];',
    '  edge [fontname="Helvetica", fontsize=10];',
  ]
  const bySite = new Map<string | undefined, Picture['clusters']>()
  for (const c of pic.clusters) bySite.set(c.site, [...(bySite.get(c.site) ?? []), c])
  const ids = new Map(pic.vertices.map((v, i) => [v.id, `v${i}`]))
  let clusterIndex = 0
  for (const [site, clusters] of bySite) {
    const indent = site === undefined ? '  ' : '    '
    if (site !== undefined)
      out.push(`  subgraph ${quote(`cluster_site_${site}`)} {`, `    label=${quote(`site ${site}`)}; style=dashed;`)
    for (const cluster of clusters) {
      out.push(
        `${indent}subgraph ${quote(`cluster_${clusterIndex++}`)} {`,
        `${indent}  label=${quote(cluster.role)};`,
        `${indent}  style=rounded; color=gray;`,
      )
      for (const v of pic.vertices.filter((v) => v.cluster === cluster.key))
        out.push(`${indent}  ${quote(v.id)} [${vertexAttributes(v, graph, options, ids.get(v.id)!)}];`)
      out.push(`${indent}}`)
    }
    if (site !== undefined) out.push('  }')
  }
  const labelled = pic.edges.length <= LABELLED_EDGES_MAX
  for (const e of pic.edges) {
    const text = quote(`${e.key ?? e.kind}${e.count > 1 ? ` ×${e.count}` : ''}`)
    const label = labelled ? `label=${text}` : `tooltip=${text}`
    const style = e.kind === 'fact' ? ', style=dashed' : e.kind === 'after' ? ', style=dotted' : ''
    const red = e.inCycle ? `, color=${quote(CYCLE_COLOR)}, fontcolor=${quote(CYCLE_COLOR)}, penwidth=2` : ''
    out.push(`  ${quote(e.from)} -> ${quote(e.to)} [${label}${style}${red}];`)
  }
  out.push('}')
  return out.join('\n') + '\n'
}

function vertexAttributes(v: Vertex, graph: PictureGraph, options: DotOptions, id: string): string {
  const live = vertexLive(v, graph, options.live)
  const lines = labelLines(v, graph, options.live)
  if (live && v.kind === 'step') lines.push(`${STATE_STYLES[live.state].icon} ${live.state}`)
  if (v.inCycle) lines.push('⟲ in a cycle')
  const attributes = [`label=${quote(lines.join('\n'))}`]
  if (v.kind === 'phone') attributes.push('shape=ellipse', 'style=dashed')
  if (v.kind === 'group') attributes.push('shape=box3d')
  if (live) {
    const style = STATE_STYLES[live.state]
    attributes.push(`style=${quote(v.kind === 'group' ? 'filled' : 'rounded,filled')}`)
    attributes.push(`fillcolor=${quote(style.fill)}`, `color=${quote(style.border)}`)
  }
  if (v.inCycle) attributes.push(`color=${quote(CYCLE_COLOR)}`, `fontcolor=${quote(CYCLE_COLOR)}`, 'penwidth=2')
  if (options.live) attributes.push(`id=${quote(id)}`)
  return attributes.join(', ')
}

function labelLines(v: Vertex, graph: PictureGraph, live: LiveState | undefined): string[] {
  if (v.kind === 'phone') return [v.node!, 'phone home']
  if (v.kind === 'step') return [v.service!, v.node!]
  const group = v.group!
  const lines = [`${group.role} × ${group.nodes}`, group.services.join(', ') || '(no services)']
  if (live) {
    const counts = groupCounts(v, graph, live)
    lines.push(
      Object.entries(counts)
        .map(([state, n]) => `${STATE_STYLES[state as VertexState].icon} ${n} ${state}`)
        .join('  '),
    )
  }
  return lines
}

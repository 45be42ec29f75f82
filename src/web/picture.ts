/**
 * The picture of a deployment's graph, shared by `nodeset graph --format dot|svg` and the status page:
 * one cluster per role (inside one per site when nodes have sites), a vertex per (node, service), a
 * "phone home" vertex for a node whose facts others need, and, collapsed, one vertex per role of more
 * than a handful of nodes ("appserver × 100", with counts per state). Pure and imported by the page's
 * own code too: types only from below.
 *
 * Why clusters per role and not per node: Graphviz's dot separates every pair of sibling clusters with
 * constraints of their own (quadratic in their number), so 5,000 clusters need more memory than the
 * WebAssembly build has, while 5,000 vertices in a handful of clusters lay out in seconds.
 */
import type {LiveState, VertexLive, VertexState} from './live.js'

/** A role with more nodes than this is drawn as one vertex when collapsed. */
export const COLLAPSE_ABOVE = 5

export interface PictureNode {
  name: string
  role: string
  site?: string
  services: string[]
}

export interface PictureEdge {
  /** A `node/service` vertex. */
  from: string
  /** A `node/service` vertex, or a node (its facts, from its phone-home). */
  to: string
  kind: 'output' | 'after' | 'fact'
  key?: string
  source?: string
}

/** The graph as the plan has it (GraphData of src/plan/render.ts, nodes with their sites). */
export interface PictureGraph {
  nodes: PictureNode[]
  edges: PictureEdge[]
  /** Each cycle's lines, as the deadlock diagnostic prints them. */
  cycles: string[][]
}

export interface Vertex {
  /** `node/service`, a node's name (its phone-home), or `group:KEY`. */
  id: string
  kind: 'step' | 'phone' | 'group'
  cluster: string
  node?: string
  service?: string
  /** A group's key (site|role) and how many nodes it stands for. */
  group?: {key: string; role: string; nodes: number; services: string[]}
  inCycle: boolean
}

export interface Cluster {
  key: string
  role: string
  site?: string
}

export interface DrawnEdge {
  from: string
  to: string
  kind: PictureEdge['kind']
  key?: string
  /** How many plan edges this one stands for (more than 1 only between groups). */
  count: number
  inCycle: boolean
}

export interface Picture {
  clusters: Cluster[]
  vertices: Vertex[]
  edges: DrawnEdge[]
  /** Groups that could be collapsed, expanded or not: key → role, site and node count. */
  groups: Array<Cluster & {nodes: number; collapsed: boolean}>
}

export interface PictureOptions {
  /** Draw each role of more than COLLAPSE_ABOVE nodes as one vertex, except the groups in `expanded`. */
  collapse: boolean
  expanded?: ReadonlySet<string>
}

export const groupKey = (node: Pick<PictureNode, 'role' | 'site'>): string => `${node.site ?? ''}|${node.role}`

/** The vertices of the cycles: the `node/service` words of their lines. */
export function cycleMembers(cycles: readonly string[][]): Set<string> {
  return new Set(cycles.flat().flatMap((line) => line.split(' ').filter((w) => w.includes('/') && !w.includes('{'))))
}

export function picture(graph: PictureGraph, options: PictureOptions): Picture {
  const inCycle = cycleMembers(graph.cycles)
  const members = new Map<string, PictureNode[]>()
  for (const node of graph.nodes) {
    const key = groupKey(node)
    members.set(key, [...(members.get(key) ?? []), node])
  }
  const clusters: Cluster[] = [...members.entries()].map(([key, nodes]) => ({
    key,
    role: nodes[0].role,
    ...(nodes[0].site === undefined ? {} : {site: nodes[0].site}),
  }))
  const collapsed = new Set(
    [...members.entries()]
      .filter(([key, nodes]) => options.collapse && nodes.length > COLLAPSE_ABOVE && !options.expanded?.has(key))
      .map(([key]) => key),
  )
  const groupOf = new Map<string, string>()
  for (const node of graph.nodes) if (collapsed.has(groupKey(node))) groupOf.set(node.name, `group:${groupKey(node)}`)

  const factTargets = new Set(graph.edges.filter((e) => e.kind === 'fact').map((e) => e.to))
  const vertices: Vertex[] = []
  for (const [key, nodes] of members) {
    if (collapsed.has(key)) {
      const services = [...new Set(nodes.flatMap((n) => n.services))]
      const cyclic = nodes.some((n) => n.services.some((s) => inCycle.has(`${n.name}/${s}`)))
      const group = {key, role: nodes[0].role, nodes: nodes.length, services}
      vertices.push({id: `group:${key}`, kind: 'group', cluster: key, group, inCycle: cyclic})
      continue
    }
    for (const node of nodes) {
      if (factTargets.has(node.name))
        vertices.push({id: node.name, kind: 'phone', cluster: key, node: node.name, inCycle: false})
      for (const service of node.services) {
        const id = `${node.name}/${service}`
        vertices.push({id, kind: 'step', cluster: key, node: node.name, service, inCycle: inCycle.has(id)})
      }
    }
  }

  const drawnOf = (vertex: string) => groupOf.get(vertex.split('/')[0]) ?? vertex
  const edges = new Map<string, DrawnEdge>()
  for (const e of graph.edges) {
    const [from, to] = [drawnOf(e.from), drawnOf(e.to)]
    // Inside one collapsed role: what its nodes need of one another is in the expanded picture.
    if (from === to && from.startsWith('group:')) continue
    const id = JSON.stringify([from, to, e.kind, e.key])
    const cyclic = e.kind !== 'fact' && inCycle.has(e.from) && inCycle.has(e.to)
    const seen = edges.get(id)
    if (seen) {
      seen.count++
      seen.inCycle ||= cyclic
    } else
      edges.set(id, {from, to, kind: e.kind, ...(e.key === undefined ? {} : {key: e.key}), count: 1, inCycle: cyclic})
  }
  const groups = clusters
    .filter((c) => members.get(c.key)!.length > COLLAPSE_ABOVE)
    .map((c) => ({...c, nodes: members.get(c.key)!.length, collapsed: collapsed.has(c.key)}))
  return {clusters, vertices, edges: [...edges.values()], groups}
}

/** The state a vertex is drawn with: its own, or for a group the most pressing of its members'. */
export function vertexLive(vertex: Vertex, graph: PictureGraph, live: LiveState | undefined): VertexLive | undefined {
  if (!live || vertex.kind === 'phone') return undefined
  if (vertex.kind === 'step') return live.vertices[vertex.id] ?? {state: 'not created'}
  const counts = groupCounts(vertex, graph, live)
  const state = PRESSING.find((s) => (counts[s] ?? 0) > 0) ?? 'not created'
  return {state}
}

/** A group's members counted by state. */
export function groupCounts(
  vertex: Vertex,
  graph: PictureGraph,
  live: LiveState,
): Partial<Record<VertexState, number>> {
  const counts: Partial<Record<VertexState, number>> = {}
  for (const node of graph.nodes) {
    if (`group:${groupKey(node)}` !== vertex.id) continue
    for (const service of node.services) {
      const state = live.vertices[`${node.name}/${service}`]?.state ?? 'not created'
      counts[state] = (counts[state] ?? 0) + 1
    }
  }
  return counts
}

/** What a group shows first: trouble, then work in progress, then what is done. */
const PRESSING: readonly VertexState[] = [
  'failed',
  'timed out',
  'running',
  'waiting',
  'ready',
  'not created',
  'succeeded',
]

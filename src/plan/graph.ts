/**
 * The dependency graph: vertices are (node, service) pairs, an edge `a → b` means a needs b.
 * Cycle detection is Tarjan's strongly connected components, iterative and linear in V + E. It runs
 * on vertices numbered in the order they are first met (the given vertices, then the edges' ends)
 * and on edges as pairs of those numbers, in typed arrays: a deployment of 100,000 references is
 * checked without a map lookup or an object per vertex in the search.
 */

export interface Edge<L = unknown> {
  from: string
  to: string
  /** What made the edge: shown on each line of a cycle message. */
  label?: L
}

/**
 * A graph by numbers: vertices `0 … count - 1`, vertex `v` named `name(v)`; edge `k` goes from `from[k]`
 * to `to[k]` and is `edge(k)`. Names and edges are asked for only for the vertices and edges of a cycle.
 * Names are distinct; every number in `from` and `to` is below `count`.
 */
export interface NumberedGraph<L = unknown> {
  count: number
  name: (v: number) => string
  from: ArrayLike<number>
  to: ArrayLike<number>
  edge: (k: number) => Edge<L>
}

/** Number the vertices in the order they are first met: the given ones, then each edge's ends. */
export function numbered<L>(vertices: Iterable<string>, edges: Edge<L>[]): NumberedGraph<L> {
  const numbers = new Map<string, number>()
  const names: string[] = []
  const number = (name: string): number => {
    let n = numbers.get(name)
    if (n === undefined) {
      n = names.length
      numbers.set(name, n)
      names.push(name)
    }
    return n
  }
  for (const v of vertices) number(v)
  const from = new Int32Array(edges.length)
  const to = new Int32Array(edges.length)
  for (let k = 0; k < edges.length; k++) {
    from[k] = number(edges[k].from)
    to[k] = number(edges[k].to)
  }
  return {count: names.length, name: (v) => names[v], from, to, edge: (k) => edges[k]}
}

/** Out-edges by vertex, each vertex's in edge order: edge numbers `order[start[v]] … order[start[v + 1] - 1]`. */
interface Adjacency {
  start: Int32Array
  order: Int32Array
}

function adjacencyOf(count: number, from: ArrayLike<number>): Adjacency {
  const start = new Int32Array(count + 1)
  for (let k = 0; k < from.length; k++) start[from[k] + 1]++
  for (let v = 0; v < count; v++) start[v + 1] += start[v]
  const fill = start.slice(0, count)
  const order = new Int32Array(from.length)
  for (let k = 0; k < from.length; k++) order[fill[from[k]]++] = k
  return {start, order}
}

/** Components as runs of `members`: component `c` is `members[ends[c - 1] ?? 0] … members[ends[c] - 1]`. */
interface Components {
  members: Int32Array
  ends: number[]
}

/** Tarjan's components, in reverse topological order, each in the order its vertices leave the stack. */
function tarjan(count: number, to: ArrayLike<number>, adjacency: Adjacency): Components {
  const {start, order} = adjacency
  const index = new Int32Array(count).fill(-1)
  const low = new Int32Array(count)
  const onStack = new Uint8Array(count)
  const stack = new Int32Array(count)
  // Each frame: a vertex and the position of the next out-edge to look at.
  const frameVertex = new Int32Array(count)
  const frameNext = new Int32Array(count)
  const members = new Int32Array(count)
  const ends: number[] = []
  let counter = 0
  let top = 0
  let emitted = 0
  for (let root = 0; root < count; root++) {
    if (index[root] >= 0) continue
    index[root] = low[root] = counter++
    stack[top++] = root
    onStack[root] = 1
    frameVertex[0] = root
    frameNext[0] = start[root]
    let frames = 1
    while (frames > 0) {
      const v = frameVertex[frames - 1]
      const next = frameNext[frames - 1]
      if (next < start[v + 1]) {
        frameNext[frames - 1] = next + 1
        const w = to[order[next]]
        if (index[w] < 0) {
          index[w] = low[w] = counter++
          stack[top++] = w
          onStack[w] = 1
          frameVertex[frames] = w
          frameNext[frames] = start[w]
          frames++
        } else if (onStack[w] === 1 && index[w] < low[v]) low[v] = index[w]
        continue
      }
      frames--
      if (frames > 0) {
        const parent = frameVertex[frames - 1]
        if (low[v] < low[parent]) low[parent] = low[v]
      }
      if (low[v] === index[v]) {
        let w: number
        do {
          w = stack[--top]
          onStack[w] = 0
          members[emitted++] = w
        } while (w !== v)
        ends.push(emitted)
      }
    }
  }
  return {members, ends}
}

/** Strongly connected components, each a list of vertices, in reverse topological order. */
export function stronglyConnected(vertices: Iterable<string>, edges: Edge[]): string[][] {
  const graph = numbered(vertices, edges)
  const {members, ends} = tarjan(graph.count, graph.to, adjacencyOf(graph.count, graph.from))
  const components: string[][] = []
  let begin = 0
  for (const end of ends) {
    const component: string[] = []
    for (let i = begin; i < end; i++) component.push(graph.name(members[i]))
    components.push(component)
    begin = end
  }
  return components
}

/**
 * One concrete cycle per cyclic component (self-loops included), as the list of edges that walk it,
 * starting at the component's first vertex in sorted order so messages are stable.
 */
export function findCycles<L>(vertices: Iterable<string>, edges: Edge<L>[]): Edge<L>[][] {
  return findCyclesNumbered(numbered(vertices, edges))
}

/** findCycles on a graph already numbered (the plan's checks number their vertices as they make them). */
export function findCyclesNumbered<L>(graph: NumberedGraph<L>): Edge<L>[][] {
  const {count, name, from, to, edge} = graph
  const adjacency = adjacencyOf(count, from)
  const {members, ends} = tarjan(count, to, adjacency)
  const cycles: Edge<L>[][] = []
  // Which component a vertex of a cyclic component is in, numbered from 1 (0: not marked).
  const component = new Int32Array(count)
  let begin = 0
  for (let c = 0; c < ends.length; c++) {
    const end = ends[c]
    if (end - begin === 1) {
      const v = members[begin]
      for (let i = adjacency.start[v]; i < adjacency.start[v + 1]; i++) {
        const k = adjacency.order[i]
        if (to[k] === v) {
          cycles.push([edge(k)])
          break
        }
      }
    } else {
      let first = members[begin]
      for (let i = begin; i < end; i++) {
        component[members[i]] = c + 1
        if (name(members[i]) < name(first)) first = members[i]
      }
      cycles.push(shortestCycleThrough(first, c + 1, component, graph, adjacency))
    }
    begin = end
  }
  return cycles.sort((a, b) => (a[0].from < b[0].from ? -1 : a[0].from > b[0].from ? 1 : 0))
}

/** Breadth-first from `start` inside its component back to `start`: the shortest cycle through it. */
function shortestCycleThrough<L>(
  start: number,
  inComponent: number,
  component: Int32Array,
  graph: NumberedGraph<L>,
  adjacency: Adjacency,
): Edge<L>[] {
  const {to, edge} = graph
  // The edge each reached vertex was first reached by (start's own stays unset: reaching it ends the search).
  const via = new Map<number, number>()
  const queue: number[] = [start]
  for (let head = 0; head < queue.length; head++) {
    const v = queue[head]
    for (let i = adjacency.start[v]; i < adjacency.start[v + 1]; i++) {
      const k = adjacency.order[i]
      const w = to[k]
      if (component[w] !== inComponent) continue
      if (w === start) {
        const backwards: Edge<L>[] = [edge(k)]
        let at = v
        while (at !== start) {
          const step = via.get(at)!
          backwards.push(edge(step))
          at = graph.from[step]
        }
        return backwards.reverse()
      }
      if (!via.has(w)) {
        via.set(w, k)
        queue.push(w)
      }
    }
  }
  throw new Error(`internal: ${graph.name(start)} is in a cyclic component but no cycle was found`)
}

/** A topological order of the vertices (dependencies first); only meaningful when there is no cycle. */
export function topologicalOrder(vertices: Iterable<string>, edges: Edge[]): string[] {
  // Tarjan emits components in reverse topological order of the "needs" relation: dependencies first.
  return stronglyConnected(vertices, edges).flat()
}

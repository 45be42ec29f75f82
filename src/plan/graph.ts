/**
 * The dependency graph: vertices are (node, service) pairs, an edge `a → b` means a needs b.
 * Cycle detection is Tarjan's strongly connected components, iterative and linear in V + E.
 */

export interface Edge<L = unknown> {
  from: string
  to: string
  /** What made the edge: shown on each line of a cycle message. */
  label?: L
}

/** Strongly connected components, each a list of vertices, in reverse topological order. */
export function stronglyConnected(vertices: Iterable<string>, edges: Edge[]): string[][] {
  const adjacency = adjacencyOf(edges)
  const index = new Map<string, number>()
  const low = new Map<string, number>()
  const onStack = new Set<string>()
  const stack: string[] = []
  const components: string[][] = []
  let counter = 0

  const all = new Set<string>(vertices)
  for (const e of edges) {
    all.add(e.from)
    all.add(e.to)
  }

  for (const root of all) {
    if (index.has(root)) continue
    // Each frame: a vertex and the position of the next neighbour to look at.
    const frames: Array<{v: string; next: number}> = [{v: root, next: 0}]
    index.set(root, counter)
    low.set(root, counter++)
    stack.push(root)
    onStack.add(root)
    while (frames.length > 0) {
      const frame = frames[frames.length - 1]
      const neighbours = adjacency.get(frame.v) ?? []
      if (frame.next < neighbours.length) {
        const w = neighbours[frame.next++].to
        if (!index.has(w)) {
          index.set(w, counter)
          low.set(w, counter++)
          stack.push(w)
          onStack.add(w)
          frames.push({v: w, next: 0})
        } else if (onStack.has(w)) {
          low.set(frame.v, Math.min(low.get(frame.v)!, index.get(w)!))
        }
        continue
      }
      frames.pop()
      if (frames.length > 0) {
        const parent = frames[frames.length - 1].v
        low.set(parent, Math.min(low.get(parent)!, low.get(frame.v)!))
      }
      if (low.get(frame.v) === index.get(frame.v)) {
        const component: string[] = []
        let w: string
        do {
          w = stack.pop()!
          onStack.delete(w)
          component.push(w)
        } while (w !== frame.v)
        components.push(component)
      }
    }
  }
  return components
}

function adjacencyOf<L>(edges: Edge<L>[]): Map<string, Edge<L>[]> {
  const adjacency = new Map<string, Edge<L>[]>()
  for (const e of edges) {
    const list = adjacency.get(e.from)
    if (list) list.push(e)
    else adjacency.set(e.from, [e])
  }
  return adjacency
}

/**
 * One concrete cycle per cyclic component (self-loops included), as the list of edges that walk it,
 * starting at the component's first vertex in sorted order so messages are stable.
 */
export function findCycles<L>(vertices: Iterable<string>, edges: Edge<L>[]): Edge<L>[][] {
  const adjacency = adjacencyOf(edges)
  const cycles: Edge<L>[][] = []
  for (const component of stronglyConnected(vertices, edges)) {
    const members = new Set(component)
    const start = [...component].sort()[0]
    if (component.length === 1) {
      const self = (adjacency.get(start) ?? []).find((e) => e.to === start)
      if (self) cycles.push([self])
      continue
    }
    cycles.push(shortestCycleThrough(start, members, adjacency))
  }
  return cycles.sort((a, b) => (a[0].from < b[0].from ? -1 : a[0].from > b[0].from ? 1 : 0))
}

/** Breadth-first from `start` inside its component back to `start`: the shortest cycle through it. */
function shortestCycleThrough<L>(start: string, members: Set<string>, adjacency: Map<string, Edge<L>[]>): Edge<L>[] {
  const via = new Map<string, Edge<L>>()
  const queue: string[] = [start]
  for (let head = 0; head < queue.length; head++) {
    const v = queue[head]
    for (const e of adjacency.get(v) ?? []) {
      if (!members.has(e.to)) continue
      if (e.to === start) {
        const backwards: Edge<L>[] = [e]
        let at = v
        while (at !== start) {
          const step = via.get(at)!
          backwards.push(step)
          at = step.from
        }
        return backwards.reverse()
      }
      if (!via.has(e.to)) {
        via.set(e.to, e)
        queue.push(e.to)
      }
    }
  }
  throw new Error(`internal: ${start} is in a cyclic component but no cycle was found`)
}

/** A topological order of the vertices (dependencies first); only meaningful when there is no cycle. */
export function topologicalOrder(vertices: Iterable<string>, edges: Edge[]): string[] {
  // Tarjan emits components in reverse topological order of the "needs" relation: dependencies first.
  return stronglyConnected(vertices, edges).flat()
}

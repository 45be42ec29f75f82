import fc from 'fast-check'
import {describe, expect, it} from 'vitest'
import {type Edge, findCycles, stronglyConnected, topologicalOrder} from '../../src/plan/graph.js'

/** Brute force: a vertex is on a cycle iff it can reach itself through at least one edge. */
function bruteForceCyclic(vertices: string[], edges: Edge[]): Set<string> {
  const next = new Map<string, string[]>()
  for (const e of edges) next.set(e.from, [...(next.get(e.from) ?? []), e.to])
  const cyclic = new Set<string>()
  for (const v of vertices) {
    const seen = new Set<string>()
    const stack = [...(next.get(v) ?? [])]
    while (stack.length) {
      const w = stack.pop()!
      if (w === v) {
        cyclic.add(v)
        break
      }
      if (seen.has(w)) continue
      seen.add(w)
      stack.push(...(next.get(w) ?? []))
    }
  }
  return cyclic
}

const graphs = fc.integer({min: 1, max: 12}).chain((n) =>
  fc.record({
    vertices: fc.constant(Array.from({length: n}, (_, i) => `v${i}`)),
    edges: fc
      .array(fc.record({from: fc.integer({min: 0, max: n - 1}), to: fc.integer({min: 0, max: n - 1})}), {maxLength: 30})
      .map((es) => es.map((e) => ({from: `v${e.from}`, to: `v${e.to}`}))),
  }),
)

describe('the dependency graph', () => {
  it('finds a cycle exactly when brute force does, and each reported cycle is a real closed walk', () => {
    fc.assert(
      fc.property(graphs, ({vertices, edges}) => {
        const cycles = findCycles(vertices, edges)
        const cyclic = bruteForceCyclic(vertices, edges)
        expect(cycles.length > 0).toBe(cyclic.size > 0)
        const edgeSet = new Set(edges.map((e) => `${e.from}>${e.to}`))
        for (const cycle of cycles) {
          cycle.forEach((e, i) => {
            expect(edgeSet.has(`${e.from}>${e.to}`)).toBe(true)
            expect(cycle[(i + 1) % cycle.length].from).toBe(e.to)
            expect(cyclic.has(e.from)).toBe(true)
          })
        }
        // Every cyclic vertex belongs to a component that got a reported cycle.
        const components = stronglyConnected(vertices, edges)
        const reported = new Set(cycles.flatMap((c) => c.map((e) => e.from)))
        for (const v of cyclic) {
          const component = components.find((c) => c.includes(v))!
          expect(component.some((w) => reported.has(w))).toBe(true)
        }
      }),
      {numRuns: 500},
    )
  })

  it('orders an acyclic graph so that every dependency comes first', () => {
    fc.assert(
      fc.property(graphs, ({vertices, edges}) => {
        const acyclic = edges.filter((e) => Number(e.from.slice(1)) > Number(e.to.slice(1)))
        const order = topologicalOrder(vertices, acyclic)
        const position = new Map(order.map((v, i) => [v, i]))
        expect(order.length).toBe(vertices.length)
        for (const e of acyclic) expect(position.get(e.to)!).toBeLessThan(position.get(e.from)!)
      }),
    )
  })

  it('reports a self-reference as a cycle of one edge', () => {
    expect(
      findCycles(
        ['a', 'b'],
        [
          {from: 'a', to: 'b'},
          {from: 'b', to: 'b'},
        ],
      ),
    ).toEqual([[{from: 'b', to: 'b'}]])
  })

  it('handles a long chain without recursion limits', () => {
    const n = 200_000
    const edges = Array.from({length: n - 1}, (_, i) => ({from: `v${i}`, to: `v${i + 1}`}))
    expect(findCycles([], edges)).toEqual([])
    edges.push({from: `v${n - 1}`, to: 'v0'})
    expect(findCycles([], edges)[0]).toHaveLength(n)
  })
})

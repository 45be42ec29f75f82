import fc from 'fast-check'
import {describe, expect, it} from 'vitest'
import {type Edge, findCycles, stronglyConnected, topologicalOrder} from '../../src/plan/graph.js'
import {referenceComponents, referenceCycles} from './plan-reference.js'

// The graph functions as they were written with maps and sets of names: the numbered ones must give
// exactly the same components, in the same order, and the same cycles made of the same edges.
const names = fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'app1/svc', 'app10/svc', 'db/mysql', 'Z', '')
const graphs = fc.record({
  vertices: fc.array(names, {maxLength: 10}),
  edges: fc
    .array(fc.tuple(names, names), {maxLength: 40})
    .map((pairs) => pairs.map(([from, to], i): Edge<number> => ({from, to, label: i}))),
})

describe('the numbered graph functions', () => {
  it('find the components the name-keyed Tarjan found, in its order', () => {
    fc.assert(
      fc.property(graphs, ({vertices, edges}) => {
        expect(stronglyConnected(vertices, edges)).toStrictEqual(referenceComponents(vertices, edges))
        expect(topologicalOrder(vertices, edges)).toStrictEqual(referenceComponents(vertices, edges).flat())
      }),
      {numRuns: 3000},
    )
  })

  it('report the same cycles, edge for edge', () => {
    fc.assert(
      fc.property(graphs, ({vertices, edges}) => {
        const cycles = findCycles(vertices, edges)
        const expected = referenceCycles(vertices, edges)
        expect(cycles.map((c) => c.map((e) => e.label))).toStrictEqual(expected.map((c) => c.map((e) => e.label)))
        cycles.forEach((c, i) => c.forEach((e, j) => expect(e).toBe(expected[i][j])))
      }),
      {numRuns: 3000},
    )
  })

  it('handle a long chain without recursion', () => {
    const n = 200_000
    const vertices = Array.from({length: n}, (_, i) => `v${i}`)
    const edges = vertices.slice(1).map((v, i) => ({from: v, to: vertices[i]}))
    edges.push({from: vertices[0], to: vertices[n - 1]})
    const [cycle] = findCycles(vertices, edges)
    expect(cycle).toHaveLength(n)
    expect(stronglyConnected(vertices, edges)).toHaveLength(1)
  })
})

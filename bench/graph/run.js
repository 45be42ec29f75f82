// Checks a deployment with 100,000 references: template parsing, reference resolution and the
// cycle check (Tarjan), against a floor measured in the same run: one linear pass that only
// builds the adjacency lists of the same edges. Run: npm run build && node bench/graph/run.js
import {performance} from 'node:perf_hooks'
import {analyze} from '../../dist/plan/check.js'
import {findCycles} from '../../dist/plan/graph.js'

const REFERENCES = Number(process.env.REFERENCES ?? 100_000)

function deployment(references) {
  // One database; each app's service refers to the db's output and to the previous app's output.
  const instances = [
    {id: 'db', role: 'db', index: 1, services: [{name: 'mysql', params: [], provides: ['port'], after: []}]},
  ]
  const apps = Math.ceil(references / 2)
  for (let i = 1; i <= apps; i++) {
    const previous = i === 1 ? '{{output "db" "port"}}' : `{{output "app${i - 1}" "value"}}`
    instances.push({
      id: `app${i}`,
      role: `r${i}`,
      index: 1,
      services: [
        {
          name: 'svc',
          params: [
            {name: 'db', value: '{{output "db" "port"}}'},
            {name: 'prev', value: previous},
          ],
          provides: ['value'],
          after: [],
        },
      ],
    })
  }
  return instances
}

function time(fn) {
  const start = performance.now()
  const result = fn()
  return {ms: performance.now() - start, result}
}

const instances = deployment(REFERENCES)
const full = time(() => analyze(instances))
const refs = full.result.references.length
if (full.result.problems.length) throw new Error(`unexpected problems: ${full.result.problems[0].message}`)
const edges = full.result.edges
const cycles = time(() => findCycles(full.result.vertices, edges))
const floor = time(() => {
  const adjacency = new Map()
  for (const e of edges) {
    const list = adjacency.get(e.from)
    if (list) list.push(e)
    else adjacency.set(e.from, [e])
  }
  return adjacency.size
})
console.log(`references: ${refs}, edges: ${edges.length}, vertices: ${full.result.vertices.length}`)
console.log(
  `full check (parse + resolve + cycles): ${full.ms.toFixed(0)} ms, ${Math.round(refs / (full.ms / 1000))} references/s`,
)
console.log(`cycle check alone: ${cycles.ms.toFixed(1)} ms, ${Math.round(edges.length / (cycles.ms / 1000))} edges/s`)
console.log(
  `floor (adjacency pass): ${floor.ms.toFixed(1)} ms; cycle check / floor = ${(cycles.ms / floor.ms).toFixed(1)}x`,
)

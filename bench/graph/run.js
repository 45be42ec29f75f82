// Checks a deployment with 100,000 references: template parsing, reference resolution and the
// cycle check (Tarjan), against a floor measured in the same run: one linear pass that only
// builds the adjacency lists of the same edges. The check keeps what it found as columns of numbers;
// the reference and edge objects (what `nodeset plan --json` prints) are built on first read, timed
// on their own ("objects") and never inside the floor. Several rounds, each timing the full check then the
// floor over its edges, medians reported; each round checks a deployment of its own (its own node
// names, so its own template texts): nothing one round parsed is in a cache for the next.
// The first WARMUP rounds (4) run the same and are printed but not counted: they time V8 compiling
// the check's code (its first round, cold, is recorded as coldCheckMs); `nodeset plan`'s whole
// process, compiling included, is timed by bench/startup. V8 optimises on a thread of its own: on a
// busy two-core machine its code arrives rounds later than on an idle one (two warm-up rounds left
// the next two at 1.3-1.7x the steady time there).
// Run: npm run build && node bench/graph/run.js   (REFERENCES=… ROUNDS=… WARMUP=… for a shorter run)
import {performance} from 'node:perf_hooks'
import {setFlagsFromString} from 'node:v8'
import {runInNewContext} from 'node:vm'
import {analyze} from '../../dist/plan/check.js'
import {findCycles} from '../../dist/plan/graph.js'
import {record, round} from '../results.js'

const REFERENCES = Number(process.env.REFERENCES ?? 100_000)
const ROUNDS = Number(process.env.ROUNDS ?? 5)
const WARMUP = Number(process.env.WARMUP ?? 4)

// A collection before each timed section, so that none pays for the garbage of building the deployment.
setFlagsFromString('--expose-gc')
const collect = runInNewContext('gc')

function deployment(references, prefix) {
  // One database; each app's service refers to the db's output and to the previous app's output.
  const instances = [
    {id: 'db', role: 'db', index: 1, services: [{name: 'mysql', params: [], provides: ['port'], after: []}]},
  ]
  const apps = Math.ceil(references / 2)
  for (let i = 1; i <= apps; i++) {
    const previous = i === 1 ? '{{output "db" "port"}}' : `{{output "${prefix}app${i - 1}" "value"}}`
    instances.push({
      id: `${prefix}app${i}`,
      role: `${prefix}r${i}`,
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
  collect()
  const start = performance.now()
  const result = fn()
  return {ms: performance.now() - start, result}
}

/** The floor: one pass over the edges building their adjacency lists, nothing else. */
function adjacencyPass(edges) {
  const adjacency = new Map()
  for (const e of edges) {
    const list = adjacency.get(e.from)
    if (list) list.push(e)
    else adjacency.set(e.from, [e])
  }
  return adjacency.size
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]

const rounds = []
let shape
let coldMs
for (let r = 0; r < WARMUP + ROUNDS; r++) {
  // Through JSON, as the config server's registration receives a deployment: its strings flat, as the
  // file reader's are (strings built by template literals here would be flattened on first read, inside the check).
  const instances = JSON.parse(JSON.stringify(deployment(REFERENCES, `round${r}-`)))
  const full = time(() => analyze(instances))
  const analysis = full.result
  if (analysis.problems.length) throw new Error(`unexpected problems: ${analysis.problems[0].message}`)
  const objects = time(() => [analysis.references, analysis.edges])
  const [, edgeList] = objects.result
  const floor = time(() => adjacencyPass(edgeList))
  const cycles = time(() => findCycles(analysis.vertices, analysis.edges))
  if (cycles.result.length) throw new Error('unexpected cycle')
  shape = {
    references: analysis.references.length,
    edges: analysis.edges.length,
    vertices: analysis.vertices.length,
  }
  coldMs ??= full.ms
  const counted = r >= WARMUP
  if (counted) rounds.push({full: full.ms, objects: objects.ms, floor: floor.ms, cycles: cycles.ms})
  console.log(
    `${counted ? `round ${r + 1 - WARMUP}` : `warm-up ${r + 1}`}: full check ${full.ms.toFixed(1)} ms, objects ${objects.ms.toFixed(1)} ms, floor ${floor.ms.toFixed(1)} ms, cycle check ${cycles.ms.toFixed(1)} ms`,
  )
}

const fullMs = median(rounds.map((r) => r.full))
const floorMs = median(rounds.map((r) => r.floor))
const objectsMs = median(rounds.map((r) => r.objects))
const cyclesMs = median(rounds.map((r) => r.cycles))
const {references, edges, vertices} = shape
console.log(
  `references: ${references}, edges: ${edges}, vertices: ${vertices}; medians of ${ROUNDS} rounds after ${WARMUP} warm-up rounds:`,
)
console.log(
  `full check (parse + resolve + cycles): ${fullMs.toFixed(1)} ms, ${Math.round(references / (fullMs / 1000))} references/s`,
)
console.log(`cycle check alone: ${cyclesMs.toFixed(1)} ms, ${Math.round(edges / (cyclesMs / 1000))} edges/s`)
console.log(`reference and edge objects, built on first read: ${objectsMs.toFixed(1)} ms`)
console.log(`floor (adjacency pass): ${floorMs.toFixed(1)} ms`)
console.log(
  `full check / floor = ${(fullMs / floorMs).toFixed(1)}x; cycle check / floor = ${(cyclesMs / floorMs).toFixed(1)}x`,
)
record({
  rounds: ROUNDS,
  references,
  edges,
  vertices,
  fullCheckMs: round(fullMs, 1),
  floorMs: round(floorMs, 2),
  cycleCheckMs: round(cyclesMs, 1),
  coldCheckMs: round(coldMs, 1),
  objectsMs: round(objectsMs, 1),
  fullCheckToFloor: round(fullMs / floorMs),
  cycleCheckToFloor: round(cyclesMs / floorMs),
  objectsToFloor: round(objectsMs / floorMs),
})

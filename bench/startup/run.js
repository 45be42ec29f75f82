// CLI start-up: whole processes, several runs each, medians of wall time and of peak memory
// (max RSS, by GNU time), against `node -e 0` measured in the same run, the cases in turn.
// Run: npm run build && node bench/startup/run.js   (RUNS=… for fewer runs)
import {spawnSync} from 'node:child_process'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {record, round} from '../results.js'

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '../..')
const RUNS = Number(process.env.RUNS ?? 15)
const bin = path.join(root, 'bin/run.js')

const cases = [
  {name: 'node -e 0', args: ['-e', '0']},
  {name: 'nodeset --help', args: [bin, '--help']},
  {name: 'nodeset plan examples/foobar.conf', args: [bin, 'plan', path.join(root, 'examples/foobar.conf')]},
]

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]

/** One run's wall time (ms) and peak RSS (MiB, from GNU time: `apt-get install time` when missing). */
function once(args) {
  const start = process.hrtime.bigint()
  const run = spawnSync('/usr/bin/time', ['-f', '%M', process.execPath, ...args], {encoding: 'utf8', cwd: root})
  const ms = Number(process.hrtime.bigint() - start) / 1e6
  if (run.error) throw new Error(`cannot run /usr/bin/time (${run.error.message}): apt-get install time`)
  if (run.status !== 0) throw new Error(`${args.join(' ')} exited ${run.status}: ${run.stderr}`)
  const kib = Number(run.stderr.trim().split('\n').pop())
  return {ms, mib: kib / 1024}
}

// The cases take turns, run by run: a machine that slows down for a while slows every case alike,
// not the one whose runs fell in that while.
for (const c of cases) once(c.args) // warm the file cache
const runs = Object.fromEntries(cases.map((c) => [c.name, []]))
for (let r = 0; r < RUNS; r++) for (const c of cases) runs[c.name].push(once(c.args))
const figures = Object.fromEntries(
  cases.map((c) => [c.name, {ms: median(runs[c.name].map((r) => r.ms)), mib: median(runs[c.name].map((r) => r.mib))}]),
)
console.log(`${'command'.padEnd(40)}${'median ms'.padStart(12)}${'peak MiB'.padStart(12)}${'× node'.padStart(10)}`)
const node = figures['node -e 0']
for (const c of cases) {
  const f = figures[c.name]
  console.log(
    `${c.name.padEnd(40)}${f.ms.toFixed(0).padStart(12)}${f.mib.toFixed(0).padStart(12)}${(f.ms / node.ms).toFixed(1).padStart(10)}`,
  )
}
const help = figures['nodeset --help']
const plan = figures['nodeset plan examples/foobar.conf']
record({
  runs: RUNS,
  nodeMs: round(node.ms, 1),
  helpMs: round(help.ms, 1),
  planMs: round(plan.ms, 1),
  helpToNode: round(help.ms / node.ms),
  planToNode: round(plan.ms / node.ms),
  peakMiB: round(Math.max(help.mib, plan.mib), 0),
})

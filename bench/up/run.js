// `nodeset up` of the README's local example (examples/local.conf: two appservers, a database and
// a balancer; examples/hello-app), from nothing and then again with nothing changed, against a
// floor measured in the same run on the same nodes: `ssh node true` to every node in parallel.
// Needs root (the local provider). Run: npm run build && node bench/up/run.js   (RUNS=3 by default)
import {execFile} from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {promisify} from 'node:util'
import {record, round} from '../results.js'
import {sshTrueSeconds} from '../ssh-floor.js'

const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.resolve(here, '../..')
const bin = path.join(root, 'bin/run.js')
const run = promisify(execFile)
const RUNS = Number(process.env.RUNS ?? 3)

async function timed(fn) {
  const start = process.hrtime.bigint()
  await fn()
  return Number(process.hrtime.bigint() - start) / 1e9
}

const nodeset = (args) => run(process.execPath, [bin, ...args], {maxBuffer: 64 * 1024 * 1024})
const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]

/** The README's example under its own name and subnet, so it never meets a deployment of the user's. */
function exampleCopy(dir, i) {
  const text = fs
    .readFileSync(path.join(root, 'examples/local.conf'), 'utf8')
    .replace(/^name = .*$/m, `name = upbench${i}`)
    .replace(/^subnet = .*$/m, `subnet = 10.89.${i}.0/24`)
  const conf = path.join(dir, 'local.conf')
  fs.writeFileSync(conf, text)
  return conf
}

async function floor(conf, dir, name) {
  const nodes = JSON.parse((await nodeset(['list-nodes', conf, '--json'])).stdout).nodes
  return sshTrueSeconds(
    path.join(dir, '.nodeset', name),
    nodes.map((node) => node.address),
  )
}

async function once(i) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-bench-up-'))
  const conf = exampleCopy(dir, i)
  const app = path.join(root, 'examples/hello-app')
  try {
    const fromNothing = await timed(() => nodeset(['up', conf, app]))
    const unchanged = await timed(() => nodeset(['up', conf, app]))
    const sshFloor = await floor(conf, dir, `upbench${i}`)
    return {fromNothing, unchanged, sshFloor}
  } finally {
    await nodeset(['destroy-node', conf, '--yes']).catch((error) =>
      console.error(`cleanup of upbench${i} failed: ${error.message}`),
    )
    fs.rmSync(dir, {recursive: true, force: true})
  }
}

const runs = []
for (let i = 1; i <= RUNS; i++) runs.push(await once(i))
const fromNothing = median(runs.map((r) => r.fromNothing))
const unchanged = median(runs.map((r) => r.unchanged))
const sshFloor = median(runs.map((r) => r.sshFloor))
console.log('run  up from nothing  up unchanged  ssh true (4 nodes)')
for (const [i, r] of runs.entries())
  console.log(
    `${String(i + 1).padEnd(3)}  ${`${r.fromNothing.toFixed(2)}s`.padEnd(15)}  ${`${r.unchanged.toFixed(2)}s`.padEnd(12)}  ${r.sshFloor.toFixed(2)}s`,
  )
console.log(
  `median: from nothing ${fromNothing.toFixed(2)} s (goal ≤ 10 s), unchanged ${unchanged.toFixed(2)} s (goal ≤ 2 s) = ${(unchanged / sshFloor).toFixed(1)}x the ssh floor`,
)
record({
  runs: RUNS,
  fromNothingS: round(fromNothing),
  unchangedS: round(unchanged),
  sshFloorS: round(sshFloor),
  unchangedToFloor: round(unchanged / sshFloor),
})

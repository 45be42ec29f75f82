// Runs every benchmark (bench/*/run.js) one after another. Not a test: each prints its figures and
// the ratio against a baseline it measures in the same run. What each records (bench/results.js)
// goes into bench/results.json, one object per benchmark, with the time of the run.
// bench/federation needs the broker set up by scripts/broker-setup.sh (.ci/run runs it).
//   npm run bench                 every benchmark
//   npm run bench -- startup graph   only these
import {spawnSync} from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))
const only = process.argv.slice(2)
const resultsFile = path.join(here, 'results.json')
const results = fs.existsSync(resultsFile) ? JSON.parse(fs.readFileSync(resultsFile, 'utf8')) : {}
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-bench-'))
for (const name of fs.readdirSync(here).sort()) {
  const script = path.join(here, name, 'run.js')
  if (!fs.existsSync(script) || (only.length && !only.includes(name))) continue
  console.log(`\n== bench/${name}`)
  const resultFile = path.join(scratch, `${name}.json`)
  const {status} = spawnSync(process.execPath, [script], {
    stdio: 'inherit',
    env: {...process.env, NODESET_BENCH_RESULT: resultFile},
  })
  if (status !== 0) process.exitCode = 1
  if (fs.existsSync(resultFile))
    results[name] = {...JSON.parse(fs.readFileSync(resultFile, 'utf8')), measuredAt: new Date().toISOString()}
}
fs.rmSync(scratch, {recursive: true, force: true})
results.machine = {cpus: os.cpus().length, node: process.version, memoryGiB: Math.round(os.totalmem() / 2 ** 30)}
fs.writeFileSync(resultsFile, JSON.stringify(results, null, 2) + '\n')
console.log(`\nfigures: ${path.relative(process.cwd(), resultsFile)}`)

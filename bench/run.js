// Runs every benchmark (bench/*/run.js) one after another. Not a test: each prints its figures and
// the ratio against a baseline it measures in the same run.
import {spawnSync} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))
const only = process.argv.slice(2)
for (const name of fs.readdirSync(here).sort()) {
  const script = path.join(here, name, 'run.js')
  if (!fs.existsSync(script) || (only.length && !only.includes(name))) continue
  console.log(`\n== bench/${name}`)
  const {status} = spawnSync(process.execPath, [script], {stdio: 'inherit'})
  if (status !== 0) process.exitCode = 1
}

// create-node of 4 local nodes until every one has phoned home, in both boot modes of the local
// provider, in the same run: fast (a namespace with its own sshd, the baseline) and systemd (a real
// boot of the Debian image with cloud-init). Needs root, and for systemd mode debootstrap,
// systemd-container and the image (scripts/install.sh builds it; otherwise the first create builds it,
// which is not timed: the image is made ready before the clock starts).
// Run: npm run build && node bench/boot/run.js   (NODES=4 by default)
import {execFile} from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {promisify} from 'node:util'
import {record, round} from '../results.js'

const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.resolve(here, '../..')
const bin = path.join(root, 'bin/run.js')
const run = promisify(execFile)
const n = Number(process.env.NODES ?? 4)

const {ensureImage} = await import(path.join(root, 'dist/providers/local-image-build.js'))
await ensureImage((line) => console.log(line))

async function createNodes(mode, subnet) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `nodeset-bench-boot-${mode}-`))
  const conf = path.join(dir, 'boot.conf')
  fs.writeFileSync(
    conf,
    `[general]\nname = bboot-${mode}\nbase_domain = bench.test\nservices_dir = ${path.join(root, 'bench/setup/services')}\n` +
      `[provider]\nprovider = local\nsubnet = ${subnet}\nboot = ${mode}\n[role:node]\nnodes = ${n}\nservices = bench\n`,
  )
  try {
    const start = process.hrtime.bigint()
    await run(process.execPath, [bin, 'create-node', conf], {maxBuffer: 64 * 1024 * 1024})
    return Number(process.hrtime.bigint() - start) / 1e9
  } finally {
    await run(process.execPath, [bin, 'destroy-node', conf, '--yes']).catch((error) =>
      console.error(`cleanup of bboot-${mode} failed: ${error.message}`),
    )
    fs.rmSync(dir, {recursive: true, force: true})
  }
}

// Subnets of its own: none of the tests' (a bench stopped midway leaves its bridge behind, which a
// test on the same subnet would be refused for).
const fast = await createNodes('fast', '10.93.1.0/25')
const systemd = await createNodes('systemd', '10.93.1.128/25')
console.log(`create-node of ${n} nodes until all phoned home`)
console.log('mode     seconds  ratio to fast')
console.log(`fast     ${fast.toFixed(2).padEnd(7)}  1.0x`)
console.log(`systemd  ${systemd.toFixed(2).padEnd(7)}  ${(systemd / fast).toFixed(1)}x`)
record({nodes: n, fastSeconds: round(fast), systemdSeconds: round(systemd), systemdToFast: round(systemd / fast)})

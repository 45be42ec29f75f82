// setup-node on 4 and 16 local nodes, against two baselines measured in the same run on the same
// nodes: `ssh node true` to every node in parallel (the floor), and Ansible applying an equivalent
// playbook (bench/setup/playbook.yml). Needs root; Ansible from Debian's `ansible` package.
// Run: npm run build && node bench/setup/run.js   (SIZES=4,16 by default)
import {execFile, execFileSync} from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {promisify} from 'node:util'

const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.resolve(here, '../..')
const bin = path.join(root, 'bin/run.js')
const run = promisify(execFile)
const sizes = (process.env.SIZES ?? '4,16').split(',').map(Number)

async function timed(fn) {
  const start = process.hrtime.bigint()
  await fn()
  return Number(process.hrtime.bigint() - start) / 1e9
}

async function nodeset(args) {
  return run(process.execPath, [bin, ...args], {maxBuffer: 64 * 1024 * 1024})
}

function haveAnsible() {
  try {
    execFileSync('ansible-playbook', ['--version'], {stdio: 'ignore'})
    return true
  } catch {
    return false
  }
}

async function measure(n) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `nodeset-bench-${n}-`))
  const conf = path.join(dir, 'bench.conf')
  fs.writeFileSync(
    conf,
    `[general]\nname = bench${n}\nbase_domain = bench.test\nservices_dir = ${path.join(here, 'services')}\n[provider]\nprovider = local\nsubnet = 10.90.${n}.0/24\n[role:node]\nnodes = ${n}\nservices = bench\n`,
  )
  const ws = path.join(dir, '.nodeset', `bench${n}`)
  try {
    await nodeset(['create-node', conf])
    const nodes = JSON.parse((await nodeset(['list-nodes', conf, '--json'])).stdout).nodes
    const sshArgs = (ip) => [
      '-i',
      path.join(ws, 'id_ed25519'),
      '-o',
      `UserKnownHostsFile=${path.join(ws, 'known_hosts')}`,
      '-o',
      'StrictHostKeyChecking=yes',
      '-o',
      'BatchMode=yes',
      `root@${ip}`,
      'true',
    ]
    const floor = await timed(() => Promise.all(nodes.map((node) => run('ssh', sshArgs(node.address)))))
    const cold = await timed(() => nodeset(['setup-node', conf, '--concurrency', String(Math.max(16, n))]))
    const warm = await timed(() => nodeset(['setup-node', conf, '--concurrency', String(Math.max(16, n))]))
    const result = {n, floor, cold, warm}
    if (haveAnsible()) {
      const inventory = path.join(dir, 'inventory.ini')
      fs.writeFileSync(
        inventory,
        '[nodes]\n' +
          nodes.map((node) => `${node.name} ansible_host=${node.address}`).join('\n') +
          `\n[nodes:vars]\nansible_user=root\nansible_ssh_private_key_file=${path.join(ws, 'id_ed25519')}\nansible_ssh_common_args='-o UserKnownHostsFile=${path.join(ws, 'known_hosts')} -o StrictHostKeyChecking=yes'\nansible_python_interpreter=/usr/bin/python3\n`,
      )
      const env = {
        ...process.env,
        ANSIBLE_FORKS: String(n),
        ANSIBLE_HOST_KEY_CHECKING: 'True',
        ANSIBLE_NOCOLOR: '1',
        ANSIBLE_PIPELINING: 'True',
        ANSIBLE_LOCAL_TEMP: path.join(dir, 'ansible-tmp'),
      }
      const play = () =>
        run('ansible-playbook', ['-i', inventory, path.join(here, 'playbook.yml')], {env, maxBuffer: 64 * 1024 * 1024})
      result.ansibleCold = await timed(play)
      result.ansibleWarm = await timed(play)
    }
    return result
  } finally {
    await nodeset(['destroy-node', conf, '--yes']).catch((error) =>
      console.error(`cleanup of bench${n} failed: ${error.message}`),
    )
    fs.rmSync(dir, {recursive: true, force: true})
  }
}

const rows = []
for (const n of sizes) rows.push(await measure(n))
const f = (s) => (s === undefined ? '-' : `${s.toFixed(2)}s`)
const x = (a, b) => (a === undefined || b === undefined ? '-' : `${(a / b).toFixed(1)}x`)
console.log(
  'nodes  floor(ssh true)  nodeset cold  nodeset warm  ansible cold  ansible warm  cold/floor  warm/floor  ansible/nodeset cold  ansible/nodeset warm',
)
for (const r of rows) {
  console.log(
    `${String(r.n).padEnd(5)}  ${f(r.floor).padEnd(15)}  ${f(r.cold).padEnd(12)}  ${f(r.warm).padEnd(12)}  ${f(r.ansibleCold).padEnd(12)}  ${f(r.ansibleWarm).padEnd(12)}  ${x(r.cold, r.floor).padEnd(10)}  ${x(r.warm, r.floor).padEnd(10)}  ${x(r.ansibleCold, r.cold).padEnd(20)}  ${x(r.ansibleWarm, r.warm)}`,
  )
}
if (!haveAnsible())
  console.log(
    '(ansible-playbook is not installed: apt-get install ansible, or NODESET_WITH_ANSIBLE=1 bash scripts/install.sh)',
  )

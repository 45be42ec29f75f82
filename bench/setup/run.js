// setup-node on local nodes, against baselines measured in the same run on the same nodes: `ssh
// node true` to every node in parallel (the floor, the median of three, taking turns with the
// unchanged runs), Ansible applying an equivalent playbook (bench/setup/playbook.yml), and the same
// playbook with Mitogen's strategy (Debian's ansible-mitogen). Needs root; Ansible from Debian's `ansible` package.
// Run: npm run build && node bench/setup/run.js   (SIZES=4,16 by default; SIZES=16,64 for the full figures,
//   ANSIBLE_SIZES=16 to run the Ansible baselines at 16 nodes only)
// Each size uses the subnet BENCH_SUBNET.N.0/24 (BENCH_SUBNET defaults to 10.90).
// Cold: the first run of each tool (nodeset on fresh nodes; Ansible with no SSH control masters;
// Mitogen with none of its own); warm: the same again, nothing left to change (nodeset: unchanged,
// the median of three runs).
import {execFile, execFileSync} from 'node:child_process'
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
const sizes = (process.env.SIZES ?? '4,16').split(',').map(Number)
const subnet = process.env.BENCH_SUBNET ?? '10.90'
// The sizes that also run the Ansible baselines (every size by default): at 64 nodes they take many minutes.
const ansibleSizes = process.env.ANSIBLE_SIZES ? process.env.ANSIBLE_SIZES.split(',').map(Number) : sizes

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

/** The strategy plugins of Debian's ansible-mitogen, if it is installed. */
function mitogenStrategies() {
  try {
    return execFileSync('dpkg', ['-L', 'ansible-mitogen'], {encoding: 'utf8'})
      .split('\n')
      .find((line) => line.endsWith('/ansible_mitogen/plugins/strategy'))
  } catch {
    return undefined
  }
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]

async function measure(n) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `nodeset-bench-${n}-`))
  const conf = path.join(dir, 'bench.conf')
  fs.writeFileSync(
    conf,
    `[general]\nname = bench${n}\nbase_domain = bench.test\nservices_dir = ${path.join(here, 'services')}\n[provider]\nprovider = local\nsubnet = ${subnet}.${n}.0/24\n[role:node]\nnodes = ${n}\nservices = bench\n`,
  )
  const ws = path.join(dir, '.nodeset', `bench${n}`)
  try {
    await nodeset(['create-node', conf])
    const nodes = JSON.parse((await nodeset(['list-nodes', conf, '--json'])).stdout).nodes
    const setup = () => nodeset(['setup-node', conf, '--concurrency', String(Math.max(16, n))])
    const cold = await timed(setup)
    // The floor and the unchanged run (nothing to change in any node) take turns, three of each, so
    // that a slow spell of the machine weighs on both alike; each is the median of its three.
    const floorRuns = []
    const warmRuns = []
    for (let i = 0; i < 3; i++) {
      floorRuns.push(
        await sshTrueSeconds(
          ws,
          nodes.map((node) => node.address),
        ),
      )
      warmRuns.push(await timed(setup))
    }
    const floor = median(floorRuns)
    const warm = median(warmRuns)
    const result = {n, floor, cold, warm}
    if (haveAnsible() && ansibleSizes.includes(n)) {
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
        // Control masters of this run only: none left from an earlier run on the same addresses.
        ANSIBLE_SSH_CONTROL_PATH_DIR: path.join(dir, 'ansible-cp'),
        // 64 connections at once on a busy machine take longer than the default 10 s to be set up.
        ANSIBLE_TIMEOUT: '60',
      }
      // A run that fails is not a figure: said, and left out.
      const play = (extra = {}) =>
        run('ansible-playbook', ['-i', inventory, path.join(here, 'playbook.yml')], {
          env: {...env, ...extra},
          maxBuffer: 64 * 1024 * 1024,
        }).catch((error) => {
          console.error(
            `ansible-playbook failed on ${n} nodes: ${error.stdout?.split('\n').find((l) => /failed:|fatal:/.test(l)) ?? error.message}`,
          )
          throw error
        })
      const timedOrUndefined = (fn) => timed(fn).catch(() => undefined)
      result.ansibleCold = await timedOrUndefined(play)
      result.ansibleWarm = await timedOrUndefined(play)
      const strategies = mitogenStrategies()
      if (strategies) {
        const mitogen = {ANSIBLE_STRATEGY: 'mitogen_linear', ANSIBLE_STRATEGY_PLUGINS: strategies}
        result.mitogenCold = await timedOrUndefined(() => play(mitogen))
        result.mitogenWarm = await timedOrUndefined(() => play(mitogen))
      }
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
const columns = [
  ['nodes', (r) => String(r.n)],
  ['floor(ssh true)', (r) => f(r.floor)],
  ['nodeset cold', (r) => f(r.cold)],
  ['nodeset warm', (r) => f(r.warm)],
  ['ansible cold', (r) => f(r.ansibleCold)],
  ['ansible warm', (r) => f(r.ansibleWarm)],
  ['mitogen cold', (r) => f(r.mitogenCold)],
  ['mitogen warm', (r) => f(r.mitogenWarm)],
  ['cold/floor', (r) => x(r.cold, r.floor)],
  ['warm/floor', (r) => x(r.warm, r.floor)],
  ['ansible/nodeset cold', (r) => x(r.ansibleCold, r.cold)],
  ['ansible/nodeset warm', (r) => x(r.ansibleWarm, r.warm)],
  ['mitogen/nodeset cold', (r) => x(r.mitogenCold, r.cold)],
  ['mitogen/nodeset warm', (r) => x(r.mitogenWarm, r.warm)],
]
console.log(columns.map(([title]) => title).join('  '))
for (const r of rows) console.log(columns.map(([title, cell]) => cell(r).padEnd(title.length)).join('  '))
if (!haveAnsible())
  console.log(
    '(ansible-playbook is not installed: apt-get install ansible, or NODESET_WITH_ANSIBLE=1 bash scripts/install.sh)',
  )
else if (!mitogenStrategies()) console.log('(ansible-mitogen is not installed: apt-get install ansible-mitogen)')

// Seconds, and ratios: *ToFloor is nodeset ÷ the floor; ansibleToNodeset and mitogenToNodeset are cold
// runs (the tool's time ÷ nodeset's), the *WarmToNodeset ones warm runs against nodeset unchanged.
const ratio = (a, b) => (a === undefined || b === undefined ? undefined : round(a / b))
const seconds = (s) => (s === undefined ? undefined : round(s, 3))
record(
  Object.fromEntries(
    rows.map((r) => [
      `n${r.n}`,
      {
        floorS: seconds(r.floor),
        coldS: seconds(r.cold),
        unchangedS: seconds(r.warm),
        ansibleColdS: seconds(r.ansibleCold),
        ansibleWarmS: seconds(r.ansibleWarm),
        mitogenColdS: seconds(r.mitogenCold),
        mitogenWarmS: seconds(r.mitogenWarm),
        coldToFloor: ratio(r.cold, r.floor),
        unchangedToFloor: ratio(r.warm, r.floor),
        ansibleToNodeset: ratio(r.ansibleCold, r.cold),
        ansibleWarmToNodeset: ratio(r.ansibleWarm, r.warm),
        mitogenToNodeset: ratio(r.mitogenCold, r.cold),
        mitogenWarmToNodeset: ratio(r.mitogenWarm, r.warm),
      },
    ]),
  ),
)

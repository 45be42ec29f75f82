/**
 * setup-node on real local nodes (network namespaces with their own sshd), through the CLI:
 * the files on each node, reachability by name, the balancer forwarding to every appserver, a
 * second run that skips everything, scaling up that reruns only what changed, a failing service
 * that does not stop the others, a changed host key that is refused, and a node whose sshd moved
 * to another port, reached at the port it reports (by setup, exec and ssh).
 */
import {execFileSync, spawn} from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {type CliResult, mustRunLocalNodes, ROOT, runCli, sshRun} from '../helpers/cli.js'
import {localProviderProblem} from '../../src/providers/local-system.js'

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-setup-'))
const workspace = path.join(dir, '.nodeset', 'setup-test')
const base = path.join(dir, 'base.conf')
const scaled = path.join(dir, 'scaled.conf')
const broken = path.join(dir, 'broken.conf')
const APP = (n: number) => `10.81.0.${n + 1}`

fs.writeFileSync(
  base,
  `[general]
name = setup-test
base_domain = setup.test
boot_timeout = 90s
services_dir = ${path.join(ROOT, 'test/fixtures/services')}
[provider]
provider = local
subnet = 10.81.0.0/24
[appserver]
locations =
  http://web.setup.test/ web
nodes = 2
services = appserver web
[service:mysql]
[balancer]
hostnames = web.setup.test
`,
)
fs.writeFileSync(scaled, `[general]\nextends = base.conf\n[appserver]\nnodes = 3\n`)
fs.writeFileSync(broken, `[general]\nextends = scaled.conf\n[role:broken]\nservices = failing\n`)

function jsonResult(result: CliResult): {
  ok: boolean
  steps: Array<{node: string; step: string; status: string; message?: string; tail?: string}>
} {
  const start = result.stdout.lastIndexOf('{\n  "type": "result"')
  if (start < 0) throw new Error(`no result in output (exit ${result.code}): ${result.stderr.slice(-2000)}`)
  return JSON.parse(result.stdout.slice(start))
}

/** The steps that did not succeed, for assertion messages. */
function failures(result: CliResult): string {
  try {
    return JSON.stringify(jsonResult(result).steps.filter((s) => s.status === 'failed' || s.status === 'blocked'))
  } catch {
    return result.stderr.slice(-2000)
  }
}

const byStep = (r: {steps: Array<{node: string; step: string; status: string}>}) =>
  Object.fromEntries(r.steps.map((s) => [`${s.node}/${s.step}`, s.status]))

async function balancerAnswers(times: number): Promise<Set<string>> {
  const seen = new Set<string>()
  for (let i = 0; i < times; i++) {
    const response = await fetch('http://10.81.0.5:80/', {headers: {host: 'web.setup.test'}})
    expect(response.status).toBe(200)
    seen.add((await response.text()).trim())
  }
  return seen
}

describe.runIf(await mustRunLocalNodes())('setup-node on local nodes', () => {
  beforeAll(async () => {
    const problem = await localProviderProblem()
    if (problem) throw new Error(`cannot run: ${problem}`)
    // Start clean: nodes an interrupted earlier run left behind are found by the provider and removed.
    await runCli(['destroy-node', broken, '--yes'])
    const created = await runCli(['create-node', base])
    expect(created.code, created.stderr).toBe(0)
  })

  afterAll(async () => {
    await runCli(['destroy-node', broken, '--yes'])
    fs.rmSync(dir, {recursive: true, force: true})
  })

  it('sets every node up and wires them together', async () => {
    const result = await runCli(['setup-node', base, '--json'])
    const report = jsonResult(result)
    expect(result.code, failures(result)).toBe(0)
    expect(report.ok).toBe(true)
    expect(new Set(report.steps.map((s) => s.status))).toEqual(new Set(['done']))
    expect(report.steps).toHaveLength(4 * 2 + 2 * 2 + 1 + 1)
    const status = JSON.parse((await runCli(['status', base, '--json'])).stdout)
    expect(status.state).toBe('settled')
    expect(
      status.instances.flatMap((i: {services: Array<{status: string}>}) => i.services.map((s) => s.status)),
    ).toEqual(Array(6).fill('succeeded'))

    const roles = await sshRun(workspace, APP(1), 'cat /etc/nodeset/roles; cat /etc/nodeset/roles.json; cat /etc/hosts')
    expect(roles.stdout).toContain(
      'appserver = app1.setup.test 10.81.0.2\nappserver = app2.setup.test 10.81.0.3\nservice.mysql = mysql.setup.test 10.81.0.4\nbalancer = balancer.setup.test 10.81.0.5\n',
    )
    expect(
      JSON.parse(roles.stdout.slice(roles.stdout.indexOf('{'), roles.stdout.lastIndexOf('}') + 1))['service:mysql'],
    ).toEqual([{name: 'mysql.setup.test', ip: '10.81.0.4', index: 1}])
    expect(roles.stdout).toMatch(
      /# BEGIN nodeset setup-test\n10\.81\.0\.2 app1\.setup\.test app1\n[\s\S]*10\.81\.0\.5 balancer\.setup\.test balancer\n# END nodeset setup-test/,
    )
    expect(roles.stdout).toMatch(/^127\.0\.0\.1 localhost$/m)

    // The appserver reaches the database node by its name.
    const reach = await sshRun(
      workspace,
      APP(1),
      `node -e "require('net').connect(3306, 'mysql.setup.test').on('connect', () => { console.log('connected'); process.exit(0) }).on('error', (e) => { console.error(e.message); process.exit(1) })"`,
    )
    expect(reach.stdout.trim(), reach.stderr).toBe('connected')

    // The balancer forwards to both appservers.
    expect(await balancerAnswers(8)).toEqual(new Set(['app1.setup.test', 'app2.setup.test']))
  })

  it('skips every step on a second run', async () => {
    const result = await runCli(['setup-node', base, '--json'])
    expect(result.code, failures(result)).toBe(0)
    expect(new Set(jsonResult(result).steps.map((s) => s.status))).toEqual(new Set(['skipped']))
  })

  it('adding an appserver reruns the new node, the wiring and the balancer, and nothing else', async () => {
    const created = await runCli(['create-node', scaled, '--json'])
    expect(created.code, created.stderr).toBe(0)
    const result = await runCli(['setup-node', scaled, '--json'])
    expect(result.code, failures(result)).toBe(0)
    const status = byStep(jsonResult(result))
    const ran = Object.entries(status)
      .filter(([, s]) => s === 'done')
      .map(([k]) => k)
      .sort()
    expect(ran).toEqual(
      [
        'app1.setup.test/wiring',
        'app2.setup.test/wiring',
        'app3.setup.test/appserver',
        'app3.setup.test/base',
        'app3.setup.test/web',
        'app3.setup.test/wiring',
        'balancer.setup.test/balancer',
        'balancer.setup.test/wiring',
        'mysql.setup.test/wiring',
      ].sort(),
    )
    expect(Object.values(status).filter((s) => s !== 'done' && s !== 'skipped')).toEqual([])
    const roles = await sshRun(workspace, '10.81.0.4', 'grep appserver /etc/nodeset/roles')
    expect(roles.stdout).toContain('appserver = app3.setup.test')
    expect(await balancerAnswers(12)).toEqual(new Set(['app1.setup.test', 'app2.setup.test', 'app3.setup.test']))
  })

  it('reports a failing service with its output while every other node finishes', async () => {
    const created = await runCli(['create-node', broken])
    expect(created.code, created.stderr).toBe(0)
    const result = await runCli(['setup-node', broken, '--json'])
    expect(result.code).toBe(1)
    const report = jsonResult(result)
    const failing = report.steps.find((s) => s.step === 'failing')!
    expect(failing.status).toBe('failed')
    expect(failing.message).toContain('exit code 3')
    expect(failing.tail).toContain('cannot configure the frobnicator on broken1.setup.test')
    expect(report.steps.filter((s) => s !== failing).every((s) => s.status === 'done' || s.status === 'skipped')).toBe(
      true,
    )
    const text = await runCli(['setup-node', broken])
    expect(text.code).toBe(1)
    expect(text.stdout).toMatch(/broken1\.setup\.test\s+failing\s+failed\s+exit code 3/)
    expect(text.stdout).toContain('--- broken1.setup.test failing (last lines) ---')
    const status = await runCli(['status', broken, '--wait', '--json'])
    expect(status.code).toBe(1)
    expect(JSON.parse(status.stdout).state).toBe('failed')
  })

  it('destroying a node rewires the nodes that stay', async () => {
    const before = await sshRun(workspace, APP(1), 'cat /etc/nodeset/roles /etc/hosts')
    expect(before.stdout).toContain('broken1.setup.test')
    const destroyed = await runCli(['destroy-node', broken, 'broken1.setup.test', '--yes', '--json'])
    expect(destroyed.code, destroyed.stderr).toBe(0)
    const report = JSON.parse(destroyed.stdout)
    expect(report.destroyed).toEqual(['broken1.setup.test'])
    expect(report.rewired.map((r: {node: string}) => r.node).sort()).toEqual([
      'app1.setup.test',
      'app2.setup.test',
      'app3.setup.test',
      'balancer.setup.test',
      'mysql.setup.test',
    ])
    for (const address of [APP(1), '10.81.0.4']) {
      const after = await sshRun(workspace, address, 'cat /etc/nodeset/roles /etc/hosts')
      expect(after.stdout).not.toContain('broken1')
      expect(after.stdout).toContain('appserver = app3.setup.test')
    }
  })

  it('refuses a node whose host key changed, and goes on with the others', async () => {
    const knownHosts = path.join(workspace, 'known_hosts')
    const original = fs.readFileSync(knownHosts, 'utf8')
    const keyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-key-'))
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(keyDir, 'k')])
    const impostor = fs.readFileSync(path.join(keyDir, 'k.pub'), 'utf8').trim().split(' ').slice(0, 2).join(' ')
    const lines = original
      .split('\n')
      .map((l) => (l.startsWith('app2.setup.test') ? `${l.split(' ')[0]} ${impostor}` : l))
    fs.writeFileSync(knownHosts, lines.join('\n'))
    try {
      const result = await runCli(['setup-node', scaled, '--json', '--force'])
      expect(result.code).toBe(1)
      const report = jsonResult(result)
      const app2 = report.steps.filter((s) => s.node === 'app2.setup.test')
      expect(app2.find((s) => s.step === 'base')!.message).toMatch(/host key/i)
      expect(app2.every((s) => s.status === 'failed' || s.status === 'blocked')).toBe(true)
      expect(report.steps.filter((s) => s.node === 'app1.setup.test').every((s) => s.status === 'done')).toBe(true)
    } finally {
      fs.writeFileSync(knownHosts, original)
    }
  })

  it('sets up a node whose sshd moved to port 2222 through the port the node reports', async () => {
    // The deployment's config server, on its state and port, while the node's agent runs again.
    const {configServerPort} = JSON.parse(fs.readFileSync(path.join(workspace, 'settings.json'), 'utf8'))
    const server = spawn(
      process.execPath,
      [
        path.join(ROOT, 'bin/run.js'),
        'config-server',
        '--listen',
        `10.81.0.1:${configServerPort}`,
        '--state',
        path.join(workspace, 'configserver'),
      ],
      {stdio: 'ignore'},
    )
    const exited = new Promise((resolve) => server.once('exit', resolve))
    try {
      for (let i = 0; i < 200; i++) {
        if (
          await fetch(`http://10.81.0.1:${configServerPort}/healthz`).then(
            (r) => r.ok,
            () => false,
          )
        )
          break
        await new Promise((r) => setTimeout(r, 50))
      }
      // On the node, as its operator would: sshd moved to 2222, the agent run again (it reports
      // sshd_port from `sshd -T`), then sshd told to reload. Port 22 is closed from then on.
      // sshd's listener is the outermost sshd above this session (each connection has its own).
      const move = String.raw`sed -i 's/^ListenAddress \(.*\):22$/ListenAddress \1:2222/' /etc/ssh/sshd_config &&
        sh /var/lib/nodeset/agent.sh run && p=$$ && listener= &&
        while [ "$p" -gt 1 ]; do
          case "$(tr '\0' ' ' </proc/$p/cmdline)" in *sshd*) listener=$p ;; esac
          p=$(cut -d' ' -f4 /proc/$p/stat)
        done && kill -HUP "$listener"`
      const moved = await sshRun(workspace, APP(1), move)
      expect(moved.code, moved.stderr).toBe(0)
    } finally {
      server.kill('SIGTERM')
      await exited
    }
    const listening = (port: number) =>
      new Promise<boolean>((resolve) => {
        const socket = net.connect(port, APP(1))
        socket.once('connect', () => (socket.destroy(), resolve(true)))
        socket.once('error', () => resolve(false))
      })
    for (let i = 0; i < 100 && !(await listening(2222)); i++) await new Promise((r) => setTimeout(r, 100))
    expect(await listening(2222)).toBe(true)
    expect(await listening(22)).toBe(false)

    const result = await runCli(['setup-node', scaled, '--json', '--force'])
    expect(result.code, failures(result)).toBe(0)
    const app1 = jsonResult(result).steps.filter((s) => s.node === 'app1.setup.test')
    expect(app1.length).toBeGreaterThan(0)
    expect(app1.every((s) => s.status === 'done')).toBe(true)

    // Later commands reach the node where it reported it listens, too: exec and OpenSSH's ssh.
    const exec = await runCli(['exec', scaled, 'app1.setup.test', '--json', '--', 'hostname'])
    expect(exec.code, exec.stderr).toBe(0)
    expect(exec.stdout).toContain('app1')
    const ssh = await runCli(['ssh', scaled, 'app1.setup.test', '--', 'echo', 'reached on 2222'])
    expect(ssh.code, ssh.stderr).toBe(0)
    expect(ssh.stdout.trim()).toBe('reached on 2222')
  }, 180_000)
})

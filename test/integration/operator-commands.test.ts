/**
 * What an operator reaches for first, on a real local node: dry runs that touch nothing, read-only
 * commands that leave no state behind, ssh / exec / logs with the pinned host key, and confirmation
 * before anything is destroyed.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {localProviderProblem} from '../../src/providers/local-system.js'
import {runCli} from '../helpers/cli.js'

const problem = await localProviderProblem()
const mustRun = process.env.CI === 'true' || problem === undefined

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-operator-'))
const conf = path.join(work, 'ops.conf')
const state = path.join(work, '.nodeset')
const NODES = ['app1.ops.test', 'app2.ops.test']

const CONF = `[general]
name = ops-demo   # inline comments are comments
base_domain = ops.test
boot_timeout = 2m

[provider]
provider = local
subnet = 10.85.1.0/24

[appserver]
nodes = 2
locations =
  http://ops.test/ ops
`

describe.runIf(mustRun)('operator commands on a real node', () => {
  beforeAll(async () => {
    if (problem) throw new Error(problem)
    fs.writeFileSync(conf, CONF)
  })

  afterAll(async () => {
    await runCli(['destroy-node', conf, '--yes'])
    fs.rmSync(work, {recursive: true, force: true})
  }, 120_000)

  it('read-only commands and dry runs create nothing, not even .nodeset/', async () => {
    const status = await runCli(['status', conf])
    expect(status.code).toBe(1)
    expect(status.stderr).toContain('has no state beside')
    const listed = await runCli(['list-nodes', conf, '--json'])
    expect(listed.code).toBe(0)
    expect(JSON.parse(listed.stdout).nodes.map((n: {state: string}) => n.state)).toEqual(['missing', 'missing'])
    const dry = await runCli(['create-node', conf, '--dry-run', '--json'])
    expect(dry.code).toBe(0)
    expect(JSON.parse(dry.stdout)).toMatchObject({type: 'dry-run', create: NODES, exist: []})
    expect(JSON.parse((await runCli(['plan', conf, '--json'])).stdout).state).toBeUndefined()
    const text = await runCli(['up', conf, '--dry-run'])
    expect(text.stdout).toContain(`would create:   ${NODES.join(', ')}`)
    expect(fs.existsSync(state)).toBe(false)
  }, 60_000)

  it('create-node keeps its state in .nodeset/, ignored by git', async () => {
    const created = await runCli(['create-node', conf])
    expect(created.code, created.stderr).toBe(0)
    expect(fs.readFileSync(path.join(state, '.gitignore'), 'utf8')).toBe('*\n')
    const dry = await runCli(['create-node', conf, '--dry-run', '--json'])
    expect(JSON.parse(dry.stdout)).toMatchObject({create: [], exist: NODES})
    // plan is the dry run too, once the deployment has state here.
    const plan = await runCli(['plan', conf, '--json'])
    expect(JSON.parse(plan.stdout).state).toMatchObject({exist: NODES, create: [], extra: []})
  }, 120_000)

  it('exec runs on every node of a role, prefixes output, and fails when one node fails', async () => {
    const ok = await runCli(['exec', conf, 'appserver', '--', 'hostname'])
    expect(ok.code, ok.stderr).toBe(0)
    for (const node of NODES) expect(ok.stdout).toContain(`${node}: ${node}`)
    expect(ok.stdout).toContain('2 ok, 0 failed')
    const one = await runCli(['exec', conf, 'app2.ops.test', '--json', '--', 'test "$(hostname)" = app1.ops.test'])
    expect(one.code).toBe(1)
    expect(JSON.parse(one.stdout).nodes).toMatchObject([{node: 'app2.ops.test', code: 1}])
    const unknown = await runCli(['exec', conf, 'nosuch', '--', 'true'])
    expect(unknown.code).toBe(2)
    expect(unknown.stderr).toContain('no node or role nosuch')
  }, 60_000)

  it('ssh runs a command with OpenSSH and the pinned key; a changed pin is refused', async () => {
    const run = await runCli(['ssh', conf, 'app1.ops.test', '--', 'cat', '/etc/hostname'])
    expect(run.code, run.stderr).toBe(0)
    expect(run.stdout.trim()).toBe('app1.ops.test')
    const pins = path.join(state, 'ops-demo', 'known_hosts')
    const saved = fs.readFileSync(pins, 'utf8')
    try {
      // Another node's keys in place of app1's: OpenSSH must refuse, not ask or accept.
      const lines = saved.split('\n').filter(Boolean)
      const app2 = lines.filter((l) => l.startsWith('app2.ops.test,')).map((l) => l.split(' ').slice(1).join(' '))
      const app1Host = lines.find((l) => l.startsWith('app1.ops.test,'))!.split(' ')[0]
      fs.writeFileSync(
        pins,
        [...lines.filter((l) => !l.startsWith('app1.')), ...app2.map((k) => `${app1Host} ${k}`)].join('\n') + '\n',
      )
      const refused = await runCli(['ssh', conf, 'app1.ops.test', '--', 'true'])
      expect(refused.code).not.toBe(0)
      expect(refused.stderr).toMatch(/REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed/)
    } finally {
      fs.writeFileSync(pins, saved)
    }
  }, 60_000)

  it("logs shows the agent's log from the node", async () => {
    const run = await runCli(['logs', conf, 'app1.ops.test', '-n', '50'])
    expect(run.code, run.stderr).toBe(0)
    expect(run.stdout).toContain('== app1.ops.test: /var/log/nodeset-agent.log')
    expect(run.stdout.split('\n').length).toBeGreaterThan(2)
  }, 60_000)

  it('destroy-node without a terminal and without --yes refuses and destroys nothing', async () => {
    const run = await runCli(['destroy-node', conf, 'app2.ops.test'])
    expect(run.code).toBe(1)
    expect(run.stderr).toContain('pass --yes')
    const listed = JSON.parse((await runCli(['list-nodes', conf, '--json'])).stdout)
    expect(listed.nodes.map((n: {state: string}) => n.state)).toEqual(['running', 'running'])
  }, 60_000)
})

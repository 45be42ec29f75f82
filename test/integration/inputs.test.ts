/**
 * Params given at launch, on real local nodes through the built CLI: `plan` lists what is awaited;
 * without a terminal, create-node with values missing exits 2 listing each one and creates no node;
 * given with --set and --values, they reach the config server as inputs and the service's
 * configuration on every node of the role (the agent's /etc/nodeset/config.json) and its setup
 * script, and the secret one is never printed.
 */
import {execFileSync} from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {localProviderProblem} from '../../src/providers/local-system.js'
import {mustRunLocalNodes, ROOT, runCli, sshRun} from '../helpers/cli.js'

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-inputs-'))
const workspace = path.join(dir, '.nodeset', 'inputs-test')
const file = path.join(dir, 'launch.conf')
const values = path.join(dir, 'launch.ini')
// A secret with a " #" in it: a values file keeps it whole.
const TOKEN = 'tok-7f3a # 0451'
fs.writeFileSync(
  file,
  `[general]
name = inputs-test
base_domain = inputs.test
boot_timeout = 60s
services_dir = ${path.join(ROOT, 'test/fixtures/services')}
[provider]
provider = local
subnet = 10.84.1.0/24
[role:app]
nodes = 2
services = probe launch
probe.db_host = {{input}}
`,
)
fs.writeFileSync(values, `# given at launch\n[role:app]\nlaunch.api_token = ${TOKEN}\n`)
const NODES = ['app1.inputs.test', 'app2.inputs.test']
const sets = ['--set', 'role:app.probe.db_host=10.9.8.7', '--set', 'app.launch.greeting=hello there']

const namespaces = () => execFileSync('ip', ['netns', 'list'], {encoding: 'utf8'})
const rows = (stdout: string) =>
  JSON.parse(stdout.slice(stdout.lastIndexOf('{\n  "type": "result"'))) as {
    nodes: Array<{name: string; address: string; phonedHome?: string}>
  }

describe.runIf(await mustRunLocalNodes())('params given at launch, on local nodes', () => {
  beforeAll(async () => {
    const problem = await localProviderProblem()
    if (problem) throw new Error(`cannot run: ${problem}`)
    // Start clean: nodes an interrupted earlier run left behind are found by the provider and removed.
    await runCli(['destroy-node', file, '--yes'])
  })
  afterAll(async () => {
    await runCli(['destroy-node', file, '--yes'])
    fs.rmSync(dir, {recursive: true, force: true})
  })

  it('plan lists what is awaited at launch', async () => {
    const plan = await runCli(['plan', file])
    expect(plan.code, plan.stderr).toBe(0)
    expect(plan.stdout).toContain('awaited at launch (3):')
    expect(plan.stdout).toMatch(/^role:app\.probe\.db_host\s+2\s+An address\s+\S*launch\.conf:12$/m)
    expect(plan.stdout).toMatch(/^role:app\.launch\.api_token\s+2\s+\(secret\) A secret given at launch/m)
  })

  it('without a terminal, create-node lists every missing value, exits 2 and creates nothing', async () => {
    const none = await runCli(['create-node', file])
    expect(none.code, none.stderr).toBe(2)
    expect(none.stderr).toContain('3 params of')
    for (const key of ['role:app.probe.db_host', 'role:app.launch.greeting', 'role:app.launch.api_token'])
      expect(none.stderr).toMatch(new RegExp(`^  ${key.replaceAll('.', '\\.')} `, 'm'))

    const some = await runCli(['create-node', file, ...sets])
    expect(some.code, some.stderr).toBe(2)
    expect(some.stderr).toContain('1 param of')
    expect(some.stderr).toMatch(/^ {2}role:app\.launch\.api_token \(secret, A secret given at launch\)/m)
    expect(some.stderr).not.toMatch(/^ {2}role:app\.probe\.db_host/m)

    expect(namespaces()).not.toMatch(/inputs-test/)
    const listed = await runCli(['list-nodes', file, '--json'])
    const listedNodes = JSON.parse(listed.stdout).nodes as Array<{name: string; state: string}>
    expect(listedNodes.map((n) => `${n.name} ${n.state}`)).toEqual(NODES.map((n) => `${n} missing`))
  })

  it('given with --set and --values, the values reach the service on every node of the role, the secret unprinted', async () => {
    const created = await runCli(['create-node', file, ...sets, '--values', values, '--json'])
    expect(created.code, created.stderr).toBe(0)
    expect(created.stdout + created.stderr).not.toContain('tok-7f3a')
    const nodes = rows(created.stdout).nodes
    expect(nodes.map((n) => [n.name, Boolean(n.phonedHome)])).toEqual(NODES.map((n) => [n, true]))
    for (const node of nodes) {
      // The agent may still be writing the config it just received: wait for it, boundedly.
      let config: {complete: boolean; services: Record<string, {params: Record<string, string>}>} | undefined
      for (let i = 0; i < 50 && !config; i++) {
        const read = await sshRun(workspace, node.address, 'cat /etc/nodeset/config.json 2>/dev/null')
        if (read.stdout.trim()) config = JSON.parse(read.stdout)
        else await new Promise((r) => setTimeout(r, 200))
      }
      expect(config?.complete, node.name).toBe(true)
      expect(config?.services.probe.params).toEqual({db_host: '10.9.8.7'})
      expect(config?.services.launch.params).toEqual({greeting: 'hello there', api_token: TOKEN})
    }
    // Never in the user data a node boots with (nor in the agent's copy of it).
    const userData = await sshRun(
      workspace,
      nodes[0].address,
      'cat /var/lib/nodeset/user-data.sh /var/lib/nodeset/agent.sh',
    )
    expect(userData.stdout).toContain('NODESET')
    expect(userData.stdout).not.toContain('tok-7f3a')

    const setup = await runCli(['setup-node', file, ...sets, '--values', values])
    expect(setup.code, setup.stderr).toBe(0)
    expect(setup.stdout + setup.stderr).not.toContain('tok-7f3a')
    const written = await sshRun(
      workspace,
      nodes[1].address,
      'cat /var/lib/nodeset/launch/greeting /var/lib/nodeset/launch/api_token; stat -c %a /var/lib/nodeset/launch/api_token',
    )
    expect(written.stdout).toBe(`hello there\n${TOKEN}\n600\n`)
  })
})

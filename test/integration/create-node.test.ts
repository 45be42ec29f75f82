/**
 * create-node on real local nodes: the seed-000 flow (the app node's configuration completes with the
 * database's address as the config server saw it), re-runs that change nothing, scaling up, --prune,
 * and a boot timeout that fails the run and rolls back what it created.
 */
import {execFileSync} from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {openConfigServer} from '../../src/operations/connect.js'
import {open} from '../../src/operations/opened.js'
import {BootTimeoutError, createNodes} from '../../src/operations/nodes.js'
import type {NodeRequest, Provider} from '../../src/providers/provider.js'
import {mustRunLocalNodes, ROOT, runCli, sshRun} from '../helpers/cli.js'
import {localProviderProblem} from '../../src/providers/local-system.js'

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-create-'))
const workspace = path.join(dir, '.nodeset', 'create-test')
const base = path.join(dir, 'base.conf')
const scaled = path.join(dir, 'scaled.conf')
fs.writeFileSync(
  base,
  `[general]
name = create-test
base_domain = create.test
boot_timeout = 60s
services_dir = ${path.join(ROOT, 'test/fixtures/services')}
[provider]
provider = local
subnet = 10.82.0.0/24
[role:app]
services = probe
probe.db_host = {{ip "db"}}
[role:db]
services = probe
`,
)
fs.writeFileSync(scaled, `[general]\nextends = base.conf\n[role:app]\nnodes = 3\n`)

const namespaces = () => execFileSync('ip', ['netns', 'list'], {encoding: 'utf8'})
const result = (stdout: string) =>
  JSON.parse(stdout.slice(stdout.lastIndexOf('{\n  "type": "result"'))) as {
    nodes: Array<{name: string; address: string; createdNow: boolean; phonedHome?: string}>
  }

describe.runIf(await mustRunLocalNodes())('create-node on local nodes', () => {
  beforeAll(async () => {
    const problem = await localProviderProblem()
    if (problem) throw new Error(`cannot run: ${problem}`)
    // Start clean: nodes an interrupted earlier run left behind are found by the provider and removed.
    await runCli(['destroy-node', scaled, '--yes'])
  })
  afterAll(async () => {
    await runCli(['destroy-node', scaled, '--yes'])
    fs.rmSync(dir, {recursive: true, force: true})
  })

  it("creates both nodes at once; the app's configuration completes with the database's address as the server saw it", async () => {
    const created = await runCli(['create-node', base, '--json'])
    expect(created.code, created.stderr).toBe(0)
    const nodes = result(created.stdout).nodes
    expect(nodes.map((n) => [n.name, n.createdNow, Boolean(n.phonedHome)])).toEqual([
      ['app1.create.test', true, true],
      ['db1.create.test', true, true],
    ])
    const status = JSON.parse((await runCli(['status', base, '--json'])).stdout)
    const dbAddress = status.instances.find((i: {id: string}) => i.id === 'db1.create.test').address
    expect(dbAddress).toMatch(/^10\.82\.0\.\d+$/)
    const app = nodes.find((n) => n.name === 'app1.create.test')!
    // The agent may still be writing the config it just received: wait for it, boundedly.
    let config: {complete: boolean; services: {probe: {params: {db_host: string}}}} | undefined
    for (let i = 0; i < 50 && !config; i++) {
      const read = await sshRun(workspace, app.address, 'cat /etc/nodeset/config.json 2>/dev/null')
      if (read.stdout.trim()) config = JSON.parse(read.stdout)
      else await new Promise((r) => setTimeout(r, 200))
    }
    expect(config?.complete).toBe(true)
    expect(config?.services.probe.params.db_host).toBe(dbAddress)
    const hostname = await sshRun(workspace, app.address, 'hostname; stat -c %a /etc/nodeset/config.json')
    expect(hostname.stdout).toBe('app1.create.test\n600\n')
  })

  it('changes nothing when run again', async () => {
    const before = namespaces()
    const again = await runCli(['create-node', base, '--json'])
    expect(again.code, again.stderr).toBe(0)
    expect(result(again.stdout).nodes.every((n) => !n.createdNow)).toBe(true)
    expect(namespaces()).toBe(before)
  })

  it('adds exactly the new nodes when nodes is raised, and --prune removes the extras', async () => {
    const up = await runCli(['create-node', scaled, '--json'])
    expect(up.code, up.stderr).toBe(0)
    expect(
      result(up.stdout)
        .nodes.filter((n) => n.createdNow)
        .map((n) => n.name),
    ).toEqual(['app2.create.test', 'app3.create.test'])
    const listed = JSON.parse((await runCli(['list-nodes', scaled, '--json'])).stdout)
    expect(listed.nodes.map((n: {name: string; state: string}) => `${n.name} ${n.state}`)).toEqual([
      'app1.create.test running',
      'app2.create.test running',
      'app3.create.test running',
      'db1.create.test running',
    ])

    const extras = JSON.parse((await runCli(['list-nodes', base, '--json'])).stdout)
    expect(extras.nodes.filter((n: {planned: boolean}) => !n.planned).map((n: {name: string}) => n.name)).toEqual([
      'app2.create.test',
      'app3.create.test',
    ])
    const kept = await runCli(['create-node', base, '--json'])
    expect(kept.code, kept.stderr).toBe(0)
    expect(kept.stderr).toContain('app2.create.test is not in')
    expect(namespaces()).toContain('app3-create-test')
    const refused = await runCli(['create-node', base, '--prune', '--json'])
    // Without a terminal, pruning needs --yes: nothing is destroyed.
    expect(refused.code).toBe(1)
    expect(refused.stdout).toContain('pass --yes')
    expect(namespaces()).toContain('app3-create-test')
    const pruned = await runCli(['create-node', base, '--prune', '--yes', '--json'])
    expect(pruned.code, pruned.stderr).toBe(0)
    expect(namespaces()).not.toMatch(/app[23]-create-test/)
    expect(namespaces()).toMatch(/app1-create-test/)
  })

  it('fails when a node does not phone home by boot_timeout, and rolls back what the run created', async () => {
    const deployment = open(scaled)
    // A real node whose user data never phones home: the run must give up at the deadline.
    const real = deployment.provider
    const silent: Provider = {
      kind: real.kind,
      prepare: () => real.prepare(),
      create: (requests: NodeRequest[]) => real.create(requests.map((r) => ({...r, userData: '#!/bin/sh\nexit 0\n'}))),
      list: () => real.list(),
      destroy: (nodes) => real.destroy(nodes),
      sshTarget: (node) => real.sshTarget(node),
      hostKeyPolicy: () => real.hostKeyPolicy(),
    }
    const {operatorAddress} = await deployment.provider.prepare()
    const server = await openConfigServer(deployment.nodeset, deployment.workspace, operatorAddress)
    const started = Date.now()
    try {
      const error = await createNodes(
        {
          plan: deployment.result.plan,
          provider: silent,
          server: server.client,
          nodeUrl: server.nodeUrl,
          hostKeys: deployment.hostKeys,
          bootTimeoutSec: 4,
        },
        {rollbackOnFailure: true, pollMs: 100},
      ).catch((e: unknown) => e)
      expect(error).toBeInstanceOf(BootTimeoutError)
      expect((error as Error).message).toMatch(
        /2 nodes have not phoned home within boot_timeout \(4s\): app2\.create\.test, app3\.create\.test; rolled back the 2 nodes this run created/,
      )
      expect(Date.now() - started).toBeLessThan(20_000)
    } finally {
      await server.close()
    }
    expect(namespaces()).not.toMatch(/app[23]-create-test/)
    const remaining = await deployment.provider.list()
    expect(remaining.map((r) => r.name).sort()).toEqual(['app1.create.test', 'db1.create.test'])
  })
})

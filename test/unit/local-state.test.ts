import {mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {hostVethName, namespaceName, parseSubnet} from '../../src/providers/local-network.js'
import {
  assignNodes,
  LocalStateFiles,
  nodeRecord,
  nodeState,
  type DeploymentNet,
} from '../../src/providers/local-state.js'
import type {NodeRequest} from '../../src/providers/provider.js'

const net: DeploymentNet = {deployment: 'foobar', subnet: parseSubnet('10.77.0.0/24'), bridge: 'nsb-foobar-1a2b'}
const request = (name: string, role = 'appserver', index = 1): NodeRequest => ({
  deployment: 'foobar',
  name,
  role,
  index,
  userData: '#!/bin/sh\n',
})
const now = new Date('2030-01-02T03:04:05Z')
const work = mkdtempSync(join(tmpdir(), 'nodeset-local-state-'))
afterAll(() => rmSync(work, {recursive: true, force: true}))

describe('assigning nodes', () => {
  it('gives new nodes the lowest free addresses and their names, and keeps recorded ones as they are', () => {
    const db = {...nodeState(net, request('db1.foobar.com', 'service:mysql'), '10.77.0.2'), phase: 'created' as const}
    const assigned = assignNodes(
      net,
      [db],
      [
        request('app1.foobar.com'),
        request('db1.foobar.com', 'service:mysql'),
        request('app2.foobar.com', 'appserver', 2),
      ],
      now,
    )
    expect(assigned.map((a) => [a.request.name, a.known, a.state.address])).toEqual([
      ['app1.foobar.com', false, '10.77.0.3'],
      ['db1.foobar.com', true, '10.77.0.2'],
      ['app2.foobar.com', false, '10.77.0.4'],
    ])
    expect(assigned[1].state).toBe(db)
    expect(assigned[0].state).toEqual({
      deployment: 'foobar',
      name: 'app1.foobar.com',
      role: 'appserver',
      index: 1,
      namespace: namespaceName('foobar', 'app1.foobar.com'),
      address: '10.77.0.3',
      subnet: '10.77.0.0/24',
      hostAddress: '10.77.0.1',
      bridge: 'nsb-foobar-1a2b',
      hostVeth: hostVethName('foobar', 'app1.foobar.com'),
      createdAt: '2030-01-02T03:04:05.000Z',
      phase: 'creating',
    })
  })

  it('refuses a recorded node asked for with another role or index', () => {
    const app = nodeState(net, request('app1.foobar.com'), '10.77.0.2')
    expect(() => assignNodes(net, [app], [request('app1.foobar.com', 'balancer')], now)).toThrow(
      'local node app1.foobar.com already exists as appserver #1: destroy it before creating it as balancer #1',
    )
  })

  it('shows a node as running, pending until its first boot finished, or stopped', () => {
    const s = nodeState(net, request('app1.foobar.com'), '10.77.0.2')
    expect(nodeRecord(s, true)).toEqual({
      deployment: 'foobar',
      name: 'app1.foobar.com',
      role: 'appserver',
      index: 1,
      id: s.namespace,
      address: '10.77.0.2',
      privateAddress: '10.77.0.2',
      state: 'running',
      sshUser: 'root',
      sshPort: 22,
    })
    expect(nodeRecord(s, false).state).toBe('pending')
    expect(nodeRecord({...s, phase: 'created'}, false).state).toBe('stopped')
  })
})

describe('the state files', () => {
  const files = new LocalStateFiles(join(work, 'state'), 'foobar')

  it('records nodes in private directories and reads them back, skipping what is not a record', async () => {
    const app = nodeState(net, request('app1.foobar.com'), '10.77.0.2')
    await files.write(app)
    await files.write(nodeState(net, request('db1.foobar.com', 'service:mysql'), '10.77.0.3'))
    mkdirSync(join(files.dir, 'half-made'))
    expect(files.nodeDir('app1.foobar.com')).toBe(join(work, 'state', 'foobar', 'app1.foobar.com'))
    expect(files.lock).toBe(join(work, 'state', 'foobar.lock'))
    expect(JSON.parse(readFileSync(join(files.nodeDir('app1.foobar.com'), 'node.json'), 'utf8'))).toEqual(app)
    expect(statSync(files.dir).mode & 0o777).toBe(0o700)
    expect(statSync(join(files.nodeDir('app1.foobar.com'), 'node.json')).mode & 0o777).toBe(0o600)
    expect((await files.readAll()).map((s) => s.name).sort()).toEqual(['app1.foobar.com', 'db1.foobar.com'])
    await expect(files.read('half-made')).rejects.toThrow(/local node half-made of foobar is not recorded/)
  })

  it('keeps pid files beside the record; a missing or empty one is no pid', async () => {
    await files.writePid('app1.foobar.com', 'sshd', 4242)
    expect(readFileSync(join(files.nodeDir('app1.foobar.com'), 'sshd.pid'), 'utf8')).toBe('4242\n')
    expect(await files.readPid('app1.foobar.com', 'sshd')).toBe(4242)
    expect(await files.readPid('app1.foobar.com', 'agent')).toBeUndefined()
    writeFileSync(join(files.nodeDir('app1.foobar.com'), 'agent.pid'), '')
    expect(await files.readPid('app1.foobar.com', 'agent')).toBeUndefined()
  })

  it('forgets one node, then the whole deployment', async () => {
    await files.removeNode('app1.foobar.com')
    expect((await files.readAll()).map((s) => s.name)).toEqual(['db1.foobar.com'])
    await files.removeAll()
    expect(await files.readAll()).toEqual([])
  })
})

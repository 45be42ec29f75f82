/**
 * A static deployment whose servers' host keys are only in the user's known_hosts (nothing pinned in
 * the workspace): setup-node, update and rollback all verify them the provider's way and succeed;
 * with one key changed, all three refuse with the same message. The "servers" are real hosts made by
 * the local provider (network namespaces with their own sshd), then taken over by a static file.
 */
import {execFileSync} from 'node:child_process'
import fs from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {localProviderProblem} from '../../src/providers/local-system.js'
import {runCli, type CliResult} from '../helpers/cli.js'

const problem = await localProviderProblem()
const mustRun = process.env.CI === 'true' || problem === undefined

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-known-hosts-'))
const home = path.join(work, 'home')
const hostsConf = path.join(work, 'hosts', 'hosts.conf')
const staticConf = path.join(work, 'static', 'static.conf')
const hostsWorkspace = path.join(work, 'hosts', '.nodeset', 'kh-hosts')
const staticWorkspace = path.join(work, 'static', '.nodeset', 'kh-static')
const NODE = 'web1.kh.test'

const HOSTS_CONF = `[general]
name = kh-hosts
base_domain = kh.test
boot_timeout = 2m

[provider]
provider = local
subnet = 10.83.1.0/24

[appserver]
nodes = 1
node_name = ${NODE}
locations =
  http://kh.test/ kh
`

const staticConfFor = (address: string) => `[general]
name = kh-static
base_domain = kh.test
boot_timeout = 2m

[provider]
provider = static
hosts = ${NODE}=${address}
ssh_user = root
ssh_key = ${path.join(hostsWorkspace, 'id_ed25519')}

[appserver]
nodes = 1
node_name = ${NODE}
locations =
  http://kh.test/ kh
`

/** The static file's commands run with their own HOME: its ~/.ssh/known_hosts is the only trust. */
const asUser = (...args: string[]): Promise<CliResult> =>
  runCli(args, {env: {HOME: home, SSH_AUTH_SOCK: ''}, timeoutMs: 180_000})

function app(version: string): string {
  const dir = path.join(work, `app-${version}`)
  fs.mkdirSync(dir, {recursive: true})
  fs.writeFileSync(path.join(dir, 'app.ini'), '[production]\napp_name = kh\ncommand = node server.js\n')
  fs.writeFileSync(
    path.join(dir, 'server.js'),
    `require('http').createServer((q, s) => s.end('${version}')).listen(Number(process.env.PORT))\n`,
  )
  return dir
}

function get(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get(url, {agent: false, timeout: 5000}, (res) => {
        let body = ''
        res.on('data', (chunk: Buffer) => (body += chunk.toString()))
        res.on('end', () => resolve(body))
      })
      .on('error', reject)
  })
}

let address = ''
let trusted = ''

function writeKnownHosts(lines: string): void {
  fs.mkdirSync(path.join(home, '.ssh'), {recursive: true, mode: 0o700})
  fs.writeFileSync(path.join(home, '.ssh', 'known_hosts'), lines)
}

const expectOk = (run: CliResult) => {
  expect(run.stderr).not.toMatch(/error|does not match/i)
  expect(run.code).toBe(0)
}

describe.runIf(mustRun)('a static deployment trusted through known_hosts only', () => {
  beforeAll(async () => {
    if (problem) throw new Error(problem)
    fs.mkdirSync(path.dirname(hostsConf), {recursive: true})
    fs.mkdirSync(path.dirname(staticConf), {recursive: true})
    fs.writeFileSync(hostsConf, HOSTS_CONF)
    await runCli(['destroy-node', hostsConf, '--yes'])
    const created = await runCli(['create-node', hostsConf])
    expect(created.code).toBe(0)
    const listed = JSON.parse((await runCli(['list-nodes', hostsConf, '--json'])).stdout) as {
      nodes: Array<{name: string; address: string}>
    }
    address = listed.nodes.find((n) => n.name === NODE)!.address
    // The server's keys as the user would have them: `address keytype key` lines in ~/.ssh/known_hosts.
    trusted = fs
      .readFileSync(path.join(hostsWorkspace, 'known_hosts'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((line) => `${address} ${line.split(' ').slice(1).join(' ')}`)
      .join('\n')
    writeKnownHosts(trusted + '\n')
    fs.writeFileSync(staticConf, staticConfFor(address))
    expectOk(await asUser('create-node', staticConf))
    // Nothing pinned in the workspace: the keys are only in known_hosts, as after create-node --no-wait.
    fs.rmSync(path.join(staticWorkspace, 'known_hosts'), {force: true})
  }, 240_000)

  afterAll(async () => {
    if (trusted) writeKnownHosts(trusted + '\n')
    if (fs.existsSync(staticConf)) await asUser('destroy-node', staticConf, '--yes')
    await runCli(['destroy-node', hostsConf, '--yes'])
    fs.rmSync(work, {recursive: true, force: true})
  }, 120_000)

  it('setup-node, update and rollback verify the keys from known_hosts and succeed', async () => {
    expectOk(await asUser('setup-node', staticConf))
    expectOk(await asUser('update', app('v1'), staticConf))
    expect(await get(`http://${address}:8080/`)).toBe('v1')
    expectOk(await asUser('update', app('v2'), staticConf))
    expect(await get(`http://${address}:8080/`)).toBe('v2')
    expectOk(await asUser('rollback', 'kh', staticConf))
    expect(await get(`http://${address}:8080/`)).toBe('v1')
    expect(fs.existsSync(path.join(staticWorkspace, 'known_hosts'))).toBe(false)
  }, 240_000)

  it('with the key changed in known_hosts, setup-node, update and rollback all refuse with the same message', async () => {
    const keyFile = path.join(work, 'other_key')
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', keyFile])
    const other = fs.readFileSync(`${keyFile}.pub`, 'utf8').split(' ').slice(0, 2).join(' ')
    writeKnownHosts(`${address} ${other}\n`)
    const refusal = new RegExp(`Host key of node ${NODE.replace(/\./g, '\\.')} at ${address} does not match\\.`)
    const runs = [
      await asUser('setup-node', staticConf),
      await asUser('update', app('v3'), staticConf),
      await asUser('rollback', 'kh', staticConf),
    ]
    for (const run of runs) {
      expect(run.code).not.toBe(0)
      expect(run.stdout + run.stderr).toMatch(refusal)
    }
    // Still serving what it served: nothing was switched.
    expect(await get(`http://${address}:8080/`)).toBe('v1')
  }, 240_000)
})

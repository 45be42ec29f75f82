/**
 * End to end on real local nodes: the config server listens on the deployment's bridge address, two
 * nodes boot with the agent as user data, the app waits for the database, and gets its address as the
 * server saw it. Needs root, iproute2, util-linux and openssh-server (fails with CI=true when missing).
 */
import {execFile as execFileCb, execFileSync} from 'node:child_process'
import {existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {promisify} from 'node:util'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {ConfigServerClient} from '../../src/configserver/client.js'
import {type RunningConfigServer, startConfigServer} from '../../src/configserver/server.js'
import {localProviderProblem, processAlive} from '../../src/providers/local-system.js'
import {LocalProvider} from '../../src/providers/local.js'
import type {NodeRecord} from '../../src/providers/provider.js'
import {renderUserData} from '../../src/providers/userdata.js'
import {HostKeyStore} from '../../src/ssh/hostkeys.js'

const execFile = promisify(execFileCb)
const problem = await localProviderProblem()
const mustRun = process.env.CI === 'true' || problem === undefined

const deployment = 'la-wp'
const APP = 'app1.la-wp.test'
const DB = 'db1.la-wp.test'
const work = mkdtempSync(join(tmpdir(), 'nodeset-local-agent-'))
const key = join(work, 'id_ed25519')
let provider: LocalProvider
let server: RunningConfigServer | undefined
let admin: ConfigServerClient
let tokens: Record<string, string>

async function until(what: string, check: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`)
    await sleep(50)
  }
}

const onNode = (name: string, path: string): string => join(provider.etcDir(deployment, name), path)
const readIfThere = (path: string): string => (existsSync(path) ? readFileSync(path, 'utf8') : '')

describe.runIf(mustRun)('the agent on local nodes', () => {
  beforeAll(async () => {
    if (problem) throw new Error(problem)
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key])
    provider = new LocalProvider({
      deployment,
      hostKeys: HostKeyStore.inStateDir(work),
      subnet: '10.77.12.0/24',
      stateRoot: join(work, 'state'),
      authorizedKeys: [readFileSync(`${key}.pub`, 'utf8')],
    })
    const {operatorAddress} = await provider.prepare()
    expect(operatorAddress).toBe('10.77.12.1')
    server = await startConfigServer({stateDir: join(work, 'server'), listen: {host: operatorAddress, port: 0}})
    admin = new ConfigServerClient({url: server.url, deployment, token: server.adminToken})
    ;({tokens} = await admin.register({
      instances: [
        {
          id: APP,
          role: 'appserver',
          index: 1,
          services: [{name: 'app', params: {db_host: {template: '{{ip "service:mysql"}}'}}}],
        },
        {id: DB, role: 'service:mysql', index: 1, services: [{name: 'mysql'}]},
      ],
    }))
  })

  afterAll(async () => {
    if (provider) await provider.destroy(await provider.list()).catch(() => undefined)
    admin?.close()
    await server?.close()
    rmSync(work, {recursive: true, force: true})
  })

  const request = (name: string, role: string) => ({
    deployment,
    name,
    role,
    index: 1,
    userData: renderUserData({deployment, node: name, token: tokens[name], serverUrl: server!.url}),
  })

  it('the app phones home and waits; once the database phones home, the app gets its address and hosts block', async () => {
    const [app] = await provider.create([request(APP, 'appserver')])
    await until('the app phoned home', () => existsSync(onNode(APP, 'nodeset/phoned-home')))
    await sleep(500)
    expect(readFileSync(onNode(APP, 'nodeset/agent.state'), 'utf8')).toBe('waiting')
    expect(existsSync(onNode(APP, 'nodeset/config.json'))).toBe(false)

    const [db] = await provider.create([request(DB, 'service:mysql')])
    await until('the app is configured', () => readIfThere(onNode(APP, 'nodeset/agent.state')) === 'complete')

    // The address the server saw the database phone home from is the database node's own.
    const state = await admin.state()
    const facts = (id: string) => state.instances.find((i) => i.id === id)!.facts
    expect(facts(DB).ip).toBe(db.address)
    expect(facts(APP).ip).toBe(app.address)
    expect(facts(DB)).toMatchObject({hostname: DB, private_ip: db.address})
    // The host keys it reported are the node's real ones: the operator can pin them.
    expect([...(facts(DB).ssh_host_keys as string[])].sort()).toEqual([...(await provider.readHostKeys(db))].sort())

    const config = JSON.parse(readFileSync(onNode(APP, 'nodeset/config.json'), 'utf8')) as {
      complete: boolean
      services: Record<string, {params: Record<string, string>}>
    }
    expect(config.complete).toBe(true)
    expect(config.services.app.params.db_host).toBe(db.address)

    const hosts = readFileSync(onNode(APP, 'hosts'), 'utf8')
    expect(hosts).toContain('127.0.0.1 localhost\n')
    expect(hosts).toContain(`# BEGIN nodeset ${deployment}\n`)
    expect(hosts).toContain(`${db.address} ${DB} db1\n`)
    expect(hosts).toContain(`${app.address} ${APP} app1\n`)
    expect(readFileSync(onNode(APP, 'nodeset/roles'), 'utf8')).toContain(`service.mysql = ${DB} ${db.address}\n`)

    // Seen from inside the app node over SSH: its /etc/hosts resolves the database, its config is private.
    const knownHosts = join(work, 'known_hosts')
    writeFileSync(knownHosts, await provider.knownHosts(app))
    const {stdout} = await execFile('ssh', [
      '-F',
      '/dev/null',
      '-i',
      key,
      '-o',
      `UserKnownHostsFile=${knownHosts}`,
      '-o',
      'StrictHostKeyChecking=yes',
      '-o',
      'BatchMode=yes',
      `root@${app.address}`,
      `getent hosts ${DB}; stat -c %a /etc/nodeset/config.json`,
    ])
    const [resolved, mode] = stdout.trim().split('\n')
    expect(resolved.split(/\s+/)).toEqual([db.address, DB, 'db1'])
    expect(mode).toBe('600')

    for (const node of [app, db] as NodeRecord[]) {
      const dir = provider.nodeDir(deployment, node.name)
      const log = readFileSync(join(dir, 'fs/var-log/nodeset-agent.log'), 'utf8')
      expect(log).toContain('complete')
      // The bootstrap token of the user data was exchanged for a node token kept in the node's /var/lib/nodeset.
      const nodeToken = readFileSync(join(dir, 'fs/var-lib/token'), 'utf8').trim()
      expect(nodeToken).toMatch(/^[A-Za-z0-9_-]{43}$/)
      expect(statSync(join(dir, 'fs/var-lib/token')).mode & 0o777).toBe(0o600)
      for (const token of [...Object.values(tokens), nodeToken]) expect(log).not.toContain(token)
      expect(processAlive(Number(readFileSync(join(dir, 'agent.pid'), 'utf8')))).toBe(false)
      // The user data the provider keeps on the node holds only the bootstrap token, which no longer works.
      expect(readFileSync(join(dir, 'fs/var-lib/user-data.sh'), 'utf8')).toContain(tokens[node.name])
      const bootstrap = new ConfigServerClient({url: server!.url, deployment, token: tokens[node.name]})
      const refused = await bootstrap.getConfig(node.name).then(
        () => undefined,
        (error: Error) => error.message,
      )
      bootstrap.close()
      expect(refused).toMatch(/401 this bootstrap token was exchanged; use the node token stored on the node/)
    }
    // A local node is not a cloud machine: its agent installed no boot hook on this host.
    expect(existsSync('/etc/systemd/system/nodeset-agent.service')).toBe(false)
  })

  it('after a reboot the stored agent runs again with the node token it stored', async () => {
    const [app] = (await provider.list()).filter((n) => n.name === APP)
    const dir = provider.nodeDir(deployment, APP)
    const agentLog = () => readIfThere(join(dir, 'fs/var-log/nodeset-agent.log'))
    const nodeToken = readFileSync(join(dir, 'fs/var-lib/token'), 'utf8').trim()
    // The node goes down (its sshd, the process that holds its namespaces, dies), then boots again.
    process.kill(Number(readFileSync(join(dir, 'sshd.pid'), 'utf8')), 'SIGKILL')
    await until('the app node is down', () => !processAlive(Number(readFileSync(join(dir, 'sshd.pid'), 'utf8'))))
    await provider.start([app])
    await until('the agent completed again', () => (agentLog().match(/: complete$/gm) ?? []).length === 2)
    expect(agentLog()).toMatch(/: using the node token in \/var\/lib\/nodeset\/token$/m)
    expect(readFileSync(join(dir, 'fs/var-lib/token'), 'utf8').trim()).toBe(nodeToken)
    expect(agentLog()).not.toContain(nodeToken)
  })
})

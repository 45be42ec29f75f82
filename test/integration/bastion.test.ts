/**
 * A node on a subnet of its own, reachable only through a bastion, as EC2 fleets keep nodes on private
 * subnets. Two network namespaces made here: the bastion on the operator's link (10.97.1.0/24) and on
 * an inner one (10.97.2.0/24); the node on the inner link only, with no route from the operator's
 * side. Each runs its own sshd. ~/.ssh/config says `ProxyJump bastion`; the bastion's key comes from
 * known_hosts, the node's from nodeset's pins (or, for a static server, known_hosts too). Exercised
 * through connect() and SessionPool, then through the CLI (create-node, setup-node and update of a
 * static server, with a config server running on the bastion); with the bastion's key changed, all
 * of them refuse.
 */
import {type ChildProcess, execFileSync, spawn} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {HostKeyStore} from '../../src/ssh/hostkeys.js'
import {connect, type ConnectOptions, SessionPool, type SshTarget} from '../../src/ssh/ssh.js'
import {ROOT, runCli} from '../helpers/cli.js'
import {shouldSkipSshd, SSHD} from '../helpers/sshd.js'

const skip = shouldSkipSshd() || (!existsSync('/usr/sbin/ip') && !existsSync('/sbin/ip') && process.env.CI !== 'true')
const ID = randomBytes(3).toString('hex')
const NS = {bastion: `nsbast-${ID}`, node: `nsnode-${ID}`}
const LINK = {host: `vbh${ID}`, bastionOut: `vbo${ID}`, bastionIn: `vbi${ID}`, node: `vbn${ID}`}
const OPERATOR = '10.97.1.1'
const BASTION = '10.97.1.2'
const BASTION_INNER = '10.97.2.1'
const NODE_ADDRESS = '10.97.2.2'
const NODE = 'inner.bastion.test'
const SERVER_PORT = 8470

const work = mkdtempSync(join(tmpdir(), 'nodeset-bastion-'))
const home = join(work, 'home')
const clientKey = join(work, 'client_key')

const ip = (...args: string[]) => execFileSync('ip', args, {stdio: ['ignore', 'pipe', 'pipe']}).toString()

function keygen(path: string): string {
  rmSync(path, {force: true})
  rmSync(`${path}.pub`, {force: true})
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'bastion-test', '-f', path])
  return readFileSync(`${path}.pub`, 'utf8').split(' ').slice(0, 2).join(' ')
}

/**
 * An sshd in a namespace, started as test/helpers/sshd.ts starts one, in a mount namespace of its
 * own whose /etc, /var and /srv are overlays: what the node's services write stays there.
 */
class NamespaceSshd {
  readonly dir: string
  hostKeyLine = ''
  private child?: ChildProcess

  constructor(
    readonly ns: string,
    readonly address: string,
  ) {
    this.dir = join(work, ns)
    mkdirSync(this.dir, {recursive: true})
    writeFileSync(join(this.dir, 'authorized_keys'), readFileSync(`${clientKey}.pub`), {mode: 0o600})
    writeFileSync(
      join(this.dir, 'sshd_config'),
      [
        `ListenAddress ${address}:22`,
        `HostKey ${join(this.dir, 'host_key')}`,
        'PidFile none',
        `AuthorizedKeysFile ${join(this.dir, 'authorized_keys')}`,
        'PermitRootLogin prohibit-password',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'UsePAM no',
        'StrictModes no',
        'LogLevel VERBOSE',
        'Subsystem sftp internal-sftp',
        '',
      ].join('\n'),
    )
  }

  get logPath(): string {
    return join(this.dir, 'sshd.log')
  }

  logins(): number {
    return existsSync(this.logPath)
      ? (readFileSync(this.logPath, 'utf8').match(/Accepted publickey for /g) ?? []).length
      : 0
  }

  async start(newHostKey = false): Promise<void> {
    if (newHostKey || !this.hostKeyLine) this.hostKeyLine = keygen(join(this.dir, 'host_key'))
    const overlays = ['etc', 'var', 'srv']
      .map((d) => {
        const [upper, scratch] = [join(this.dir, `${d}-upper`), join(this.dir, `${d}-work`)]
        mkdirSync(upper, {recursive: true})
        mkdirSync(scratch, {recursive: true})
        return `mount -t overlay overlay -o lowerdir=/${d},upperdir=${upper},workdir=${scratch} /${d}`
      })
      .join(' && ')
    const script = `set -e; ${overlays}; mount -t tmpfs tmpfs /run; mkdir -m 0755 /run/sshd; exec ${SSHD} -D -f ${join(this.dir, 'sshd_config')} -E ${this.logPath}`
    const before = existsSync(this.logPath) ? readFileSync(this.logPath, 'utf8').length : 0
    this.child = spawn(
      'ip',
      ['netns', 'exec', this.ns, 'unshare', '--mount', '--propagation', 'private', '--', '/bin/sh', '-c', script],
      {
        stdio: 'ignore',
      },
    )
    for (let i = 0; i < 200; i++) {
      const log = existsSync(this.logPath) ? readFileSync(this.logPath, 'utf8').slice(before) : ''
      if (log.includes(`Server listening on ${this.address} port 22`)) return
      if (this.child.exitCode !== null) throw new Error(`sshd in ${this.ns} exited: ${log}`)
      await sleep(50)
    }
    throw new Error(`sshd in ${this.ns} did not start listening`)
  }

  async stop(): Promise<void> {
    const child = this.child
    this.child = undefined
    if (!child || child.exitCode !== null) return
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGTERM')
    await exited
  }

  /** Run a command inside the namespace and its private mounts (as a process the sshd started). */
  inside(command: string): string {
    const pid = String(this.child!.pid)
    return execFileSync('nsenter', ['-t', pid, '-n', '-m', '--', '/bin/sh', '-c', command]).toString()
  }
}

function killNamespace(ns: string): void {
  let pids: string[]
  try {
    pids = ip('netns', 'pids', ns).split('\n').filter(Boolean)
  } catch {
    return
  }
  for (const pid of pids) {
    try {
      process.kill(Number(pid), 'SIGKILL')
    } catch {
      // Already gone.
    }
  }
  ip('netns', 'del', ns)
}

let bastion: NamespaceSshd
let node: NamespaceSshd
let store: HostKeyStore
const sshConfig = join(home, '.ssh', 'config')
const knownHosts = join(home, '.ssh', 'known_hosts')

function trustBastion(keyLine: string, extra = ''): void {
  writeFileSync(knownHosts, `${BASTION} ${keyLine}\n${extra}`, {mode: 0o600})
}

const target: SshTarget = {nodeName: NODE, host: NODE_ADDRESS, user: 'root', privateKeyPath: clientKey}
const options = (extra: Partial<ConnectOptions> = {}): ConnectOptions => ({
  hostKeys: {mode: 'pinned', store},
  sshConfigPath: sshConfig,
  agentSocket: null,
  homeDir: home,
  retryForMs: 10_000,
  ...extra,
})

describe.skipIf(skip)('a node reachable only through a bastion', () => {
  beforeAll(async () => {
    mkdirSync(join(home, '.ssh'), {recursive: true, mode: 0o700})
    keygen(clientKey)
    ip('netns', 'add', NS.bastion)
    ip('netns', 'add', NS.node)
    ip('link', 'add', LINK.host, 'type', 'veth', 'peer', 'name', LINK.bastionOut, 'netns', NS.bastion)
    ip('addr', 'add', `${OPERATOR}/24`, 'dev', LINK.host)
    ip('link', 'set', LINK.host, 'up')
    ip('-n', NS.bastion, 'link', 'set', 'lo', 'up')
    ip('-n', NS.bastion, 'addr', 'add', `${BASTION}/24`, 'dev', LINK.bastionOut)
    ip('-n', NS.bastion, 'link', 'set', LINK.bastionOut, 'up')
    ip('-n', NS.bastion, 'link', 'add', LINK.bastionIn, 'type', 'veth', 'peer', 'name', LINK.node, 'netns', NS.node)
    ip('-n', NS.bastion, 'addr', 'add', `${BASTION_INNER}/24`, 'dev', LINK.bastionIn)
    ip('-n', NS.bastion, 'link', 'set', LINK.bastionIn, 'up')
    ip('-n', NS.node, 'link', 'set', 'lo', 'up')
    ip('-n', NS.node, 'addr', 'add', `${NODE_ADDRESS}/24`, 'dev', LINK.node)
    ip('-n', NS.node, 'link', 'set', LINK.node, 'up')
    // The node reaches the bastion's outer address (where its config server listens), through the
    // bastion; the bastion forwards nothing, and the operator has no route to the inner link.
    ip('-n', NS.node, 'route', 'add', '10.97.1.0/24', 'via', BASTION_INNER)

    bastion = new NamespaceSshd(NS.bastion, BASTION)
    node = new NamespaceSshd(NS.node, NODE_ADDRESS)
    await bastion.start()
    await node.start()
    writeFileSync(
      sshConfig,
      [
        'Host bastion',
        `  HostName ${BASTION}`,
        '  User root',
        `  IdentityFile ${clientKey}`,
        `  UserKnownHostsFile ${knownHosts}`,
        'Match host 10.97.2.*',
        '  ProxyJump bastion',
        '',
      ].join('\n'),
      {mode: 0o600},
    )
    trustBastion(bastion.hostKeyLine)
    store = HostKeyStore.inStateDir(join(work, 'pins'))
    store.pin(NODE, NODE_ADDRESS, [node.hostKeyLine])
  }, 60_000)

  afterAll(async () => {
    await bastion?.stop()
    await node?.stop()
    killNamespace(NS.node)
    killNamespace(NS.bastion)
    rmSync(work, {recursive: true, force: true})
  })

  it('is out of reach without the bastion', async () => {
    await expect(
      connect(target, options({sshConfigPath: null, retryForMs: 0, attemptTimeoutMs: 2000})),
    ).rejects.toThrow(/Cannot reach node inner\.bastion\.test \(root@10\.97\.2\.2:22\)/)
  })

  it('connect() and SessionPool reach it through ProxyJump, checking the key of each host', async () => {
    const [bastionBefore, nodeBefore] = [bastion.logins(), node.logins()]
    const session = await connect(target, options())
    expect(session.target.via).toEqual({
      jump: expect.objectContaining({kind: 'jump host', host: BASTION, user: 'root'}),
    })
    // The node sees the connection come from the bastion's inner address.
    expect((await session.exec('echo "$SSH_CLIENT"')).stdout).toMatch(new RegExp(`^${BASTION_INNER} `))
    session.close()

    const pool = new SessionPool(options())
    const first = await pool.get(target)
    expect(await pool.get(target)).toBe(first)
    expect((await first.exec('cat /proc/sys/kernel/hostname')).code).toBe(0)
    await pool.closeAll()
    expect([bastion.logins() - bastionBefore, node.logins() - nodeBefore]).toEqual([2, 2])
  })

  it('refuses a node whose key is not its pinned one, even through the bastion', async () => {
    const other = HostKeyStore.inStateDir(join(work, 'other-pins'))
    other.pin(NODE, NODE_ADDRESS, [keygen(join(work, 'stranger'))])
    const before = node.logins()
    await expect(connect(target, options({hostKeys: {mode: 'pinned', store: other}}))).rejects.toThrow(
      /Host key of node inner\.bastion\.test at 10\.97\.2\.2 does not match/,
    )
    expect(node.logins()).toBe(before)
  })

  it("with the bastion's key changed or unknown, connect() and SessionPool refuse before the node sees a login", async () => {
    await bastion.stop()
    await bastion.start(true)
    const [bastionBefore, nodeBefore] = [bastion.logins(), node.logins()]
    const mismatch = /Host key of jump host bastion at 10\.97\.1\.2 does not match\.[\s\S]*from .*known_hosts:1/
    await expect(connect(target, options())).rejects.toThrow(mismatch)
    await expect(new SessionPool(options()).get(target)).rejects.toThrow(mismatch)

    writeFileSync(knownHosts, '')
    await expect(connect(target, options())).rejects.toThrow(
      /Host key of jump host bastion at 10\.97\.1\.2 is unknown: SHA256:[\s\S]*nodeset trusts a jump host only by your known_hosts/,
    )
    expect([bastion.logins(), node.logins()]).toEqual([bastionBefore, nodeBefore])
    trustBastion(bastion.hostKeyLine)
  })

  describe('through the CLI, on a static server', () => {
    const file = join(work, 'deployment', 'bastion.conf')
    let server: ChildProcess | undefined
    const env = () => ({
      HOME: home,
      SSH_AUTH_SOCK: '',
      NODESET_ADMIN_TOKEN: readFileSync(join(work, 'server', 'admin-token'), 'utf8').trim(),
    })
    const cli = (...args: string[]) => runCli(args, {env: env(), timeoutMs: 180_000})

    function app(version: string): string {
      const dir = join(work, `app-${version}`)
      mkdirSync(dir, {recursive: true})
      writeFileSync(join(dir, 'app.ini'), '[production]\napp_name = bt\ncommand = node server.js\n')
      writeFileSync(
        join(dir, 'server.js'),
        `require('http').createServer((q, s) => s.end('${version}')).listen(Number(process.env.PORT))\n`,
      )
      return dir
    }

    beforeAll(async () => {
      // The config server runs on the bastion: the operator and the node both reach it there.
      server = spawn(
        'ip',
        [
          'netns',
          'exec',
          NS.bastion,
          process.execPath,
          join(ROOT, 'bin/run.js'),
          'config-server',
          '--listen',
          `${BASTION}:${SERVER_PORT}`,
          '--state',
          join(work, 'server'),
        ],
        {stdio: 'ignore'},
      )
      for (let i = 0; i < 200 && !existsSync(join(work, 'server', 'admin-token')); i++) await sleep(50)
      for (let i = 0; i < 200; i++) {
        const up = await fetch(`http://${BASTION}:${SERVER_PORT}/healthz`).then(
          () => true,
          () => false,
        )
        if (up) break
        await sleep(50)
      }
      mkdirSync(join(work, 'deployment'), {recursive: true})
      writeFileSync(
        file,
        [
          '[general]',
          'name = bastion-test',
          'base_domain = bastion.test',
          `config_server = http://${BASTION}:${SERVER_PORT}`,
          'boot_timeout = 2m',
          '[provider]',
          'provider = static',
          `hosts = ${NODE}=${NODE_ADDRESS}`,
          'ssh_user = root',
          `ssh_key = ${clientKey}`,
          '[appserver]',
          'nodes = 1',
          `node_name = ${NODE}`,
          'locations =',
          '  http://bastion.test/ bt',
          '',
        ].join('\n'),
      )
      // A static server is trusted by known_hosts: the bastion's key, and the node's.
      trustBastion(bastion.hostKeyLine, `${NODE_ADDRESS} ${node.hostKeyLine}\n`)
    }, 60_000)

    afterAll(() => {
      server?.kill('SIGTERM')
    })

    it('create-node, setup-node and update reach the node through ProxyJump', async () => {
      const before = bastion.logins()
      const created = await cli('create-node', file)
      expect(created.code, created.stderr).toBe(0)
      const setup = await cli('setup-node', file)
      expect(setup.code, setup.stdout + setup.stderr).toBe(0)
      const update = await cli('update', app('v1'), file)
      expect(update.code, update.stdout + update.stderr).toBe(0)
      // Every one of them logged in through the bastion.
      expect(bastion.logins() - before).toBeGreaterThanOrEqual(3)
      // The agent phoned home from the node's own address, and the app serves there.
      expect(node.inside('cat /etc/nodeset/agent.state')).toBe('complete')
      const session = await connect(target, options())
      expect((await session.exec('curl -s http://127.0.0.1:8080/')).stdout).toBe('v1')
      session.close()
    }, 240_000)

    it("with the bastion's key changed, setup-node and update refuse", async () => {
      await bastion.stop()
      await bastion.start(true)
      const nodeBefore = node.logins()
      const refusal = /Host key of jump host bastion at 10\.97\.1\.2 does not match/
      for (const run of [await cli('setup-node', file), await cli('update', app('v2'), file)]) {
        expect(run.code).not.toBe(0)
        expect(run.stdout + run.stderr).toMatch(refusal)
      }
      expect(node.logins()).toBe(nodeBefore)
      trustBastion(bastion.hostKeyLine, `${NODE_ADDRESS} ${node.hostKeyLine}\n`)
    }, 240_000)
  })
})

import {execFileSync} from 'node:child_process'
import {existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {afterAll, beforeAll, describe, expect, test} from 'vitest'
import {StaticProvider} from '../../src/providers/static.js'
import {installScript, staticLayout, uninstallScript} from '../../src/providers/static-scripts.js'
import {parseStaticHosts, type StaticHost} from '../../src/providers/static-settings.js'
import type {NodeRequest} from '../../src/providers/provider.js'
import {fingerprint, HostKeyStore, parseHostKey} from '../../src/ssh/hostkeys.js'
import {freePort, processes, shouldSkipSshd, startSshd, type TestSshd} from '../helpers/sshd.js'

describe('static hosts and scripts, as data', () => {
  test('hosts = name=address[:port] …, separated by spaces, commas or newlines', () => {
    expect(
      parseStaticHosts(
        'app1.example.com=203.0.113.10 db.example.com=[2001:db8::5]:2222,\n cache.example.com  ip6=2001:db8::7 lab=lab-box:2200',
      ),
    ).toEqual([
      {name: 'app1.example.com', address: '203.0.113.10'},
      {name: 'db.example.com', address: '2001:db8::5', port: 2222},
      {name: 'cache.example.com', address: 'cache.example.com'},
      {name: 'ip6', address: '2001:db8::7'},
      {name: 'lab', address: 'lab-box', port: 2200},
    ])
  })

  test.each([
    ['', /hosts is empty/],
    ['a=b=c', /"a=b=c" is not name=address/],
    ['a=10.0.0.1:99999', /port 99999, outside 1-65535/],
    ['a=10.0.0.1 a=10.0.0.2', /lists a a second time/],
    ['a=bad!host', /invalid address "bad!host"/],
    ['-x=10.0.0.1', /invalid node name "-x"/],
  ])('a bad hosts value %j says what to write', (value, why) => {
    expect(() => parseStaticHosts(value)).toThrow(why)
  })

  test('the install script stops an old agent, writes the boot hook, marks no-boot-hook and starts detached', () => {
    const onServer = installScript(staticLayout('/'))
    expect(onServer).toContain(': >/etc/nodeset/no-boot-hook')
    expect(onServer).toContain('ExecStart=/bin/sh /var/lib/nodeset/agent.sh')
    expect(onServer).toContain(
      "'@reboot root /bin/sh /var/lib/nodeset/agent.sh >/dev/null 2>&1' >/etc/cron.d/nodeset-agent",
    )
    expect(onServer).toMatch(
      /\$detach nohup \/bin\/sh \/var\/lib\/nodeset\/agent\.sh >\/var\/lib\/nodeset\/agent\.out 2>&1 <\/dev\/null &\necho \$! >\/var\/lib\/nodeset\/agent\.pid$/,
    )
    expect(onServer).not.toContain('NODESET_AGENT_ROOT')
    const relocated = installScript(staticLayout('/tmp/root dir'))
    expect(relocated).toContain(
      `NODESET_AGENT_ROOT='/tmp/root dir' $detach nohup /bin/sh '/tmp/root dir/var/lib/nodeset/agent.sh'`,
    )
    // Both scripts parse as sh.
    for (const script of [
      onServer,
      relocated,
      uninstallScript(staticLayout('/')),
      uninstallScript(staticLayout('/tmp/root dir')),
    ]) {
      execFileSync('/bin/sh', ['-n', '-c', script])
    }
  })

  test('the uninstall script removes agent, hooks, /etc/nodeset and the agent log, and nothing outside them', () => {
    const script = uninstallScript(staticLayout('/'))
    expect(script).toContain('rm -rf -- /var/lib/nodeset /etc/nodeset')
    expect(script).toContain('rm -f -- /var/log/nodeset-agent.log')
    expect(script).toContain('rm -f /etc/cron.d/nodeset-agent')
    expect(script).toContain('systemctl disable nodeset-agent.service')
    expect(script).not.toMatch(/poweroff|shutdown|halt|reboot/)
  })
})

describe.skipIf(shouldSkipSshd())('static provider against a real sshd', () => {
  let sshd: TestSshd
  let dir: string
  let remoteRoot: string
  let stateDir: string
  const marker = `sleep ${3000 + Math.floor(Math.random() * 6000)}`
  const userData = `#!/bin/sh
R=\${NODESET_AGENT_ROOT:-}
echo "agent ran as $(id -un)" >"$R/etc/nodeset/agent-ran"
${marker} &
wait
`
  const request = (name: string): NodeRequest => ({deployment: 'demo', name, role: 'appserver', index: 1, userData})

  const provider = (
    hosts: StaticHost[],
    extra: {trustOnFirstUse?: boolean; retryForMs?: number; deployment?: string} = {},
  ): StaticProvider =>
    new StaticProvider({
      deployment: extra.deployment ?? 'demo',
      hosts,
      stateDir,
      hostKeys: HostKeyStore.inStateDir(stateDir),
      remoteRoot,
      trustOnFirstUse: extra.trustOnFirstUse,
      knownHostsPaths: [join(dir, 'known_hosts')],
      sshUser: 'root',
      sshKey: sshd.clientKeyPath,
      connectOptions: {sshConfigPath: null, agentSocket: null, homeDir: dir, retryForMs: extra.retryForMs ?? 3000},
    })
  // The server is this machine: the agent's shell and its sleep show in the process table.
  const agentProcesses = (): number[] =>
    processes()
      .filter((p) => p.commandLine === marker || p.commandLine === `/bin/sh ${remoteRoot}/var/lib/nodeset/agent.sh`)
      .map((p) => p.pid)
  const waitFor = async (check: () => boolean, what: string): Promise<void> => {
    for (let i = 0; i < 100; i++) {
      if (check()) return
      await sleep(50)
    }
    throw new Error(`timed out waiting for ${what}`)
  }

  beforeAll(async () => {
    sshd = await startSshd()
    dir = mkdtempSync(join(tmpdir(), 'nodeset-static-'))
    remoteRoot = join(dir, 'server')
    stateDir = join(dir, 'project', '.nodeset', 'demo')
    writeFileSync(join(dir, 'known_hosts'), '')
    mkdirSync(join(remoteRoot, 'etc'), {recursive: true})
    writeFileSync(
      join(remoteRoot, 'etc', 'hosts'),
      '127.0.0.1 localhost\n# BEGIN nodeset demo\n10.0.0.1 web1.static.test web1\n# END nodeset demo\n# BEGIN nodeset other\n10.0.0.9 x.other\n# END nodeset other\n',
    )
  })
  afterAll(async () => {
    for (const pid of agentProcesses()) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // already gone
      }
    }
    await sshd?.stop()
    rmSync(dir, {recursive: true, force: true})
  })

  const web1 = (): StaticHost => ({
    name: 'web1.static.test',
    address: '127.0.0.1',
    port: sshd.port,
    role: 'appserver',
    index: 1,
  })

  test('an unknown host key stops create before anything is installed', async () => {
    await expect(provider([web1()]).create([request('web1.static.test')])).rejects.toThrow(
      /web1\.static\.test: Host key of node web1\.static\.test .* is unknown.*\n.*--trust-on-first-use/,
    )
    expect(existsSync(join(remoteRoot, 'var', 'lib', 'nodeset'))).toBe(false)
    expect(await provider([web1()]).list()).toEqual([])
  })

  test('the operator address is where the server sees us come from', async () => {
    writeFileSync(join(dir, 'known_hosts'), `[127.0.0.1]:${sshd.port} ${sshd.hostKeyLine}\n`)
    try {
      expect(await provider([web1()]).prepare()).toEqual({operatorAddress: '127.0.0.1'})
    } finally {
      writeFileSync(join(dir, 'known_hosts'), '')
    }
  })

  test('create (trust on first use) installs the agent, its boot hook, starts it detached and records the node', async () => {
    const records = await provider([web1()], {trustOnFirstUse: true}).create([request('web1.static.test')])
    expect(records).toEqual([
      {
        deployment: 'demo',
        name: 'web1.static.test',
        role: 'appserver',
        index: 1,
        id: 'web1.static.test',
        address: '127.0.0.1',
        state: 'running',
        sshUser: 'root',
        sshPort: sshd.port,
      },
    ])
    const lib = join(remoteRoot, 'var', 'lib', 'nodeset')
    await waitFor(() => existsSync(join(remoteRoot, 'etc', 'nodeset', 'agent-ran')), 'the agent to run')
    expect(readFileSync(join(remoteRoot, 'etc', 'nodeset', 'agent-ran'), 'utf8')).toBe('agent ran as root\n')
    expect(readFileSync(join(lib, 'agent.sh'), 'utf8')).toBe(userData)
    expect(statSync(join(lib, 'agent.sh')).mode & 0o777).toBe(0o700)
    expect(existsSync(join(remoteRoot, 'etc', 'nodeset', 'no-boot-hook'))).toBe(true)
    expect(readFileSync(join(remoteRoot, 'etc', 'cron.d', 'nodeset-agent'), 'utf8')).toBe(
      `@reboot root NODESET_AGENT_ROOT=${remoteRoot} /bin/sh ${lib}/agent.sh >/dev/null 2>&1\n`,
    )
    // Still running after the SSH session closed: detached.
    const pid = Number(readFileSync(join(lib, 'agent.pid'), 'utf8'))
    expect(() => process.kill(pid, 0)).not.toThrow()
    expect(agentProcesses()).toHaveLength(2)

    expect(await provider([web1()]).list()).toEqual(records)
    expect(await provider([web1()], {deployment: 'other'}).list()).toEqual([])
    expect(statSync(join(stateDir, 'static-nodes.json')).mode & 0o777).toBe(0o600)
    const pinned = HostKeyStore.inStateDir(stateDir).lookup('web1.static.test')
    expect(pinned!.keys.map(fingerprint)).toEqual([fingerprint(parseHostKey(sshd.hostKeyLine))])
  })

  test('create again replaces the running agent instead of starting a second one, and records the node once', async () => {
    const lib = join(remoteRoot, 'var', 'lib', 'nodeset')
    const before = Number(readFileSync(join(lib, 'agent.pid'), 'utf8'))
    // No flag needed now: the key was pinned on first use.
    await provider([web1()]).create([request('web1.static.test')])
    const after = Number(readFileSync(join(lib, 'agent.pid'), 'utf8'))
    expect(after).not.toBe(before)
    await waitFor(() => agentProcesses().length === 2, 'one agent and its child')
    expect(() => process.kill(before, 0)).toThrow()
    expect(await provider([web1()]).list()).toHaveLength(1)
  })

  test('a host not in hosts is refused by name; a host that cannot be reached fails alone, the others are installed', async () => {
    await expect(provider([web1()]).create([request('ghost.static.test')])).rejects.toThrow(
      /ghost\.static\.test is not in \[provider\] hosts: add ghost\.static\.test=ADDRESS/,
    )
    const closedPort = await freePort()
    const hosts = [web1(), {name: 'down.static.test', address: '127.0.0.1', port: closedPort}]
    const error = await provider(hosts, {retryForMs: 500})
      .create([request('web1.static.test'), request('down.static.test')])
      .catch((e: unknown) => e)
    expect((error as Error).message).toMatch(
      /1 of 2 nodes failed\ndown\.static\.test: Cannot reach node down\.static\.test/,
    )
    expect((await provider(hosts).list()).map((n) => n.name)).toEqual(['web1.static.test'])
  })

  test('destroy stops the agent and removes everything it installed and the hosts block, and forgets the node', async () => {
    const lib = join(remoteRoot, 'var', 'lib', 'nodeset')
    // The agent's own log, as a real agent leaves it.
    mkdirSync(join(remoteRoot, 'var', 'log'), {recursive: true})
    writeFileSync(join(remoteRoot, 'var', 'log', 'nodeset-agent.log'), 'complete\n')
    const p = provider([web1()])
    await p.destroy(await p.list())
    expect(agentProcesses()).toEqual([])
    expect(existsSync(lib)).toBe(false)
    expect(existsSync(join(remoteRoot, 'etc', 'nodeset'))).toBe(false)
    expect(existsSync(join(remoteRoot, 'etc', 'cron.d', 'nodeset-agent'))).toBe(false)
    expect(existsSync(join(remoteRoot, 'var', 'log', 'nodeset-agent.log'))).toBe(false)
    expect(readFileSync(join(remoteRoot, 'etc', 'hosts'), 'utf8')).toBe(
      '127.0.0.1 localhost\n# BEGIN nodeset other\n10.0.0.9 x.other\n# END nodeset other\n',
    )
    expect(await p.list()).toEqual([])
    // The server itself is untouched and still answers.
    expect(existsSync(join(remoteRoot, 'etc', 'hosts'))).toBe(true)
  })
})

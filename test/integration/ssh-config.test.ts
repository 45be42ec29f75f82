import {execFileSync, spawn} from 'node:child_process'
import {copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {afterAll, beforeAll, describe, expect, test} from 'vitest'
import {HostKeyStore} from '../../src/ssh/hostkeys.js'
import {connect, planAuth, resolveTarget, SshKeyError} from '../../src/ssh/ssh.js'
import {expandSshPath, parseSshConfig, resolveSshConfig} from '../../src/ssh/config.js'
import {shouldSkipSshd, startSshd, type TestSshd} from '../helpers/sshd.js'

describe('~/.ssh/config, as data', () => {
  const config = parseSshConfig(
    [
      'IdentityFile ~/.ssh/global_key',
      '',
      '# nodes of the foobar deployment',
      'Host *.foobar.com !bastion.foobar.com',
      '  User deploy',
      '  Port=2200',
      '  IdentityFile "~/.ssh/foobar key"',
      'Match host db1.foobar.com',
      '  User ignored',
      'Host db1.foobar.com db1',
      '  HostName 10.0.0.5',
      '  User not-first',
      '  IdentityFile %d/.ssh/%n_%r',
      '  IdentitiesOnly yes',
      'Host *',
      '  Port 22',
      '  User fallback',
    ].join('\n'),
  )

  test('the first value wins, IdentityFile accumulates, Match blocks are ignored', () => {
    expect(resolveSshConfig(config, ['db1.foobar.com'])).toEqual({
      hostName: '10.0.0.5',
      port: 2200,
      user: 'deploy',
      identityFiles: ['~/.ssh/global_key', '~/.ssh/foobar key', '%d/.ssh/%n_%r'],
      identitiesOnly: true,
    })
  })

  test('negated patterns exclude a host; Host * catches the rest', () => {
    expect(resolveSshConfig(config, ['bastion.foobar.com'])).toEqual({
      port: 22,
      user: 'fallback',
      identityFiles: ['~/.ssh/global_key'],
    })
  })

  test('tokens and ~ are expanded like OpenSSH', () => {
    expect(
      expandSshPath('%d/.ssh/%n_%r', {home: '/home/me', host: '10.0.0.5', alias: 'db1', remoteUser: 'deploy'}),
    ).toBe('/home/me/.ssh/db1_deploy')
    expect(expandSshPath('~/.ssh/k_%h%%', {home: '/home/me', host: '10.0.0.5', alias: 'db1', remoteUser: 'x'})).toBe(
      '/home/me/.ssh/k_10.0.0.5%',
    )
  })

  test("nodeset's own values win; HostName applies only to a host listed without an address", () => {
    const withAddress = resolveTarget(
      {nodeName: 'db1.foobar.com', host: '10.9.9.9', user: 'root', privateKeyPath: '/keys/nodeset'},
      config,
      '/home/me',
    )
    expect(withAddress).toMatchObject({host: '10.9.9.9', port: 2200, user: 'root'})
    expect(withAddress.identityFiles).toEqual([
      '/keys/nodeset',
      '/home/me/.ssh/global_key',
      '/home/me/.ssh/foobar key',
      '/home/me/.ssh/db1.foobar.com_root',
    ])
    expect(resolveTarget({nodeName: 'db1.foobar.com', host: 'db1.foobar.com'}, config, '/home/me')).toMatchObject({
      host: '10.0.0.5',
      user: 'deploy',
    })
  })

  test('a bad Port is an error naming the line', () => {
    expect(() => resolveSshConfig(parseSshConfig('Host x\n  Port 99999\n'), ['x'])).toThrow(
      /line 2: Port 99999 is not a port number/,
    )
  })

  test('no key anywhere is a clear error that lists the ways to give one', () => {
    const home = mkdtempSync(join(tmpdir(), 'nodeset-nokey-'))
    try {
      const target = resolveTarget({nodeName: 'n', host: '10.0.0.1'}, [], home)
      expect(() => planAuth(target, undefined, null, home)).toThrow(SshKeyError)
      expect(() => planAuth(target, undefined, join(home, 'no-agent.sock'), home)).toThrow(
        /\(skipped: ssh-agent .*does not exist\)\): set ssh_key .*IdentityFile .*ssh-agent/,
      )
      expect(() =>
        planAuth(
          resolveTarget({nodeName: 'n', host: 'h', privateKeyPath: join(home, 'nope')}, [], home),
          join(home, 'nope'),
          null,
          home,
        ),
      ).toThrow(/nope for node n .* does not exist: fix ssh_key/)
    } finally {
      rmSync(home, {recursive: true, force: true})
    }
  })
})

describe.skipIf(shouldSkipSshd())('~/.ssh/config and ssh-agent against a real sshd', () => {
  let sshd: TestSshd
  let home: string
  let store: HostKeyStore

  beforeAll(async () => {
    sshd = await startSshd()
    home = mkdtempSync(join(tmpdir(), 'nodeset-home-'))
    mkdirSync(join(home, '.ssh'), {mode: 0o700})
    store = HostKeyStore.inStateDir(join(home, 'project', '.nodeset'))
  })
  afterAll(async () => {
    await sshd?.stop()
    rmSync(home, {recursive: true, force: true})
  })

  test('HostName, Port, User and IdentityFile come from the config for the node name', async () => {
    copyFileSync(sshd.clientKeyPath, join(home, '.ssh', 'lab_key'))
    writeFileSync(
      join(home, '.ssh', 'config'),
      `Host lab1\n  HostName 127.0.0.1\n  Port ${sshd.port}\n  User root\n  IdentityFile ~/.ssh/lab_key\n`,
    )
    store.pin('lab1', '127.0.0.1', [sshd.hostKeyLine], sshd.port)
    const session = await connect(
      {nodeName: 'lab1', host: 'lab1'},
      {hostKeys: {mode: 'pinned', store}, homeDir: home, agentSocket: null, retryForMs: 3000},
    )
    expect(session.target).toMatchObject({
      host: '127.0.0.1',
      port: sshd.port,
      user: 'root',
      identityFiles: [join(home, '.ssh', 'lab_key')],
    })
    expect((await session.exec('id -un')).stdout).toBe('root\n')
    session.close()
  })

  test('without that config the same node cannot be reached, even with a default key', async () => {
    writeFileSync(join(home, '.ssh', 'config'), '')
    copyFileSync(sshd.clientKeyPath, join(home, '.ssh', 'id_ed25519'))
    await expect(
      connect(
        {nodeName: 'lab1', host: 'lab1'},
        {hostKeys: {mode: 'pinned', store}, homeDir: home, agentSocket: null, retryForMs: 0},
      ),
    ).rejects.toThrow(/Cannot resolve lab1 for node lab1 .*HostName for it in ~\/.ssh\/config/)
    // The default key alone is enough where the address is known.
    const session = await connect(
      {nodeName: 'lab1', host: '127.0.0.1', port: sshd.port},
      {hostKeys: {mode: 'pinned', store}, homeDir: home, agentSocket: null},
    )
    expect(session.target.identityFiles).toEqual([])
    expect((await session.exec('echo default-key')).stdout).toBe('default-key\n')
    session.close()
    rmSync(join(home, '.ssh', 'id_ed25519'))
  })

  test('a key held by a real ssh-agent logs in, with no key file given', async () => {
    const socket = join(home, 'agent.sock')
    const agent = spawn('ssh-agent', ['-D', '-a', socket], {stdio: 'ignore'})
    try {
      for (let i = 0; i < 50 && !existsSync(socket); i++) await sleep(50)
      execFileSync('ssh-add', ['-q', sshd.clientKeyPath], {
        env: {...process.env, SSH_AUTH_SOCK: socket},
        stdio: 'ignore',
      })
      const emptyHome = mkdtempSync(join(tmpdir(), 'nodeset-agent-home-'))
      try {
        store.pin('agent1', '127.0.0.1', [sshd.hostKeyLine], sshd.port)
        const session = await connect(
          {nodeName: 'agent1', host: '127.0.0.1', port: sshd.port},
          {hostKeys: {mode: 'pinned', store}, homeDir: emptyHome, agentSocket: socket, retryForMs: 3000},
        )
        expect((await session.exec('echo via-agent')).stdout).toBe('via-agent\n')
        session.close()
      } finally {
        rmSync(emptyHome, {recursive: true, force: true})
      }
    } finally {
      agent.kill()
    }
  })
})

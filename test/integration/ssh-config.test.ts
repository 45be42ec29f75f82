/**
 * OpenSSH's configuration as nodeset reads it: evaluated by OpenSSH itself (`ssh -G`), then a real
 * sshd reached by what the configuration says (HostName, Port, User, IdentityFile, ProxyCommand,
 * CertificateFile) and by ssh-agent. Jump hosts on their own subnet are in bastion.test.ts.
 */
import {execFileSync, spawn} from 'node:child_process'
import {copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir, userInfo} from 'node:os'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {afterAll, beforeAll, describe, expect, test} from 'vitest'
import {expandSshPath, hostOptions, lookupHost, parseJump, SshConfigError} from '../../src/ssh/config.js'
import {HostKeyStore} from '../../src/ssh/hostkeys.js'
import {createdNodeTarget} from '../../src/providers/provider.js'
import {connect, planAuth, resolveTarget, SshKeyError} from '../../src/ssh/ssh.js'
import {shouldSkipSshd, startSshd, type TestSshd} from '../helpers/sshd.js'

const work = mkdtempSync(join(tmpdir(), 'nodeset-ssh-config-'))
afterAll(() => rmSync(work, {recursive: true, force: true}))

/** A configuration file of its own, read alone (as `ssh -F`). */
function configFile(name: string, text: string): {path: string; system: false} {
  const path = join(work, name)
  writeFileSync(path, text, {mode: 0o600})
  return {path, system: false}
}

describe('the configuration, as OpenSSH evaluates it', () => {
  writeFileSync(join(work, 'certs.conf'), 'Host db1.foobar.com\n  CertificateFile ~/.ssh/%n-cert.pub\n', {mode: 0o600})
  const config = configFile(
    'config',
    [
      'IdentityFile ~/.ssh/global_key',
      `Include ${join(work, 'certs.conf')}`,
      '',
      '# nodes of the foobar deployment',
      'Host *.foobar.com !bastion.foobar.com',
      '  User deploy',
      '  Port=2200',
      '  IdentityFile "~/.ssh/foobar key"',
      'Match host 10.0.*',
      '  ProxyJump bastion.foobar.com',
      '  UserKnownHostsFile /keys/fleet_known_hosts',
      'Host db1.foobar.com db1',
      '  HostName 10.0.0.5',
      '  User not-first',
      '  IdentityFile %d/.ssh/%n_%r',
      '  IdentitiesOnly yes',
      'Host bastion.foobar.com',
      '  HostName 203.0.113.7',
      '  User jump',
      '  Port 2201',
      '  HostKeyAlias bastion',
      '  ProxyJump none',
      'Host loop',
      '  ProxyJump loop',
      'Host piped',
      '  ProxyCommand socat - TCP:%h:%p,connect-timeout=%p %r %n %%',
      'Host *',
      '  Port 22',
      '  User fallback',
      '',
    ].join('\n'),
  )
  const home = '/home/me'

  test('the first value wins, IdentityFile and CertificateFile add up, Include and Match apply', async () => {
    const db = await lookupHost({host: 'db1.foobar.com'}, config)
    expect(db).toMatchObject({
      alias: 'db1.foobar.com',
      hostName: '10.0.0.5',
      port: 2200,
      user: 'deploy',
      identityFiles: ['~/.ssh/global_key', '~/.ssh/foobar key', '%d/.ssh/%n_%r'],
      certificateFiles: ['~/.ssh/%n-cert.pub'],
      identitiesOnly: true,
    })
    // Match host is evaluated where it stands: db1's HostName comes later in the file.
    expect(db.proxyJump).toBeUndefined()
  })

  test("nodeset's user, port and address win; Host matches the node's name, Match host its address", async () => {
    const target = await resolveTarget(
      {nodeName: 'app1.foobar.com', host: '10.0.1.9', user: 'root', port: 22, privateKeyPath: '/keys/nodeset'},
      {config, homeDir: home},
    )
    expect(target).toMatchObject({kind: 'node', nodeName: 'app1.foobar.com', host: '10.0.1.9', port: 22, user: 'root'})
    expect(target.identityFiles).toEqual(['/keys/nodeset', '/home/me/.ssh/global_key', '/home/me/.ssh/foobar key'])
    expect(target.knownHostsFiles).toEqual(['/keys/fleet_known_hosts', '/etc/ssh/ssh_known_hosts'])
    // The jump host goes by its own block: HostName, User, Port, HostKeyAlias.
    expect(target.via).toEqual({
      jump: expect.objectContaining({
        kind: 'jump host',
        nodeName: 'bastion.foobar.com',
        host: '203.0.113.7',
        port: 2201,
        user: 'jump',
        hostKeyAlias: 'bastion',
      }),
    })
    expect((target.via as {jump: {via?: unknown}}).jump.via).toBeUndefined()
  })

  test("a node listed without an address takes the configuration's HostName, User and Port", async () => {
    const target = await resolveTarget({nodeName: 'db1.foobar.com', host: 'db1.foobar.com'}, {config, homeDir: home})
    expect(target).toMatchObject({host: '10.0.0.5', user: 'deploy', port: 2200})
    expect(target.identityFiles).toContain('/home/me/.ssh/db1.foobar.com_deploy')
    expect(target.certificateFiles).toEqual(['/home/me/.ssh/db1.foobar.com-cert.pub'])
    // No UserKnownHostsFile given: the user's own, under the home nodeset was given.
    expect(target.knownHostsFiles).toEqual(['/home/me/.ssh/known_hosts', '/etc/ssh/ssh_known_hosts'])
  })

  test("a created node's User and Port come from the configuration unless the provider says them", async () => {
    // An EC2 node without ssh_user: db1's block gives its user and port; nodeset's address stays.
    const record = {
      ...{deployment: 'foobar', id: 'i-0db1', index: 1, role: 'service:mysql', state: 'running' as const},
      ...{name: 'db1.foobar.com', address: '10.0.3.3'},
    }
    const fromConfig = await resolveTarget(createdNodeTarget(record, {defaultUser: 'admin'}), {config, homeDir: home})
    expect(fromConfig).toMatchObject({host: '10.0.3.3', user: 'deploy', port: 2200})
    // The port it reported at phone-home and the file's ssh_user win over the configuration.
    const said = createdNodeTarget({...record, sshPort: 2222}, {user: 'ops', defaultUser: 'admin'})
    expect(await resolveTarget(said, {config, homeDir: home})).toMatchObject({user: 'ops', port: 2222})
    // Nothing in the configuration for the name: the image's default user, port 22.
    const bare = createdNodeTarget({...record, name: 'web9.elsewhere'}, {defaultUser: 'admin'})
    expect(await resolveTarget(bare, {config: configFile('empty', '# nothing\n'), homeDir: home})).toMatchObject({
      user: 'admin',
      port: 22,
    })
  })

  test('a ProxyJump list goes hop by hop, each hop as ssh -J reaches it', async () => {
    const target = await resolveTarget(
      {nodeName: 'far.other', host: '10.9.0.2', user: 'root'},
      {config: configFile('jumps', 'Host far.other\n  ProxyJump alice@first:2022,[2001:db8::1]:23\n'), homeDir: home},
    )
    const second = (target.via as {jump: typeof target}).jump
    expect(second).toMatchObject({host: '2001:db8::1', port: 23, user: userInfo().username})
    expect((second.via as {jump: typeof target}).jump).toMatchObject({host: 'first', port: 2022, user: 'alice'})
  })

  test('a ProxyJump that leads back to itself is refused', async () => {
    await expect(resolveTarget({nodeName: 'loop', host: '10.1.1.1'}, {config, homeDir: home})).rejects.toThrow(
      /OpenSSH refused the SSH configuration for loop: jumphost loop via loop/,
    )
    const pair = configFile('pair', 'Host a\n  ProxyJump b\nHost b\n  ProxyJump a\n')
    await expect(resolveTarget({nodeName: 'a', host: '10.1.1.1'}, {config: pair, homeDir: home})).rejects.toThrow(
      /more than 8 jump hosts: check ~\/.ssh\/config for a ProxyJump that leads back to itself/,
    )
  })

  test("a ProxyCommand gets its tokens expanded; OpenSSH's own errors name the file and line", async () => {
    const target = await resolveTarget({nodeName: 'piped', host: '10.2.2.2', port: 2022, user: 'ops'}, {config})
    expect(target.via).toEqual({command: 'socat - TCP:10.2.2.2:2022,connect-timeout=2022 ops piped %'})
    const bad = configFile('bad', 'Host x\n  Port 99999\n')
    await expect(lookupHost({host: 'x'}, bad)).rejects.toThrow(
      new RegExp(`OpenSSH refused the SSH configuration for x: ${bad.path} line 2: Bad port`),
    )
  })

  test('without a configuration no ssh is needed; with one, a missing ssh is said', async () => {
    const none = {path: null, system: false, ssh: '/nonexistent/ssh'}
    expect(await lookupHost({host: 'n1', hostName: '10.0.0.1', port: 2222}, none)).toMatchObject({
      hostName: '10.0.0.1',
      port: 2222,
      user: undefined,
      identityFiles: [],
    })
    await expect(lookupHost({host: 'n1'}, {...config, ssh: '/nonexistent/ssh'})).rejects.toThrow(SshConfigError)
    await expect(lookupHost({host: 'n1'}, {...config, ssh: '/nonexistent/ssh'})).rejects.toThrow(
      /install openssh-client/,
    )
  })

  test('ssh -G output and ProxyJump hops, as data', () => {
    expect(
      hostOptions(
        'x',
        'user nodeset-no-user-given\nhostname x\nport 22\nidentityfile /nonexistent/nodeset-no-identity-file\n',
      ),
    ).toMatchObject({
      user: undefined,
      identityFiles: [],
    })
    expect(parseJump('ssh://a@b@host:2')).toEqual({user: 'a@b', host: 'host', port: 2})
    expect(parseJump('2001:db8::1')).toEqual({host: '2001:db8::1'})
    expect(() => parseJump('host:99999')).toThrow(/is not \[user@\]host\[:port\]/)
    expect(
      expandSshPath('%d/.ssh/%n_%r', {home: '/home/me', host: '10.0.0.5', alias: 'db1', remoteUser: 'deploy'}),
    ).toBe('/home/me/.ssh/db1_deploy')
    expect(expandSshPath('~/.ssh/k_%h%%', {home: '/home/me', host: '10.0.0.5', alias: 'db1', remoteUser: 'x'})).toBe(
      '/home/me/.ssh/k_10.0.0.5%',
    )
  })

  test('no key anywhere is a clear error that lists the ways to give one', async () => {
    const empty = mkdtempSync(join(work, 'nokey-'))
    const none = {config: {path: null, system: false}, homeDir: empty}
    const target = await resolveTarget({nodeName: 'n', host: '10.0.0.1'}, none)
    expect(() => planAuth(target, undefined, null, empty)).toThrow(SshKeyError)
    expect(() => planAuth(target, undefined, join(empty, 'no-agent.sock'), empty)).toThrow(
      /\(skipped: ssh-agent .*does not exist\)\): set ssh_key .*IdentityFile .*ssh-agent/,
    )
    const missing = await resolveTarget({nodeName: 'n', host: 'h', privateKeyPath: join(empty, 'nope')}, none)
    expect(() => planAuth(missing, join(empty, 'nope'), null, empty)).toThrow(
      /nope for node n .* does not exist: fix ssh_key/,
    )
  })
})

describe.skipIf(shouldSkipSshd())('the configuration and ssh-agent against a real sshd', () => {
  let sshd: TestSshd
  let home: string
  let store: HostKeyStore
  let config: string

  beforeAll(async () => {
    home = mkdtempSync(join(tmpdir(), 'nodeset-home-'))
    mkdirSync(join(home, '.ssh'), {mode: 0o700})
    // A user CA the server trusts: a certificate it signed logs in without any authorized key.
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'user-ca', '-f', join(home, 'user_ca')])
    sshd = await startSshd({extraConfig: [`TrustedUserCAKeys ${join(home, 'user_ca.pub')}`]})
    store = HostKeyStore.inStateDir(join(home, 'project', '.nodeset'))
    config = join(home, '.ssh', 'config')
  })
  afterAll(async () => {
    await sshd?.stop()
    rmSync(home, {recursive: true, force: true})
  })

  const opts = (extra: object = {}) => ({
    hostKeys: {mode: 'pinned' as const, store},
    homeDir: home,
    sshConfigPath: config,
    agentSocket: null,
    retryForMs: 3000,
    ...extra,
  })

  test('HostName, Port, User and IdentityFile come from the configuration for the node name', async () => {
    copyFileSync(sshd.clientKeyPath, join(home, '.ssh', 'lab_key'))
    writeFileSync(
      config,
      `Host lab1\n  HostName 127.0.0.1\n  Port ${sshd.port}\n  User root\n  IdentityFile ~/.ssh/lab_key\n`,
    )
    store.pin('lab1', '127.0.0.1', [sshd.hostKeyLine], sshd.port)
    const session = await connect({nodeName: 'lab1', host: 'lab1'}, opts())
    expect(session.target).toMatchObject({
      host: '127.0.0.1',
      port: sshd.port,
      user: 'root',
      identityFiles: [join(home, '.ssh', 'lab_key')],
    })
    expect((await session.exec('id -un')).stdout).toBe('root\n')
    session.close()
  })

  test('without that configuration the same node cannot be reached, even with a default key', async () => {
    writeFileSync(config, '')
    copyFileSync(sshd.clientKeyPath, join(home, '.ssh', 'id_ed25519'))
    await expect(connect({nodeName: 'lab1', host: 'lab1'}, opts({retryForMs: 0}))).rejects.toThrow(
      /Cannot resolve lab1 for node lab1 .*HostName for it in ~\/.ssh\/config/,
    )
    // The default key alone is enough where the address is known.
    const session = await connect({nodeName: 'lab1', host: '127.0.0.1', port: sshd.port}, opts())
    expect(session.target.identityFiles).toEqual([])
    expect((await session.exec('echo default-key')).stdout).toBe('default-key\n')
    session.close()
    rmSync(join(home, '.ssh', 'id_ed25519'))
  })

  test("a ProxyCommand's stdin and stdout carry the connection, and it ends with the session", async () => {
    copyFileSync(sshd.clientKeyPath, join(home, '.ssh', 'lab_key'))
    const marker = join(home, 'proxied')
    const proxy = join(home, 'proxy.sh')
    writeFileSync(proxy, `#!/bin/sh\necho $$ > ${marker}\nexec socat - TCP:$1:$2\n`, {mode: 0o755})
    writeFileSync(config, `Host piped\n  ProxyCommand ${proxy} %h %p\n  IdentityFile ~/.ssh/lab_key\n`)
    store.pin('piped', '127.0.0.1', [sshd.hostKeyLine], sshd.port)
    const session = await connect({nodeName: 'piped', host: '127.0.0.1', port: sshd.port, user: 'root'}, opts())
    expect(session.target.via).toEqual({command: `${proxy} 127.0.0.1 ${sshd.port}`})
    const pid = Number(readFileSync(marker, 'utf8'))
    expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8')).toContain('socat')
    expect((await session.exec('echo "$SSH_CLIENT"')).stdout).toMatch(/^127\.0\.0\.1 /)
    session.close()
    for (let i = 0; i < 100 && existsSync(`/proc/${pid}`); i++) await sleep(20)
    expect(existsSync(`/proc/${pid}`)).toBe(false)

    // A proxy that cannot connect fails the attempt with what it said.
    writeFileSync(proxy, '#!/bin/sh\necho "no route to $1" >&2\nexit 3\n', {mode: 0o755})
    await expect(
      connect({nodeName: 'piped', host: '127.0.0.1', port: sshd.port, user: 'root'}, opts({retryForMs: 0})),
    ).rejects.toThrow(/ProxyCommand exited with 3: no route to 127\.0\.0\.1/)
  })

  test.each([
    ['ed25519', 'ED25519-CERT'],
    ['ecdsa', 'ECDSA-CERT'],
    ['rsa', 'RSA-CERT'],
  ])('a CertificateFile certificate of an %s key logs in where the key alone is refused', async (type, logged) => {
    const key = join(home, '.ssh', `certified_${type}`)
    execFileSync('ssh-keygen', ['-q', '-t', type, '-N', '', '-C', 'certified', '-f', key])
    const target = {nodeName: 'cert1', host: '127.0.0.1', port: sshd.port, user: 'root'}
    store.pin('cert1', '127.0.0.1', [sshd.hostKeyLine], sshd.port)
    writeFileSync(config, `Host cert1\n  IdentityFile ${key}\n  IdentitiesOnly yes\n`)
    await expect(connect(target, opts())).rejects.toThrow(
      new RegExp(`Login to node cert1 .* failed; tried .*${type}\\b`),
    )

    const id = `nodeset-test-${type}`
    execFileSync('ssh-keygen', ['-q', '-s', join(home, 'user_ca'), '-I', id, '-n', 'root', '-V', '+1h', `${key}.pub`])
    // Named by CertificateFile, not found beside the key.
    const certificate = join(home, `issued-${type}-cert.pub`)
    copyFileSync(`${key}-cert.pub`, certificate)
    rmSync(`${key}-cert.pub`)
    writeFileSync(config, `Host cert1\n  IdentityFile ${key}\n  CertificateFile ${certificate}\n  IdentitiesOnly yes\n`)
    const before = sshd.logins()
    const session = await connect(target, opts())
    expect((await session.exec('id -un')).stdout).toBe('root\n')
    session.close()
    expect(sshd.logins()).toBe(before + 1)
    expect(readFileSync(sshd.logPath, 'utf8')).toMatch(new RegExp(`Accepted publickey for root .*${logged} .*ID ${id}`))

    // A certificate beside its key (KEY-cert.pub) is offered with it, as OpenSSH does.
    copyFileSync(certificate, `${key}-cert.pub`)
    writeFileSync(config, `Host cert1\n  IdentityFile ${key}\n  IdentitiesOnly yes\n`)
    const beside = await connect(target, opts())
    expect((await beside.exec('echo beside')).stdout).toBe('beside\n')
    beside.close()
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
          {
            hostKeys: {mode: 'pinned', store},
            homeDir: emptyHome,
            sshConfigPath: null,
            agentSocket: socket,
            retryForMs: 3000,
          },
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

import {execFileSync} from 'node:child_process'
import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, afterEach, beforeAll, describe, expect, test} from 'vitest'
import {
  fingerprint,
  HostKeyMismatchError,
  HostKeyStore,
  parseHostKey,
  UnknownHostKeyError,
  type HostKeyPolicy,
} from '../../src/ssh/hostkeys.js'
import {connect, SshAuthError, SshUnreachableError, type ConnectOptions, type SshTarget} from '../../src/ssh/ssh.js'
import {freePort, shouldSkipSshd, startSshd, type TestSshd} from '../helpers/sshd.js'

/** What OpenSSH itself prints for a public key line. */
function sshKeygenFingerprint(line: string): string {
  return execFileSync('ssh-keygen', ['-lf', '-'], {input: line + '\n'})
    .toString()
    .split(' ')[1]
}

describe.skipIf(shouldSkipSshd())('host key verification against a real sshd', () => {
  let sshd: TestSshd
  let dir: string
  let store: HostKeyStore
  let target: SshTarget
  const emptyKnownHosts = (): string => {
    const path = join(dir, `empty_known_hosts_${Math.random()}`)
    writeFileSync(path, '')
    return path
  }
  const options = (hostKeys: HostKeyPolicy, extra: Partial<ConnectOptions> = {}): ConnectOptions => ({
    hostKeys,
    sshConfigPath: null,
    agentSocket: null,
    homeDir: dir,
    retryForMs: 3000,
    ...extra,
  })

  beforeAll(async () => {
    sshd = await startSshd()
    dir = mkdtempSync(join(tmpdir(), 'nodeset-hostkeys-'))
    target = {nodeName: 'static1.test', host: '127.0.0.1', port: sshd.port, privateKeyPath: sshd.clientKeyPath}
  })
  afterEach(() => {
    store = HostKeyStore.inStateDir(join(dir, `.nodeset-${Math.random()}`))
  })
  afterAll(async () => {
    await sshd?.stop()
    rmSync(dir, {recursive: true, force: true})
  })

  test('our fingerprints are the ones OpenSSH prints', () => {
    expect(fingerprint(parseHostKey(sshd.hostKeyLine))).toBe(sshKeygenFingerprint(sshd.hostKeyLine))
  })

  test('a pinned key is accepted', async () => {
    store = HostKeyStore.inStateDir(join(dir, '.nodeset-pinned'))
    store.pin(target.nodeName, '127.0.0.1', [sshd.hostKeyLine], sshd.port)
    const session = await connect(target, options({mode: 'pinned', store}))
    expect((await session.exec('echo verified')).stdout).toBe('verified\n')
    session.close()
  })

  test('a node with nothing pinned is refused, and nothing is logged in', async () => {
    store = HostKeyStore.inStateDir(join(dir, '.nodeset-none'))
    const logins = sshd.logins()
    const error = await connect(target, options({mode: 'pinned', store})).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(UnknownHostKeyError)
    expect((error as Error).message).toContain(
      `static1.test at [127.0.0.1]:${sshd.port} is unknown: ${sshKeygenFingerprint(sshd.hostKeyLine)}`,
    )
    expect(sshd.logins()).toBe(logins)
  })

  test('a static node with an unknown key is refused without trust-on-first-use, pinned with it', async () => {
    store = HostKeyStore.inStateDir(join(dir, '.nodeset-tofu'))
    const knownHostsPaths = [emptyKnownHosts()]
    await expect(connect(target, options({mode: 'static', store, knownHostsPaths}))).rejects.toThrow(
      /--trust-on-first-use/,
    )
    expect(store.lookup(target.nodeName)).toBeUndefined()

    const first = await connect(target, options({mode: 'static', store, knownHostsPaths, trustOnFirstUse: true}))
    first.close()
    expect(store.lookup(target.nodeName)!.keys.map(fingerprint)).toEqual([fingerprint(parseHostKey(sshd.hostKeyLine))])

    // From now on the pin decides, flag or not.
    const again = await connect(target, options({mode: 'static', store, knownHostsPaths}))
    again.close()
  })

  test('hashed ~/.ssh/known_hosts entries (as ssh-keyscan -H writes them) are matched', async () => {
    store = HostKeyStore.inStateDir(join(dir, '.nodeset-hashed'))
    const knownHosts = join(dir, 'known_hosts_hashed')
    const scanned = execFileSync('ssh-keyscan', ['-H', '-t', 'ed25519', '-p', String(sshd.port), '127.0.0.1'], {
      stdio: ['ignore', 'pipe', 'ignore'],
    }).toString()
    expect(scanned).toMatch(/^\|1\|/)
    writeFileSync(knownHosts, scanned)
    const session = await connect(target, options({mode: 'static', store, knownHostsPaths: [knownHosts]}))
    expect((await session.exec('echo ok')).stdout).toBe('ok\n')
    session.close()
    // Trusted through known_hosts, so nothing needed pinning.
    expect(store.lookup(target.nodeName)).toBeUndefined()
  })

  test('a plain known_hosts entry under the node name works; one under another port does not', async () => {
    store = HostKeyStore.inStateDir(join(dir, '.nodeset-plain'))
    const byName = join(dir, 'known_hosts_by_name')
    writeFileSync(byName, `[static1.test]:${sshd.port} ${sshd.hostKeyLine}\n`)
    ;(await connect(target, options({mode: 'static', store, knownHostsPaths: [byName]}))).close()
    const otherPort = join(dir, 'known_hosts_other_port')
    writeFileSync(otherPort, `127.0.0.1 ${sshd.hostKeyLine}\n`)
    await expect(connect(target, options({mode: 'static', store, knownHostsPaths: [otherPort]}))).rejects.toThrow(
      UnknownHostKeyError,
    )
  })

  test('a @revoked key is refused even with trust-on-first-use', async () => {
    store = HostKeyStore.inStateDir(join(dir, '.nodeset-revoked'))
    const revoked = join(dir, 'known_hosts_revoked')
    writeFileSync(revoked, `@revoked * ${sshd.hostKeyLine}\n`)
    await expect(
      connect(target, options({mode: 'static', store, knownHostsPaths: [revoked], trustOnFirstUse: true})),
    ).rejects.toThrow(/marked @revoked/)
    expect(store.lookup(target.nodeName)).toBeUndefined()
  })

  test('a changed host key is refused with the node, address, both fingerprints and what to do', async () => {
    store = HostKeyStore.inStateDir(join(dir, '.nodeset-changed'))
    const oldKey = sshd.hostKeyLine
    store.pin(target.nodeName, '127.0.0.1', [oldKey], sshd.port)
    await sshd.restart({newHostKey: true})
    expect(sshd.hostKeyLine).not.toBe(oldKey)
    const logins = sshd.logins()
    const started = Date.now()
    const error = await connect(target, options({mode: 'pinned', store}, {retryForMs: 30_000})).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(HostKeyMismatchError)
    const mismatch = error as HostKeyMismatchError
    expect(mismatch.nodeName).toBe('static1.test')
    expect(mismatch.address).toBe(`[127.0.0.1]:${sshd.port}`)
    expect(mismatch.offered).toBe(sshKeygenFingerprint(sshd.hostKeyLine))
    expect(mismatch.expected).toEqual([sshKeygenFingerprint(oldKey)])
    expect(mismatch.message).toContain(`offered:  ${sshKeygenFingerprint(sshd.hostKeyLine)}`)
    expect(mismatch.message).toContain(`expected: ${sshKeygenFingerprint(oldKey)}`)
    expect(mismatch.message).toMatch(/phone home again/)
    // Never retried, never logged in, and trust-on-first-use cannot override a pin.
    expect(Date.now() - started).toBeLessThan(5000)
    expect(sshd.logins()).toBe(logins)
    await expect(
      connect(target, options({mode: 'static', store, knownHostsPaths: [emptyKnownHosts()], trustOnFirstUse: true})),
    ).rejects.toThrow(HostKeyMismatchError)
    expect(store.lookup(target.nodeName)!.keys.map(fingerprint)).toEqual([sshKeygenFingerprint(oldKey)])
  })

  test('a wrong login key fails at once with what was tried, and is not retried', async () => {
    store = HostKeyStore.inStateDir(join(dir, '.nodeset-auth'))
    store.pin(target.nodeName, '127.0.0.1', [sshd.hostKeyLine], sshd.port)
    const wrongKey = join(dir, 'wrong_key')
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', wrongKey])
    const started = Date.now()
    const error = await connect(
      {...target, privateKeyPath: wrongKey},
      options({mode: 'pinned', store}, {retryForMs: 30_000}),
    ).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(SshAuthError)
    expect((error as Error).message).toContain(`tried ${wrongKey}`)
    expect((error as Error).message).toMatch(/Check ssh_user and ssh_key/)
    expect(Date.now() - started).toBeLessThan(5000)
  })

  test('a server that stops after too many keys is an authentication error that says which key to set', async () => {
    const strict = await startSshd({extraConfig: ['MaxAuthTries 1']})
    try {
      store = HostKeyStore.inStateDir(join(dir, '.nodeset-maxauth'))
      store.pin('strict.test', '127.0.0.1', [strict.hostKeyLine], strict.port)
      const home = mkdtempSync(join(dir, 'home-'))
      mkdirSync(join(home, '.ssh'))
      for (const name of ['wrong_one', 'wrong_two'])
        execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(home, '.ssh', name)])
      // The right key comes third, after the server has given up.
      writeFileSync(
        join(home, '.ssh', 'config'),
        `Host strict.test\n  IdentityFile ~/.ssh/wrong_one\n  IdentityFile ~/.ssh/wrong_two\n  IdentityFile ${strict.clientKeyPath}\n`,
      )
      const started = Date.now()
      const error = await connect(
        {nodeName: 'strict.test', host: '127.0.0.1', port: strict.port},
        {hostKeys: {mode: 'pinned', store}, homeDir: home, agentSocket: null, retryForMs: 30_000},
      ).catch((e: unknown) => e)
      expect(error).toBeInstanceOf(SshAuthError)
      expect((error as Error).message).toMatch(/too many keys: set ssh_key/)
      expect(Date.now() - started).toBeLessThan(5000)
    } finally {
      await strict.stop()
    }
  })

  test('a passphrase-protected ssh_key is refused before connecting, with the ssh-add advice', async () => {
    store = HostKeyStore.inStateDir(join(dir, '.nodeset-passphrase'))
    const locked = join(dir, 'locked_key')
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', 'secret-passphrase', '-f', locked])
    await expect(connect({...target, privateKeyPath: locked}, options({mode: 'pinned', store}))).rejects.toThrow(
      /passphrase: load it into ssh-agent \(ssh-add/,
    )
  })

  test('a node whose sshd is still starting is retried until it answers', async () => {
    const port = await freePort()
    const late = await startSshd({port, startDown: true})
    try {
      store = HostKeyStore.inStateDir(join(dir, '.nodeset-late'))
      store.pin('late.test', '127.0.0.1', [late.hostKeyLine], port)
      const retries: number[] = []
      const connecting = connect(
        {nodeName: 'late.test', host: '127.0.0.1', port, privateKeyPath: late.clientKeyPath},
        options({mode: 'pinned', store}, {retryForMs: 20_000, onRetry: ({attempt}) => retries.push(attempt)}),
      )
      await new Promise((resolve) => setTimeout(resolve, 1200))
      await late.up()
      const session = await connecting
      expect((await session.exec('echo up')).stdout).toBe('up\n')
      session.close()
      expect(retries.length).toBeGreaterThanOrEqual(2)
    } finally {
      await late.stop()
    }
  })

  test('a node that never answers fails after the deadline with what to check', async () => {
    const port = await freePort()
    store = HostKeyStore.inStateDir(join(dir, '.nodeset-never'))
    const started = Date.now()
    const error = await connect({...target, port}, options({mode: 'pinned', store}, {retryForMs: 1500})).catch(
      (e: unknown) => e,
    )
    expect(error).toBeInstanceOf(SshUnreachableError)
    expect((error as Error).message).toMatch(/ECONNREFUSED.*Check the address and port/)
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000)
    expect(Date.now() - started).toBeLessThan(5000)
  })
})

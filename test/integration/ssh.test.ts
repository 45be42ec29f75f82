import {randomBytes} from 'node:crypto'
import {execFileSync} from 'node:child_process'
import {mkdtempSync, rmSync, statSync, readdirSync, readFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {afterAll, beforeAll, describe, expect, test} from 'vitest'
import {HostKeyStore} from '../../src/ssh/hostkeys.js'
import {
  connect,
  ExecTimeoutError,
  RemoteCommandError,
  SessionPool,
  SshClosedError,
  type SshSession,
} from '../../src/ssh/ssh.js'
import {processes, shouldSkipSshd, startSshd, type TestSshd} from '../helpers/sshd.js'

describe.skipIf(shouldSkipSshd())('SSH session against a real sshd', () => {
  let sshd: TestSshd
  let dir: string
  let session: SshSession

  beforeAll(async () => {
    sshd = await startSshd()
    dir = mkdtempSync(join(tmpdir(), 'nodeset-ssh-'))
    const store = HostKeyStore.inStateDir(join(dir, '.nodeset'))
    store.pin('node1.test', '127.0.0.1', [sshd.hostKeyLine], sshd.port)
    session = await connect(
      {nodeName: 'node1.test', host: '127.0.0.1', port: sshd.port, privateKeyPath: sshd.clientKeyPath},
      {hostKeys: {mode: 'pinned', store}, sshConfigPath: null, agentSocket: null, homeDir: dir, retryForMs: 5000},
    )
  })

  afterAll(async () => {
    session?.close()
    await sshd?.stop()
    rmSync(dir, {recursive: true, force: true})
  })

  test('exit codes, stdout and stderr come back separately', async () => {
    const result = await session.exec('echo out; echo err >&2; exit 7')
    expect(result).toMatchObject({code: 7, stdout: 'out\n', stderr: 'err\n'})
    expect((await session.exec('true')).code).toBe(0)
  })

  test('a command killed by a signal reports 128 + the signal number', async () => {
    const result = await session.exec('kill -TERM $$')
    expect(result.code).toBe(128 + 15)
    expect(result.signal).toMatch(/TERM/)
  })

  test('stdin reaches the command, as text and as bytes', async () => {
    expect((await session.exec('cat', {stdin: 'line one\nline two\n'})).stdout).toBe('line one\nline two\n')
    const bytes = randomBytes(100_000)
    const result = await session.exec('sha256sum | cut -d" " -f1', {stdin: bytes})
    expect(result.stdout.trim()).toBe(execFileSync('sha256sum', {input: bytes}).toString().split(' ')[0])
  })

  test('a command without stdin gets end-of-file rather than waiting', async () => {
    expect((await session.exec('cat; echo done', {timeoutMs: 5000})).stdout).toBe('done\n')
  })

  test('env values arrive exactly, whatever characters they hold', async () => {
    const tricky = `it's "quoted" $HOME \`id\` ; rm -rf / \n second line`
    const result = await session.exec('printf %s "$GREETING"; printf "|%s" "$OTHER"', {
      env: {GREETING: tricky, OTHER: 'plain'},
    })
    expect(result.stdout).toBe(`${tricky}|plain`)
  })

  test('output streams while the command runs, and multi-byte characters are not split', async () => {
    const chunks: Array<{chunk: string; stream: string; at: number}> = []
    const started = Date.now()
    const result = await session.exec(
      `printf 'first\\n'; sleep 0.4; printf '\\303'; sleep 0.2; printf '\\251\\n'; printf 'err\\n' >&2; printf 'last\\n'`,
      {
        onOutput: (chunk, stream) => chunks.push({chunk, stream, at: Date.now() - started}),
      },
    )
    expect(result.stdout).toBe('first\n\u00e9\nlast\n')
    const stdout = chunks.filter((c) => c.stream === 'stdout')
    expect(stdout[0].chunk).toBe('first\n')
    // The first line arrived long before the command ended.
    expect(chunks[chunks.length - 1].at - stdout[0].at).toBeGreaterThanOrEqual(300)
    expect(stdout.map((c) => c.chunk).join('')).toBe(result.stdout)
    expect(stdout.some((c) => c.chunk.includes('\ufffd'))).toBe(false)
    expect(
      chunks
        .filter((c) => c.stream === 'stderr')
        .map((c) => c.chunk)
        .join(''),
    ).toBe('err\n')
  })

  test('a command past its timeout is stopped on the node, with its children', async () => {
    const marker = `sleep 3${Math.floor(Math.random() * 1e6)}`
    const started = Date.now()
    const running = session.exec(`${marker} & ${marker}`, {timeoutMs: 1500, label: 'long sleep'})
    await sleep(700)
    // Both sleeps run (the test would prove nothing otherwise).
    expect(processes().filter((p) => p.commandLine === marker)).toHaveLength(2)
    await expect(running).rejects.toThrow(ExecTimeoutError)
    expect(Date.now() - started).toBeLessThan(3000)
    // The node is this machine: its process table shows what is left.
    const left = () => processes().filter((p) => p.commandLine === marker)
    for (let i = 0; i < 40 && left().length > 0; i++) await sleep(100)
    expect(left()).toEqual([])
  })

  test('run() turns a failure into an error that names the label and shows stderr', async () => {
    const error = await session.run('echo "no such table" >&2; exit 3', {label: 'migration'}).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(RemoteCommandError)
    expect((error as Error).message).toMatch(/migration failed on node node1\.test .*exit code 3:\nno such table/)
  })

  test('upload writes atomically with the mode asked for, creating directories; download reads it back', async () => {
    const target = join(dir, 'remote', 'nested', 'file.bin')
    const content = randomBytes(70_000)
    await session.upload(target, content, 0o600)
    expect(readFileSync(target).equals(content)).toBe(true)
    expect(statSync(target).mode & 0o777).toBe(0o600)
    expect((await session.download(target)).equals(content)).toBe(true)

    await session.upload(target, 'replaced\n', 0o644)
    expect(readFileSync(target, 'utf8')).toBe('replaced\n')
    expect(statSync(target).mode & 0o777).toBe(0o644)
    expect(readdirSync(join(dir, 'remote', 'nested'))).toEqual(['file.bin'])
  })

  test('a failed upload leaves no temporary file and says why', async () => {
    const blocked = join(dir, 'blocked')
    await session.upload(blocked, 'a file where a directory is needed')
    await expect(session.upload(join(blocked, 'inside.txt'), 'x')).rejects.toThrow(
      /upload of .*inside\.txt to node node1\.test .*failed/,
    )
    await expect(session.upload(join(dir, 'remote'), 'x')).rejects.toThrow(/remote is a directory/)
    await expect(session.download(join(dir, 'missing.txt'))).rejects.toThrow(
      /download of .*missing\.txt .*No such file/,
    )
    expect(readdirSync(dir).filter((name) => name.includes('.nodeset-'))).toEqual([])
    expect(readdirSync(join(dir, 'remote'))).toEqual(['nested'])
  })

  test('one connection carries every command, in sequence and in parallel', async () => {
    const before = sshd.logins()
    for (let i = 0; i < 10; i++) expect((await session.exec(`echo ${i}`)).stdout).toBe(`${i}\n`)
    const parallel = await Promise.all(Array.from({length: 8}, (_, i) => session.exec(`sleep 0.1; echo ${i}`)))
    expect(parallel.map((r) => r.stdout)).toEqual(Array.from({length: 8}, (_, i) => `${i}\n`))
    await session.upload(join(dir, 'counted.txt'), 'x')
    await session.download(join(dir, 'counted.txt'))
    expect(sshd.logins()).toBe(before)
    expect(before).toBe(1)
  })

  test('a closed session refuses new commands clearly', async () => {
    const store = HostKeyStore.inStateDir(join(dir, '.nodeset'))
    const other = await connect(
      {nodeName: 'node1.test', host: '127.0.0.1', port: sshd.port, privateKeyPath: sshd.clientKeyPath},
      {hostKeys: {mode: 'pinned', store}, sshConfigPath: null, agentSocket: null, homeDir: dir},
    )
    other.close()
    expect(other.closed).toBe(true)
    await expect(other.exec('true')).rejects.toThrow(SshClosedError)
  })

  test('a session pool connects each node once, even when asked concurrently, and again only after a loss', async () => {
    const store = HostKeyStore.inStateDir(join(dir, '.nodeset'))
    const pool = new SessionPool({
      hostKeys: {mode: 'pinned', store},
      sshConfigPath: null,
      agentSocket: null,
      homeDir: dir,
    })
    const target = {nodeName: 'node1.test', host: '127.0.0.1', port: sshd.port, privateKeyPath: sshd.clientKeyPath}
    const before = sshd.logins()
    const [a, b] = await Promise.all([pool.get(target), pool.get(target)])
    expect(a).toBe(b)
    expect(await pool.get(target)).toBe(a)
    expect(sshd.logins()).toBe(before + 1)
    a.close()
    const c = await pool.get(target)
    expect(c).not.toBe(a)
    expect((await c.exec('echo again')).stdout).toBe('again\n')
    expect(sshd.logins()).toBe(before + 2)
    await pool.closeAll()
    expect(c.closed).toBe(true)
  })
})

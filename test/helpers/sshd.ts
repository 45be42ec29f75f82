/**
 * A real OpenSSH server for tests: `/usr/sbin/sshd -D` on 127.0.0.1 and a free port, with its own
 * host key and an authorized client key in a temporary directory, logging in as root by key.
 *
 *   const sshd = await startSshd()
 *   … connect to 127.0.0.1:sshd.port as root with sshd.clientKeyPath, verify sshd.hostKeyLine …
 *   await sshd.stop()
 *
 * Needs root and openssh-server. `sshdUnavailable()` says why not when they are missing, so a test
 * can skip outside CI; with CI=true it must not skip (use `requireSshd()` in a describe block).
 */
import {spawn, execFileSync, type ChildProcess} from 'node:child_process'
import {existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {createServer, connect as tcpConnect} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

export const SSHD = '/usr/sbin/sshd'

export interface SshdOptions {
  /** Host key type, default ed25519. */
  keyType?: 'ed25519' | 'ecdsa' | 'rsa'
  /** Extra sshd_config lines; they win over the helper's own. */
  extraConfig?: string[]
  /** Listen on this port (default: a free one). */
  port?: number
  /** Start listening later, with `up()`. */
  startDown?: boolean
}

export interface TestSshd {
  port: number
  /** The server's public host key, "ssh-ed25519 AAAA…". */
  hostKeyLine: string
  /** A private key (no passphrase) the server accepts for root. */
  clientKeyPath: string
  clientPublicKeyLine: string
  dir: string
  logPath: string
  /** Successful logins so far, counted from the server's log. */
  logins(): number
  /** Start listening (again) on the same port; `newHostKey` generates a different host key first. */
  up(opts?: {newHostKey?: boolean}): Promise<void>
  /** Stop listening; established connections stay. */
  down(): Promise<void>
  /** down() then up(). */
  restart(opts?: {newHostKey?: boolean}): Promise<void>
  /** Stop and remove the temporary directory. */
  stop(): Promise<void>
}

/** Why a real sshd cannot run here, or undefined when it can. */
export function sshdUnavailable(): string | undefined {
  if (!existsSync(SSHD)) return `${SSHD} is missing (apt-get install openssh-server)`
  if (process.getuid?.() !== 0) return 'the test sshd needs root'
  return undefined
}

/** Outside CI a missing sshd skips; in CI it is a failure, never a skip. */
export function shouldSkipSshd(): boolean {
  const why = sshdUnavailable()
  if (why && process.env.CI === 'true') throw new Error(`CI needs a real sshd: ${why}`)
  return why !== undefined
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      )
    })
  })
}

function keygen(path: string, type: string, comment: string): string {
  rmSync(path, {force: true})
  rmSync(`${path}.pub`, {force: true})
  execFileSync('ssh-keygen', ['-q', '-t', type, '-N', '', '-C', comment, '-f', path])
  return readFileSync(`${path}.pub`, 'utf8').trim().split(/\s+/).slice(0, 2).join(' ')
}

async function waitForPort(port: number, child: ChildProcess, logPath: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`sshd exited with ${child.exitCode}: ${readFileSync(logPath, 'utf8')}`)
    const open = await new Promise<boolean>((resolve) => {
      const socket = tcpConnect(port, '127.0.0.1')
      socket.once('connect', () => (socket.destroy(), resolve(true)))
      socket.once('error', () => resolve(false))
    })
    if (open) return
    await sleep(50)
  }
  throw new Error(`sshd did not listen on 127.0.0.1:${port} within ${timeoutMs} ms`)
}

export async function startSshd(opts: SshdOptions = {}): Promise<TestSshd> {
  const why = sshdUnavailable()
  if (why) throw new Error(`cannot start a test sshd: ${why}`)
  mkdirSync('/run/sshd', {recursive: true, mode: 0o755})
  const dir = mkdtempSync(join(tmpdir(), 'nodeset-sshd-'))
  const keyType = opts.keyType ?? 'ed25519'
  const hostKeyPath = join(dir, 'host_key')
  const clientKeyPath = join(dir, 'client_key')
  const logPath = join(dir, 'sshd.log')
  let hostKeyLine = keygen(hostKeyPath, keyType, 'test-host')
  const clientPublicKeyLine = keygen(clientKeyPath, 'ed25519', 'test-client')
  writeFileSync(join(dir, 'authorized_keys'), clientPublicKeyLine + '\n', {mode: 0o600})
  const port = opts.port ?? (await freePort())
  const configPath = join(dir, 'sshd_config')
  writeFileSync(
    configPath,
    [
      // sshd takes the first value of a keyword: extra lines come first so they override ours.
      ...(opts.extraConfig ?? []),
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${hostKeyPath}`,
      `PidFile ${join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      'PermitRootLogin prohibit-password',
      'PubkeyAuthentication yes',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'StrictModes no',
      'LogLevel VERBOSE',
      'MaxStartups 100',
      'Subsystem sftp internal-sftp',
    ].join('\n') + '\n',
  )

  let child: ChildProcess | undefined
  const start = async (): Promise<void> => {
    child = spawn(SSHD, ['-D', '-f', configPath, '-E', logPath], {stdio: 'ignore'})
    await waitForPort(port, child, logPath)
  }
  const stop = async (): Promise<void> => {
    const running = child
    child = undefined
    if (!running || running.exitCode !== null) return
    const exited = new Promise((resolve) => running.once('exit', resolve))
    running.kill('SIGTERM')
    await exited
  }
  const up = async (upOpts: {newHostKey?: boolean} = {}): Promise<void> => {
    if (child) throw new Error('the test sshd is already up')
    if (upOpts.newHostKey) hostKeyLine = keygen(hostKeyPath, keyType, 'test-host')
    await start()
  }
  if (!opts.startDown) await start()

  return {
    port,
    get hostKeyLine() {
      return hostKeyLine
    },
    clientKeyPath,
    clientPublicKeyLine,
    dir,
    logPath,
    logins: () =>
      existsSync(logPath) ? (readFileSync(logPath, 'utf8').match(/Accepted publickey for /g) ?? []).length : 0,
    up,
    down: stop,
    async restart(restartOpts = {}) {
      await stop()
      await up(restartOpts)
    },
    async stop() {
      await stop()
      rmSync(dir, {recursive: true, force: true})
    },
  }
}

/** Command lines of this machine's processes (from /proc, so no procps is needed), with their pids. */
export function processes(): Array<{pid: number; commandLine: string}> {
  const found: Array<{pid: number; commandLine: string}> = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const commandLine = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ')
      if (commandLine) found.push({pid: Number(entry), commandLine})
    } catch {
      // The process ended while we looked.
    }
  }
  return found
}

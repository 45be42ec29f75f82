/**
 * The local provider's contact with the machine: the one place its commands (local-commands.ts) are
 * run, checking what it needs, a lock between processes, and finding and ending processes.
 */
import {execFile, spawn, type ChildProcess} from 'node:child_process'
import {constants as fsConstants, readFileSync} from 'node:fs'
import {access, mkdir, open, readFile, rm, stat, writeFile} from 'node:fs/promises'
import {createConnection} from 'node:net'
import {setTimeout as sleep} from 'node:timers/promises'
import {promisify} from 'node:util'
import {namespacePids as namespacePidsCommand, type Command} from './local-commands.js'

const execFileAsync = promisify(execFile)

/** A clean environment for everything the provider starts, as a boot would give. */
export const SYSTEM_ENV: NodeJS.ProcessEnv = {
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  HOME: '/root',
  LANG: 'C.UTF-8',
}

export class CommandError extends Error {
  constructor(
    readonly argv: string[],
    readonly code: number | string | undefined,
    readonly stderr: string,
  ) {
    super(
      `${argv.join(' ')} failed${code === undefined ? '' : ` (exit ${code})`}: ${stderr.trim() || 'no error output'}`,
    )
  }
}

/** Run a command (no shell) and return its stdout; throws CommandError with its stderr. */
export async function run({argv}: Command, opts: {timeoutMs?: number} = {}): Promise<string> {
  const [file, ...args] = argv
  try {
    const {stdout} = await execFileAsync(file, args, {
      env: SYSTEM_ENV,
      timeout: opts.timeoutMs ?? 30_000,
      maxBuffer: 16 * 1024 * 1024,
    })
    return stdout
  } catch (error) {
    const e = error as {code?: number | string; stderr?: string; message: string}
    throw new CommandError(argv, e.code, e.stderr ?? e.message)
  }
}

/** Like run, but a failure is an answer, not an error. */
export async function tryRun(command: Command): Promise<boolean> {
  try {
    await run(command)
    return true
  } catch {
    return false
  }
}

/** Run commands one after the other; the first failure stops them. */
export async function runAll(commands: Command[]): Promise<void> {
  for (const command of commands) await run(command)
}

/** Start a long-lived process in its own session, output appended to a log file; nothing waits for it. */
export async function spawnDetached({argv}: Command, logFile: string): Promise<ChildProcess & {pid: number}> {
  const log = await open(logFile, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_APPEND, 0o600)
  try {
    const child = spawn(argv[0], argv.slice(1), {
      detached: true,
      stdio: ['ignore', log.fd, log.fd],
      env: SYSTEM_ENV,
      cwd: '/',
    })
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve)
      child.once('error', reject)
    })
    child.unref()
    return child as typeof child & {pid: number}
  } finally {
    await log.close()
  }
}

/** True once something on address:22 sends an SSH banner. */
export function sshGreets(address: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({host: address, port: 22, timeout: 1000})
    const done = (ok: boolean): void => {
      socket.destroy()
      resolve(ok)
    }
    socket.once('data', (chunk) => done(chunk.toString('latin1').startsWith('SSH-')))
    socket.once('error', () => done(false))
    socket.once('timeout', () => done(false))
  })
}

const REQUIRED_TOOLS: Array<{names: string[]; what: string; pkg: string}> = [
  {names: ['/usr/sbin/ip', '/sbin/ip', '/usr/bin/ip', '/bin/ip'], what: 'ip', pkg: 'iproute2'},
  {names: ['/usr/bin/unshare', '/bin/unshare'], what: 'unshare', pkg: 'util-linux'},
  {names: ['/usr/bin/nsenter', '/bin/nsenter'], what: 'nsenter', pkg: 'util-linux'},
  {names: ['/usr/sbin/sshd'], what: '/usr/sbin/sshd', pkg: 'openssh-server'},
  {names: ['/usr/bin/ssh-keygen', '/bin/ssh-keygen'], what: 'ssh-keygen', pkg: 'openssh-client'},
]

async function executable(path: string): Promise<boolean> {
  try {
    await access(path, fsConstants.X_OK)
    return true
  } catch {
    return false
  }
}

/** Why the local provider cannot run here, or undefined when it can. */
export async function localProviderProblem(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) {
    return 'the local provider makes network namespaces, bridges and mounts, which needs root: run nodeset as root (sudo nodeset …)'
  }
  const missing: string[] = []
  for (const tool of REQUIRED_TOOLS) {
    const found = await Promise.all(tool.names.map(executable))
    if (!found.includes(true)) missing.push(`${tool.what} (Debian package ${tool.pkg})`)
  }
  if (missing.length > 0) {
    const packages = [
      ...new Set(REQUIRED_TOOLS.filter((t) => missing.some((m) => m.startsWith(t.what))).map((t) => t.pkg)),
    ]
    return `the local provider needs ${missing.join(', ')}: install with apt-get install ${packages.join(' ')}`
  }
  return undefined
}

export async function assertLocalProviderUsable(): Promise<void> {
  const problem = await localProviderProblem()
  if (problem) throw new Error(problem)
}

/**
 * A lock between processes: a directory made with mkdir (atomic), holding the owner's pid.
 * A lock whose owner is dead is taken over.
 */
export async function withLock<T>(lockDir: string, work: () => Promise<T>, timeoutMs = 60_000): Promise<T> {
  const started = Date.now()
  for (;;) {
    try {
      await mkdir(lockDir)
      break
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      if (code === 'ENOENT') {
        await mkdir(lockDir.replace(/\/[^/]+\/?$/, ''), {recursive: true})
        continue
      }
      if (code !== 'EEXIST') throw error
      const owner = Number(await readFile(`${lockDir}/pid`, 'utf8').catch(() => ''))
      if (owner > 0 && !processAlive(owner)) {
        await rm(lockDir, {recursive: true, force: true})
        continue
      }
      if (Date.now() - started > timeoutMs)
        throw new Error(`timed out waiting for the lock ${lockDir} (held by pid ${owner || 'unknown'})`, {
          cause: error,
        })
      await sleep(20 + Math.random() * 30)
    }
  }
  await writeFile(`${lockDir}/pid`, `${process.pid}\n`)
  try {
    return await work()
  } finally {
    await rm(lockDir, {recursive: true, force: true})
  }
}

/** True while the process runs (a zombie, dead but not yet reaped, counts as gone). */
export function processAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return !/^\d+ \(.*\) [ZX] /s.test(stat)
  } catch {
    return false
  }
}

/** Whether the process lives in the named network namespace (guards against reused pids). */
export async function inNamespace(pid: number, namespace: string): Promise<boolean> {
  if (!processAlive(pid)) return false
  try {
    const [proc, ns] = await Promise.all([stat(`/proc/${pid}/ns/net`), stat(`/run/netns/${namespace}`)])
    return proc.ino === ns.ino && proc.dev === ns.dev
  } catch {
    return false
  }
}

/** Pids of every process in a network namespace (`ip netns pids`); none when it is gone. */
export async function namespacePids(namespace: string): Promise<number[]> {
  try {
    const out = await run(namespacePidsCommand(namespace))
    return out
      .split(/\s+/)
      .filter(Boolean)
      .map(Number)
      .filter((pid) => pid > 0 && pid !== process.pid)
  } catch {
    return []
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig)
  } catch {
    // already gone
  }
}

/**
 * End every process of the namespace: SIGTERM, then SIGKILL for those still there after the grace
 * period. Repeats until none is left, since a dying service may have started another. Pids come from
 * the namespace itself, never from pid files, which a reboot can make point at unrelated processes.
 */
export async function killNamespaceProcesses(namespace: string, graceMs = 2000): Promise<void> {
  for (let round = 0; round < 20; round++) {
    const pids = await namespacePids(namespace)
    if (pids.length === 0) return
    for (const pid of pids) signal(pid, round === 0 ? 'SIGTERM' : 'SIGKILL')
    const deadline = Date.now() + (round === 0 ? graceMs : 500)
    while (Date.now() < deadline && pids.some(processAlive)) await sleep(25)
  }
  const left = await namespacePids(namespace)
  if (left.length > 0)
    throw new Error(`could not end the processes of namespace ${namespace}: ${left.join(', ')} are still running`)
}

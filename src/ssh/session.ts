/**
 * One logged-in SSH connection to a node, and `Session`: what running setup steps needs of it.
 * `connect` in ssh.ts opens an `SshSession`; every command and file transfer is a channel on it.
 */
import {randomBytes} from 'node:crypto'
import {constants as osConstants} from 'node:os'
import {posix} from 'node:path'
import {StringDecoder} from 'node:string_decoder'
import type {Client, ClientChannel} from 'ssh2'
import {asRoot, shellQuote, withEnv, withTimeout} from './shell.js'

export interface ExecOptions {
  stdin?: string | Buffer
  /** Not for secrets: values are part of the command line (see `withEnv`). */
  env?: Record<string, string>
  onOutput?: (chunk: string, stream: 'stdout' | 'stderr') => void
  /** Past this the call rejects with ExecTimeoutError and the node kills the command (see `withTimeout`). */
  timeoutMs?: number
  /** Names the command in errors; the command text itself never appears there (it may carry secrets). */
  label?: string
  /** Override the session's `become` for this command (false: run as the login user). */
  become?: boolean
}

export interface ExecResult {
  /** The exit status; 128 + the signal's number when a signal ended the command. */
  code: number
  signal?: string
  stdout: string
  stderr: string
}

interface RawResult {
  code: number
  signal?: string
  stdout: Buffer
  stderr: Buffer
}

/** A host after OpenSSH's configuration: what is actually connected to, and how. */
export interface ResolvedTarget {
  /** A node of the deployment, or a jump host on the way to one (its host key comes from known_hosts only). */
  kind: 'node' | 'jump host'
  /** The node's name; for a jump host, its name as written in ProxyJump. */
  nodeName: string
  host: string
  port: number
  user: string
  identityFiles: string[]
  identitiesOnly: boolean
  certificateFiles: string[]
  /** UserKnownHostsFile and GlobalKnownHostsFile for this host. */
  knownHostsFiles: string[]
  hostKeyAlias?: string
  /** How the connection to host:port is made when not directly: through a jump host, or a proxy command's stdio. */
  via?: {jump: ResolvedTarget} | {command: string}
}

/**
 * What running setup steps needs of a connection to a node: a command with stdin, its output as it
 * comes and a time limit, and closing the connection. `SshSession` is one; tests use one in memory.
 */
export interface Session {
  exec(command: string, opts?: Pick<ExecOptions, 'stdin' | 'onOutput' | 'timeoutMs' | 'label'>): Promise<ExecResult>
  close(): void
}

export class SshClosedError extends Error {
  override name = 'SshClosedError'
}

export class ExecTimeoutError extends Error {
  override name = 'ExecTimeoutError'
}

/** A command that exited non-zero, from `SshSession.run`. */
export class RemoteCommandError extends Error {
  override name = 'RemoteCommandError'
  constructor(
    message: string,
    readonly result: ExecResult,
  ) {
    super(message)
  }
}

type Described = Pick<ResolvedTarget, 'nodeName' | 'user' | 'host' | 'port'> &
  Partial<Pick<ResolvedTarget, 'kind' | 'via'>>

/** `node app1 (root@10.0.1.5:22 via jump host bastion (admin@203.0.113.7:22))`, for messages. */
export function describeTarget(target: Described): string {
  const route = !target.via
    ? ''
    : 'jump' in target.via
      ? ` via ${describeTarget(target.via.jump)}`
      : ` via ProxyCommand ${target.via.command}`
  return `${target.kind ?? 'node'} ${target.nodeName} (${target.user}@${target.host}:${target.port})${route}`
}

function exitCode(code: number | null | undefined, signal: string | undefined): number {
  if (typeof code === 'number') return code
  const number = signal
    ? (osConstants.signals as Record<string, number>)[`SIG${signal.replace(/^SIG/, '')}`]
    : undefined
  return 128 + (number ?? 0)
}

/** One logged-in connection to a node; every command and file transfer is a channel on it. */
export class SshSession implements Session {
  private closedBy?: Error

  constructor(
    private readonly client: Client,
    readonly target: ResolvedTarget,
    private readonly become: boolean,
    /** What carries the connection (jump host connections, a proxy command): ended with it. */
    private readonly carriers: Array<{end(): void}> = [],
  ) {
    client.on('error', (error: Error) => {
      this.closedBy ??= error
    })
    client.on('close', () => {
      this.closedBy ??= new SshClosedError(`connection to ${describeTarget(this.target)} closed`)
      for (const carrier of this.carriers) carrier.end()
    })
  }

  get closed(): boolean {
    return this.closedBy !== undefined
  }

  /** Run a command; resolves with its exit code and output whatever the code. */
  async exec(command: string, opts: ExecOptions = {}): Promise<ExecResult> {
    const raw = await this.execRaw(command, opts)
    return {
      code: raw.code,
      signal: raw.signal,
      stdout: raw.stdout.toString('utf8'),
      stderr: raw.stderr.toString('utf8'),
    }
  }

  /** Like `exec`, but a non-zero exit is a `RemoteCommandError` with the command's stderr. */
  async run(command: string, opts: ExecOptions = {}): Promise<ExecResult> {
    const result = await this.exec(command, opts)
    if (result.code !== 0) {
      const stderr = result.stderr.trim().split('\n').slice(-20).join('\n')
      throw new RemoteCommandError(
        `${opts.label ?? 'command'} failed on ${describeTarget(this.target)} with exit code ${result.code}${stderr ? `:\n${stderr}` : ''}`,
        result,
      )
    }
    return result
  }

  /** Write a file atomically (a temporary file renamed over it), creating its directory. */
  async upload(path: string, content: string | Buffer, mode = 0o644): Promise<void> {
    const file = shellQuote(path)
    const temporary = shellQuote(`${path}.nodeset-${randomBytes(6).toString('hex')}`)
    const script =
      `if [ -d ${file} ]; then echo ${shellQuote(`${path} is a directory`)} >&2; exit 1; fi; ` +
      `mkdir -p -- ${shellQuote(posix.dirname(path))} && (umask 077 && cat > ${temporary}) && ` +
      `chmod ${mode.toString(8).padStart(4, '0')} ${temporary} && mv -f -- ${temporary} ${file} || { rc=$?; rm -f -- ${temporary}; exit $rc; }`
    const result = await this.execRaw(script, {stdin: content})
    if (result.code !== 0)
      throw new RemoteCommandError(
        `upload of ${path} to ${describeTarget(this.target)} failed: ${result.stderr.toString().trim()}`,
        decode(result),
      )
  }

  async download(path: string): Promise<Buffer> {
    const result = await this.execRaw(`cat -- ${shellQuote(path)}`, {})
    if (result.code !== 0)
      throw new RemoteCommandError(
        `download of ${path} from ${describeTarget(this.target)} failed: ${result.stderr.toString().trim()}`,
        decode(result),
      )
    return result.stdout
  }

  close(): void {
    this.closedBy ??= new SshClosedError(`connection to ${describeTarget(this.target)} was closed by nodeset`)
    this.client.end()
  }

  private execRaw(command: string, opts: ExecOptions): Promise<RawResult> {
    const what = `${opts.label ?? 'command'} on ${describeTarget(this.target)}`
    let line = withEnv(command, opts.env ?? {})
    if (opts.timeoutMs) line = withTimeout(line, opts.timeoutMs)
    if (opts.become ?? this.become) line = asRoot(line, this.target.user)
    return new Promise((resolve, reject) => {
      if (this.closedBy) return reject(new SshClosedError(`cannot run ${what}: ${this.closedBy.message}`))
      this.client.exec(line, (error: Error | undefined, channel: ClientChannel) => {
        if (error) return reject(new SshClosedError(`cannot run ${what}: ${error.message}`))
        collect(channel, opts, what, resolve, reject)
      })
    })
  }
}

function decode(raw: RawResult): ExecResult {
  return {code: raw.code, signal: raw.signal, stdout: raw.stdout.toString('utf8'), stderr: raw.stderr.toString('utf8')}
}

function collect(
  channel: ClientChannel,
  opts: ExecOptions,
  what: string,
  resolve: (r: RawResult) => void,
  reject: (e: Error) => void,
): void {
  const chunks = {stdout: [] as Buffer[], stderr: [] as Buffer[]}
  const decoders = {stdout: new StringDecoder('utf8'), stderr: new StringDecoder('utf8')}
  const onChunk = (stream: 'stdout' | 'stderr') => (chunk: Buffer) => {
    chunks[stream].push(chunk)
    const text = opts.onOutput ? decoders[stream].write(chunk) : ''
    if (text) opts.onOutput!(text, stream)
  }
  let exit: {code: number | null; signal?: string} | undefined
  let timedOut = false
  channel.on('data', onChunk('stdout'))
  channel.stderr.on('data', onChunk('stderr'))
  channel.on('exit', (code: number | null, signal?: string) => {
    exit = {code, signal: signal ?? undefined}
  })
  const timer = opts.timeoutMs
    ? setTimeout(() => {
        timedOut = true
        channel.close()
        reject(new ExecTimeoutError(`${what} did not finish within ${opts.timeoutMs} ms and was stopped`))
      }, opts.timeoutMs)
    : undefined
  channel.on('close', () => {
    clearTimeout(timer)
    if (timedOut) return
    for (const stream of ['stdout', 'stderr'] as const) {
      const rest = opts.onOutput ? decoders[stream].end() : ''
      if (rest) opts.onOutput!(rest, stream)
    }
    if (!exit) return reject(new SshClosedError(`${what}: the connection closed before the command exited`))
    resolve({
      code: exitCode(exit.code, exit.signal),
      signal: exit.signal,
      stdout: Buffer.concat(chunks.stdout),
      stderr: Buffer.concat(chunks.stderr),
    })
  })
  channel.end(opts.stdin)
}

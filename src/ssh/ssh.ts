/**
 * SSH sessions to nodes, with ssh2: one connection per node, reused by every command, file upload
 * and download of a run. Host keys are always verified (see hostkeys.ts); a fresh node whose sshd is
 * still starting is retried with backoff until a deadline, but an authentication or host key failure
 * never is.
 */
import {existsSync, readFileSync} from 'node:fs'
import {randomBytes} from 'node:crypto'
import {constants as osConstants, homedir} from 'node:os'
import {join, posix} from 'node:path'
import {StringDecoder} from 'node:string_decoder'
import {setTimeout as sleep} from 'node:timers/promises'
import ssh2 from 'ssh2'
import type {AgentAuthMethod, ClientChannel, ConnectConfig, PublicKeyAuthMethod, ServerHostKeyAlgorithm} from 'ssh2'
import {
  formatHostKey,
  hostKeyFromBlob,
  HostKeyMismatchError,
  judgeHostKey,
  preferredHostKeyAlgorithms,
  trustedKeysFor,
  UnknownHostKeyError,
  type HostIdentity,
  type HostKey,
  type HostKeyPolicy,
  type HostKeyVerdict,
  type KnownKeys,
} from './hostkeys.js'
import {expandSshPath, readSshConfig, resolveSshConfig, type SshConfigBlock} from './config.js'
import {asRoot, shellQuote, withEnv, withTimeout} from './shell.js'

export {asRoot, shellJoin, shellQuote, withEnv, withTimeout} from './shell.js'

const {Client, utils} = ssh2

export interface SshTarget {
  /** The address to connect to. */
  host: string
  port?: number
  user?: string
  /** The node's name: the key of its pinned host key and the name looked up in ~/.ssh/config. */
  nodeName: string
  privateKeyPath?: string
}

export interface ConnectOptions {
  hostKeys: HostKeyPolicy
  /** Keep retrying a refused or timed-out connection (a node whose sshd is starting) this long. Default 180 s. */
  retryForMs?: number
  /** One attempt's limit for TCP connect, handshake and login. Default 20 s. */
  attemptTimeoutMs?: number
  /** Default ~/.ssh/config; `null` ignores it. */
  sshConfigPath?: string | null
  /** Default $SSH_AUTH_SOCK; `null` uses no agent. */
  agentSocket?: string | null
  /** For `~` and the default keys (~/.ssh/id_ed25519, …). Default the user's home. */
  homeDir?: string
  /** Run every command as root (through `sudo -n` when the login user is not root). Default true. */
  become?: boolean
  onRetry?: (info: {nodeName: string; attempt: number; error: Error; delayMs: number}) => void
}

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

/** The target after ~/.ssh/config: what is actually connected to. */
export interface ResolvedTarget {
  nodeName: string
  host: string
  port: number
  user: string
  identityFiles: string[]
  identitiesOnly: boolean
}

export class SshKeyError extends Error {
  override name = 'SshKeyError'
}

export class SshAuthError extends Error {
  override name = 'SshAuthError'
}

export class SshUnreachableError extends Error {
  override name = 'SshUnreachableError'
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

const describeTarget = (target: {nodeName: string; user: string; host: string; port: number}): string =>
  `node ${target.nodeName} (${target.user}@${target.host}:${target.port})`

/**
 * nodeset's values win; ~/.ssh/config fills the rest. Its HostName applies only when the target's
 * address is the node's name itself (a static host listed without an address).
 */
export function resolveTarget(target: SshTarget, config: SshConfigBlock[], homeDir = homedir()): ResolvedTarget {
  const fromConfig = resolveSshConfig(config, [...new Set([target.nodeName, target.host])])
  const host =
    target.host === target.nodeName && fromConfig.hostName
      ? fromConfig.hostName.replace(/%h/g, target.nodeName)
      : target.host
  const user = target.user ?? fromConfig.user ?? 'root'
  const tokens = {home: homeDir, host, alias: target.nodeName, remoteUser: user}
  const identityFiles = [...(target.privateKeyPath ? [target.privateKeyPath] : []), ...fromConfig.identityFiles].map(
    (path) => expandSshPath(path, tokens),
  )
  return {
    nodeName: target.nodeName,
    host,
    port: target.port ?? fromConfig.port ?? 22,
    user,
    identityFiles: [...new Set(identityFiles)],
    identitiesOnly: fromConfig.identitiesOnly ?? false,
  }
}

type AuthMethod = PublicKeyAuthMethod | AgentAuthMethod

interface AuthPlan {
  methods: AuthMethod[]
  /** What is tried, for the error that says what to fix: paths and "ssh-agent", never key material. */
  tried: string[]
  skipped: string[]
}

/** The keys to offer: the explicit key, then IdentityFile keys, then the agent, then the default keys. */
export function planAuth(
  target: ResolvedTarget,
  explicitKey: string | undefined,
  agentSocket: string | null,
  homeDir: string,
): AuthPlan {
  const plan: AuthPlan = {methods: [], tried: [], skipped: []}
  const addKeyFile = (path: string, required: boolean): void => {
    if (!existsSync(path)) {
      if (required)
        throw new SshKeyError(
          `SSH key ${path} for ${describeTarget(target)} does not exist: fix ssh_key in the nodeset file`,
        )
      return
    }
    const key = readFileSync(path)
    const parsed = utils.parseKey(key)
    if (parsed instanceof Error) {
      const why = /encrypted/i.test(parsed.message)
        ? 'is protected by a passphrase'
        : `cannot be read (${parsed.message})`
      if (required)
        throw new SshKeyError(
          `SSH key ${path} ${why}: load it into ssh-agent (ssh-add ${path}) and leave ssh_key unset, or use a key without a passphrase`,
        )
      plan.skipped.push(`${path} (${why})`)
      return
    }
    plan.methods.push({type: 'publickey', username: target.user, key})
    plan.tried.push(path)
  }
  const explicit = explicitKey ? target.identityFiles[0] : undefined
  for (const path of target.identityFiles) addKeyFile(path, path === explicit)
  if (agentSocket && !(target.identitiesOnly && plan.methods.length > 0)) {
    if (existsSync(agentSocket)) {
      plan.methods.push({type: 'agent', username: target.user, agent: agentSocket})
      plan.tried.push('ssh-agent')
    } else plan.skipped.push(`ssh-agent (${agentSocket} does not exist)`)
  }
  if (target.identityFiles.length === 0) {
    for (const name of ['id_ed25519', 'id_ecdsa', 'id_rsa']) addKeyFile(join(homeDir, '.ssh', name), false)
  }
  if (plan.methods.length === 0) {
    throw new SshKeyError(
      `No SSH key to log in to ${describeTarget(target)}${plan.skipped.length ? ` (skipped: ${plan.skipped.join(', ')})` : ''}: ` +
        'set ssh_key in the nodeset file, add an IdentityFile for it to ~/.ssh/config, or start ssh-agent and ssh-add a key',
    )
  }
  return plan
}

const RETRYABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'EPIPE',
  'EAI_AGAIN',
])

class ClosedBeforeReadyError extends Error {}

function isRetryable(error: Error & {code?: string; level?: string}): boolean {
  return (
    error instanceof ClosedBeforeReadyError || RETRYABLE_CODES.has(error.code ?? '') || error.level === 'client-timeout'
  )
}

const DEFAULT_HOST_KEY_ALGORITHMS: ServerHostKeyAlgorithm[] = [
  'ssh-ed25519',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'rsa-sha2-512',
  'rsa-sha2-256',
  'ssh-rsa',
]

interface Attempt {
  client: InstanceType<typeof Client>
  verdict: Extract<HostKeyVerdict, {accept: true}>
}

/** One connection attempt: resolves once logged in, with the verdict on the host key. */
function attemptConnection(
  target: ResolvedTarget,
  auth: AuthPlan,
  policy: HostKeyPolicy,
  timeoutMs: number,
): Promise<Attempt> {
  const identity: HostIdentity = {nodeName: target.nodeName, address: target.host, port: target.port}
  const known: KnownKeys = trustedKeysFor(policy, identity)
  const trustOnFirstUse = policy.mode === 'static' && policy.trustOnFirstUse === true
  const preferred = preferredHostKeyAlgorithms(known.trusted.map(({key}) => key)) as ServerHostKeyAlgorithm[]
  let verdict: HostKeyVerdict | undefined
  let hostKeyError: Error | undefined

  return new Promise((resolve, reject) => {
    const client = new Client()
    let settled = false
    const fail = (error: Error): void => {
      if (settled) return
      settled = true
      client.end()
      reject(hostKeyError ?? error)
    }
    client.on('ready', () => {
      if (settled) return
      // Defence in depth: a session is only ever handed out for a key judged acceptable.
      if (!verdict?.accept) return fail(new Error(`the host key of ${describeTarget(target)} was not verified`))
      settled = true
      resolve({client, verdict})
    })
    client.on('error', fail)
    client.on('close', () =>
      fail(new ClosedBeforeReadyError(`connection to ${describeTarget(target)} closed before login`)),
    )

    const config: ConnectConfig = {
      host: target.host,
      port: target.port,
      username: target.user,
      readyTimeout: timeoutMs,
      keepaliveInterval: 15_000,
      keepaliveCountMax: 4,
      algorithms: {serverHostKey: [...preferred, ...DEFAULT_HOST_KEY_ALGORITHMS.filter((a) => !preferred.includes(a))]},
      hostVerifier: (blob: Buffer): boolean => {
        let offered: HostKey
        try {
          offered = hostKeyFromBlob(blob)
        } catch (error) {
          hostKeyError = error as Error
          return false
        }
        verdict = judgeHostKey(offered, known, trustOnFirstUse)
        if (verdict.accept) return true
        hostKeyError =
          verdict.reason === 'unknown'
            ? new UnknownHostKeyError(identity, offered, known, policy)
            : new HostKeyMismatchError(identity, offered, known, policy, verdict.reason === 'revoked')
        return false
      },
      authHandler: auth.methods,
    }
    try {
      client.connect(config)
    } catch (error) {
      fail(error as Error)
    }
  })
}

/** Connect to a node, retrying while its sshd is not up yet; the host key is verified by `opts.hostKeys`. */
export async function connect(target: SshTarget, opts: ConnectOptions): Promise<SshSession> {
  const homeDir = opts.homeDir ?? homedir()
  const configPath = opts.sshConfigPath === undefined ? join(homeDir, '.ssh', 'config') : opts.sshConfigPath
  const resolved = resolveTarget(target, configPath ? readSshConfig(configPath) : [], homeDir)
  const agentSocket = opts.agentSocket === undefined ? (process.env.SSH_AUTH_SOCK ?? null) : opts.agentSocket
  const auth = planAuth(resolved, target.privateKeyPath, agentSocket, homeDir)
  const retryForMs = opts.retryForMs ?? 180_000
  const deadline = Date.now() + retryForMs
  for (let attempt = 1; ; attempt++) {
    const remaining = deadline - Date.now()
    try {
      const {client, verdict} = await attemptConnection(
        resolved,
        auth,
        opts.hostKeys,
        Math.max(1000, Math.min(opts.attemptTimeoutMs ?? 20_000, remaining)),
      )
      if (verdict.source === 'trust-on-first-use')
        opts.hostKeys.store.pin(resolved.nodeName, resolved.host, [formatHostKey(verdict.key)], resolved.port)
      return new SshSession(client, resolved, opts.become ?? true)
    } catch (error) {
      const err = error as Error & {level?: string}
      const tooManyKeys = /too many authentication failures/i.test(err.message)
      if (err.level === 'client-authentication' || tooManyKeys) {
        throw new SshAuthError(
          `Login to ${describeTarget(resolved)} failed; tried ${auth.tried.join(', ')}${auth.skipped.length ? ` (skipped ${auth.skipped.join(', ')})` : ''}. ` +
            (tooManyKeys
              ? 'The server stopped after too many keys: set ssh_key to the right one, or IdentitiesOnly yes in ~/.ssh/config. '
              : '') +
            `Check ssh_user and ssh_key, and that the public key is in ~${resolved.user}/.ssh/authorized_keys on the node.`,
        )
      }
      if ((err as {code?: string}).code === 'ENOTFOUND') {
        throw new SshUnreachableError(
          `Cannot resolve ${resolved.host} for ${describeTarget(resolved)}: give the node's address in the nodeset file, or a HostName for it in ~/.ssh/config.`,
        )
      }
      if (!isRetryable(err)) throw err
      const left = deadline - Date.now()
      if (left <= 0) {
        throw new SshUnreachableError(
          `Cannot reach ${describeTarget(resolved)} after ${attempt} attempts in ${Math.round(retryForMs / 1000)} s: ${err.message}. ` +
            'Check the address and port, that sshd runs on the node and that a firewall or security group lets you in.',
        )
      }
      const delayMs = Math.min(left, Math.min(5000, 250 * 2 ** Math.min(attempt - 1, 5)) * (0.8 + Math.random() * 0.4))
      opts.onRetry?.({nodeName: resolved.nodeName, attempt, error: err, delayMs})
      await sleep(delayMs)
    }
  }
}

function exitCode(code: number | null | undefined, signal: string | undefined): number {
  if (typeof code === 'number') return code
  const number = signal
    ? (osConstants.signals as Record<string, number>)[`SIG${signal.replace(/^SIG/, '')}`]
    : undefined
  return 128 + (number ?? 0)
}

/** One logged-in connection to a node; every command and file transfer is a channel on it. */
export class SshSession {
  private closedBy?: Error

  constructor(
    private readonly client: InstanceType<typeof Client>,
    readonly target: ResolvedTarget,
    private readonly become: boolean,
  ) {
    client.on('error', (error: Error) => {
      this.closedBy ??= error
    })
    client.on('close', () => {
      this.closedBy ??= new SshClosedError(`connection to ${describeTarget(this.target)} closed`)
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

/**
 * One session per node for a whole run: every step asks the pool, which connects a node once
 * (concurrent asks share the attempt) and again only if its connection was lost.
 */
export class SessionPool {
  private readonly sessions = new Map<string, Promise<SshSession>>()

  constructor(private readonly options: ConnectOptions) {}

  get(target: SshTarget): Promise<SshSession> {
    const existing = this.sessions.get(target.nodeName)
    if (existing) {
      return existing.then((session) => (session.closed ? this.open(target) : session))
    }
    return this.open(target)
  }

  async closeAll(): Promise<void> {
    const pending = [...this.sessions.values()]
    this.sessions.clear()
    for (const result of await Promise.allSettled(pending)) if (result.status === 'fulfilled') result.value.close()
  }

  private open(target: SshTarget): Promise<SshSession> {
    const session = connect(target, this.options)
    this.sessions.set(target.nodeName, session)
    // A failed attempt is not kept: the next ask tries again.
    session.catch(() => {
      if (this.sessions.get(target.nodeName) === session) this.sessions.delete(target.nodeName)
    })
    return session
  }
}

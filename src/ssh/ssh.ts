/**
 * Connecting to nodes over SSH, with ssh2: one connection per node (an `SshSession`, session.ts),
 * reused by every command, file upload and download of a run. OpenSSH's own configuration says how a
 * node is reached (config.ts: `ssh -G`), through jump hosts (ProxyJump: a channel forwarded by each
 * one) or a proxy command (its stdin and stdout). Host keys are always verified, at every hop (see
 * hostkeys.ts); a fresh node whose sshd is still starting is retried with backoff until a deadline,
 * but an authentication or host key failure never is.
 */
import {spawn} from 'node:child_process'
import {homedir} from 'node:os'
import {Duplex} from 'node:stream'
import {setTimeout as sleep} from 'node:timers/promises'
import ssh2 from 'ssh2'
import type {ConnectConfig, ServerHostKeyAlgorithm} from 'ssh2'
import {enableCertificates} from './certificate.js'
import {defaultSshConfigPath, type SshConfigSource} from './config.js'
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
  type HostKeyCheck,
  type HostKeyPolicy,
  type HostKeyVerdict,
  type KnownKeys,
} from './hostkeys.js'
import {planAuth, resolveTarget, type AuthPlan, type SshTarget} from './login.js'
import {describeTarget, SshSession, type ResolvedTarget} from './session.js'

export {planAuth, resolveTarget, SshKeyError, type SshTarget} from './login.js'
export {SshConfigError} from './config.js'

export {asRoot, shellJoin, shellQuote, withEnv, withTimeout} from './shell.js'
export {
  ExecTimeoutError,
  RemoteCommandError,
  SshClosedError,
  SshSession,
  type ExecOptions,
  type ExecResult,
  type ResolvedTarget,
  type Session,
} from './session.js'

const {Client} = ssh2
type SshClient = InstanceType<typeof Client>

export interface ConnectOptions {
  hostKeys: HostKeyPolicy
  /** Keep retrying a refused or timed-out connection (a node whose sshd is starting) this long. Default 180 s. */
  retryForMs?: number
  /** One attempt's limit for TCP connect, handshake and login, per host on the way. Default 20 s. */
  attemptTimeoutMs?: number
  /**
   * OpenSSH's configuration: by default ~/.ssh/config and then /etc/ssh/ssh_config; a path reads that
   * file alone (as `ssh -F PATH`); `null` reads none.
   */
  sshConfigPath?: string | null
  /** The ssh binary that evaluates the configuration (`ssh -G`). Default `ssh`. */
  sshBinary?: string
  /** Default $SSH_AUTH_SOCK; `null` uses no agent. */
  agentSocket?: string | null
  /** For `~` and the default keys (~/.ssh/id_ed25519, …). Default the user's home. */
  homeDir?: string
  /** Run every command as root (through `sudo -n` when the login user is not root). Default true. */
  become?: boolean
  onRetry?: (info: {nodeName: string; attempt: number; error: Error; delayMs: number}) => void
}

export class SshAuthError extends Error {
  override name = 'SshAuthError'
}

export class SshUnreachableError extends Error {
  override name = 'SshUnreachableError'
}

/** A jump host could not open the connection onward (the node's sshd may not be up yet): retried. */
export class JumpForwardError extends Error {
  override name = 'JumpForwardError'
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
    error instanceof ClosedBeforeReadyError ||
    error instanceof JumpForwardError ||
    /^Connection lost before handshake/.test(error.message) ||
    RETRYABLE_CODES.has(error.code ?? '') ||
    error.level === 'client-timeout'
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
  client: SshClient
  verdict: Extract<HostKeyVerdict, {accept: true}>
}

/** A stream the connection runs over instead of TCP, with what to say when it ends early. */
interface Carrier {
  stream: Duplex
  /** Why it ended, once it has (waits a little for a proxy command to exit and say why). */
  detail?: () => Promise<string>
}

/** One connection attempt to one host: resolves once logged in, with the verdict on the host key. */
function attemptConnection(
  target: ResolvedTarget,
  auth: AuthPlan,
  check: HostKeyCheck,
  timeoutMs: number,
  carrier?: Carrier,
): Promise<Attempt> {
  const identity: HostIdentity = {
    nodeName: target.nodeName,
    address: target.host,
    port: target.port,
    hostKeyAlias: target.hostKeyAlias,
    knownHostsFiles: target.knownHostsFiles,
  }
  const known: KnownKeys = trustedKeysFor(check, identity)
  const trustOnFirstUse = check.mode === 'static' && check.trustOnFirstUse === true
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
      const why = hostKeyError ?? explain(error, target, auth)
      if (!carrier?.detail || why !== error) {
        carrier?.stream.destroy()
        return reject(why)
      }
      // The carrier ended first: say why (a proxy command's exit and last words).
      void carrier.detail().then((detail) => {
        carrier.stream.destroy()
        error.message += ` (${detail})`
        reject(error)
      })
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
      sock: carrier?.stream,
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
            ? new UnknownHostKeyError(identity, offered, known, check)
            : new HostKeyMismatchError(identity, offered, known, check, verdict.reason === 'revoked')
        return false
      },
      authHandler: auth.methods,
    }
    try {
      client.connect(config)
      if (auth.certificates) enableCertificates(client)
    } catch (error) {
      fail(error as Error)
    }
  })
}

/** An authentication or name failure, said with the host it happened at (a node or a jump host). */
function explain(error: Error & {level?: string; code?: string}, target: ResolvedTarget, auth: AuthPlan): Error {
  const tooManyKeys = /too many authentication failures/i.test(error.message)
  if (error.level === 'client-authentication' || tooManyKeys) {
    const fix =
      target.kind === 'node'
        ? `Check ssh_user and ssh_key, and that the public key is in ~${target.user}/.ssh/authorized_keys on the node.`
        : `Give the jump host its User and IdentityFile in ~/.ssh/config (or add its key to ssh-agent), as plain ssh would need.`
    return new SshAuthError(
      `Login to ${describeTarget(target)} failed; tried ${auth.tried.join(', ')}${auth.skipped.length ? ` (skipped ${auth.skipped.join(', ')})` : ''}. ` +
        (tooManyKeys
          ? 'The server stopped after too many keys: set ssh_key to the right one, or IdentitiesOnly yes in ~/.ssh/config. '
          : '') +
        fix,
    )
  }
  if (error.code === 'ENOTFOUND')
    return new SshUnreachableError(
      target.kind === 'node'
        ? `Cannot resolve ${target.host} for ${describeTarget(target)}: give the node's address in the nodeset file, or a HostName for it in ~/.ssh/config.`
        : `Cannot resolve ${target.host} for ${describeTarget(target)}: give it a HostName in ~/.ssh/config.`,
    )
  return error
}

/** A channel from the jump host to host:port, to run the next connection over. */
function forward(jump: SshClient, jumpTarget: ResolvedTarget, target: ResolvedTarget): Promise<Carrier> {
  return new Promise((resolve, reject) => {
    jump.forwardOut('127.0.0.1', 0, target.host, target.port, (error, stream) => {
      if (error)
        return reject(
          new JumpForwardError(
            `${describeTarget(jumpTarget)} could not connect onward to ${target.host}:${target.port}: ${error.message}`,
          ),
        )
      resolve({stream})
    })
  })
}

/** A ProxyCommand, run by the shell as OpenSSH runs it; its stdin and stdout carry the connection. */
function proxyCommand(command: string): Carrier & {end(): void} {
  const child = spawn(process.env.SHELL || '/bin/sh', ['-c', `exec ${command}`], {stdio: ['pipe', 'pipe', 'pipe']})
  let stderr = ''
  child.stderr.setEncoding('utf8')
  child.stderr.on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-2000)
  })
  const stream = Duplex.from({readable: child.stdout, writable: child.stdin})
  child.on('error', (error) => stream.destroy(error))
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()))
  return {
    stream,
    detail: async () => {
      await Promise.race([exited, sleep(1000)])
      const last = stderr.trim().split('\n').pop()
      const status = child.exitCode !== null ? `ProxyCommand exited with ${child.exitCode}` : 'ProxyCommand'
      return last ? `${status}: ${last}` : status
    },
    end: () => {
      stream.destroy()
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGHUP')
    },
  }
}

/**
 * Reach a host along its route: each jump host logged in to (its key checked against known_hosts)
 * and asked for a channel onward, or a proxy command started. What carries the connection is added
 * to `carriers`, to be ended with it.
 */
async function reach(
  target: ResolvedTarget,
  check: HostKeyCheck,
  auths: Map<ResolvedTarget, AuthPlan>,
  timeoutMs: number,
  carriers: Array<{end(): void}>,
): Promise<Attempt> {
  let carrier: Carrier | undefined
  if (target.via && 'jump' in target.via) {
    const jump = target.via.jump
    const hop = await reach(jump, {mode: 'known-hosts'}, auths, timeoutMs, carriers)
    carriers.push(hop.client)
    carrier = await forward(hop.client, jump, target)
  } else if (target.via) {
    const proxy = proxyCommand(target.via.command)
    carriers.push(proxy)
    carrier = proxy
  }
  return attemptConnection(target, auths.get(target)!, check, timeoutMs, carrier)
}

/** Where OpenSSH's configuration comes from, for these options. */
export function sshConfigSource(
  opts: Pick<ConnectOptions, 'sshConfigPath' | 'sshBinary' | 'homeDir'>,
): SshConfigSource {
  if (opts.sshConfigPath === null) return {path: null, system: false, ssh: opts.sshBinary}
  if (opts.sshConfigPath === undefined)
    return {path: defaultSshConfigPath(opts.homeDir ?? homedir()), system: true, ssh: opts.sshBinary}
  return {path: opts.sshConfigPath, system: false, ssh: opts.sshBinary}
}

/** Connect to a node, retrying while its sshd is not up yet; every host key on the way is verified. */
export async function connect(target: SshTarget, opts: ConnectOptions): Promise<SshSession> {
  const homeDir = opts.homeDir ?? homedir()
  const resolved = await resolveTarget(target, {config: sshConfigSource(opts), homeDir})
  const agentSocket = opts.agentSocket === undefined ? (process.env.SSH_AUTH_SOCK ?? null) : opts.agentSocket
  // Every host's keys are planned before anything connects, so a missing key is said at once.
  const auths = new Map<ResolvedTarget, AuthPlan>([
    [resolved, planAuth(resolved, target.privateKeyPath, agentSocket, homeDir)],
  ])
  for (let hop = resolved.via; hop && 'jump' in hop; hop = hop.jump.via)
    auths.set(hop.jump, planAuth(hop.jump, undefined, agentSocket, homeDir))
  const retryForMs = opts.retryForMs ?? 180_000
  const deadline = Date.now() + retryForMs
  for (let attempt = 1; ; attempt++) {
    const remaining = deadline - Date.now()
    const carriers: Array<{end(): void}> = []
    try {
      const {client, verdict} = await reach(
        resolved,
        opts.hostKeys,
        auths,
        Math.max(1000, Math.min(opts.attemptTimeoutMs ?? 20_000, remaining)),
        carriers,
      )
      if (verdict.source === 'trust-on-first-use')
        opts.hostKeys.store.pin(resolved.nodeName, resolved.host, [formatHostKey(verdict.key)], resolved.port)
      return new SshSession(client, resolved, opts.become ?? true, carriers.reverse())
    } catch (error) {
      for (const carrier of carriers.reverse()) carrier.end()
      const err = error as Error & {level?: string}
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

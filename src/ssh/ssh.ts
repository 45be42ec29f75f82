/**
 * Connecting to nodes over SSH, with ssh2: one connection per node (an `SshSession`, session.ts),
 * reused by every command, file upload and download of a run. OpenSSH's own configuration says how a
 * node is reached (config.ts: `ssh -G`; login.ts), through jump hosts (ProxyJump) or a proxy command;
 * one attempt along that route is attempt.ts. Host keys are always verified, at every hop (see
 * hostkeys.ts); a fresh node whose sshd is still starting is retried with backoff until a deadline,
 * but an authentication or host key failure never is.
 */
import {homedir} from 'node:os'
import {setTimeout as sleep} from 'node:timers/promises'
import {isRetryable, reach, SshUnreachableError} from './attempt.js'
import {defaultSshConfigPath, type SshConfigSource} from './config.js'
import {formatHostKey, type HostKeyPolicy} from './hostkeys.js'
import {planAuth, resolveTarget, type AuthPlan, type SshTarget} from './login.js'
import {describeTarget, SshSession, type ResolvedTarget} from './session.js'

export {JumpForwardError, SshAuthError, SshUnreachableError} from './attempt.js'
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

/**
 * One attempt to reach a host and log in, along its route: through each jump host (logged in to,
 * its key checked against known_hosts, then asked for a channel onward that carries the next
 * connection) or a proxy command's stdio. Every host key on the way is judged during its key
 * exchange, before anything is sent; what fails says at which host, and whether trying again helps.
 */
import {spawn} from 'node:child_process'
import {Duplex} from 'node:stream'
import {setTimeout as sleep} from 'node:timers/promises'
import ssh2 from 'ssh2'
import type {ConnectConfig, ServerHostKeyAlgorithm} from 'ssh2'
import {enableCertificates} from './certificate.js'
import {JumpForwardError, SshAuthError, SshUnreachableError} from './errors.js'
import {
  hostKeyFromBlob,
  HostKeyMismatchError,
  judgeHostKey,
  preferredHostKeyAlgorithms,
  trustedKeysFor,
  UnknownHostKeyError,
  type HostIdentity,
  type HostKey,
  type HostKeyCheck,
  type HostKeyVerdict,
  type KnownKeys,
} from './hostkeys.js'
import type {AuthPlan} from './login.js'
import {describeTarget, type ResolvedTarget} from './session.js'

const {Client} = ssh2
export type SshClient = InstanceType<typeof Client>

export {JumpForwardError, SshAuthError, SshUnreachableError} from './errors.js'

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

export function isRetryable(error: Error & {code?: string; level?: string}): boolean {
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

export interface Attempt {
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
export async function reach(
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

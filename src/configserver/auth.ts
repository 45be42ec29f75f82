/**
 * Tokens and who holds them. Tokens are 32 random bytes (base64url); the server keeps only their
 * SHA-256 and compares hashes in constant time. Repeated failures from one address are refused
 * for a while (429), so tokens cannot be guessed at network speed.
 *
 * An instance starts with a bootstrap token (from registration, carried in its user data, which any
 * process on the node can read). Its first phone-home exchanges it for a node token that only the
 * agent keeps; from then on the bootstrap token is refused, except for a retried phone-home whose
 * answer was lost (see `bootstrapUse`).
 */
import {createHash, randomBytes, timingSafeEqual} from 'node:crypto'
import fs from 'node:fs/promises'
import path from 'node:path'

export const newToken = (): string => randomBytes(32).toString('base64url')

export const hashToken = (token: string): Buffer => createHash('sha256').update(token).digest()

export function sameHash(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b)
}

/** How long after the exchange a retried phone-home may still use the bootstrap token (default). */
export const EXCHANGE_GRACE_MS = 10 * 60_000

export const EXCHANGED_MESSAGE = 'this bootstrap token was exchanged; use the node token stored on the node'
export const EXCHANGED_HINT =
  'the agent keeps it in /var/lib/nodeset/token; a node that lost it needs new tokens: recreate it (nodeset create-node)'

/** Where an instance's tokens stand: the exchange time and the node token's first use (epoch ms). */
export interface ExchangeState {
  exchangedAt?: number
  nodeTokenUsedAt?: number
}

/**
 * What a phone-home with the bootstrap token does: exchange it for a node token, or exchange it again
 * (the answer that carried the node token was lost: only its hash is kept, so it cannot be sent twice;
 * a new one replaces it), or nothing but a 401. The retry is allowed only within `graceMs` of the
 * exchange and only while the node token is unused: once the node has proved it holds the node token,
 * the bootstrap token is dead.
 */
export function bootstrapUse(
  state: ExchangeState,
  now: number,
  graceMs = EXCHANGE_GRACE_MS,
): 'exchange' | 'exchange again' | 'refuse' {
  if (state.exchangedAt === undefined) return 'exchange'
  if (state.nodeTokenUsedAt === undefined && now - state.exchangedAt < graceMs) return 'exchange again'
  return 'refuse'
}

/** The token of an `Authorization: Bearer …` header, if well formed. */
export function bearerToken(header: string | undefined): string | undefined {
  const match = /^Bearer ([A-Za-z0-9._~+/=-]{16,512})$/.exec(header ?? '')
  return match?.[1]
}

/**
 * The admin token: the one given, or the one kept in `file`, or a new one written there (mode 0600)
 * so that a restart keeps it.
 */
export async function adminTokenFrom(given: string | undefined, file: string): Promise<string> {
  if (given !== undefined) {
    if (given.length < 16)
      throw new Error('the admin token must be at least 16 characters; leave it out to have one generated')
    return given
  }
  try {
    const stat = await fs.stat(file)
    if ((stat.mode & 0o077) !== 0) throw new Error(`${file} can be read by other users; run: chmod 600 ${file}`)
    const stored = (await fs.readFile(file, 'utf8')).trim()
    if (stored.length >= 16) return stored
    throw new Error(
      `${file} holds no usable admin token (at least 16 characters); delete it to have a new one generated`,
    )
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
  }
  const token = newToken()
  await fs.mkdir(path.dirname(file), {recursive: true, mode: 0o700})
  await fs.writeFile(file, token + '\n', {mode: 0o600, flag: 'wx'})
  return token
}

/** Counts authentication failures per peer address; past the limit the address waits. */
export class AuthFailureLimiter {
  private readonly peers = new Map<string, {failures: number; since: number; blockedUntil: number}>()

  constructor(
    readonly limit = 20,
    readonly windowMs = 60_000,
  ) {}

  /** Seconds the peer must still wait, or 0. */
  retryAfter(peer: string, now: number): number {
    const entry = this.peers.get(peer)
    if (!entry || entry.blockedUntil <= now) return 0
    return Math.ceil((entry.blockedUntil - now) / 1000)
  }

  fail(peer: string, now: number): void {
    let entry = this.peers.get(peer)
    if (!entry || now - entry.since > this.windowMs) {
      if (this.peers.size > 100_000) this.prune(now)
      entry = {failures: 0, since: now, blockedUntil: 0}
      this.peers.set(peer, entry)
    }
    entry.failures++
    if (entry.failures >= this.limit) entry.blockedUntil = now + this.windowMs
  }

  private prune(now: number): void {
    for (const [peer, entry] of this.peers)
      if (now - entry.since > this.windowMs && entry.blockedUntil <= now) this.peers.delete(peer)
  }
}

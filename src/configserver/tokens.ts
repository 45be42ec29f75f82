/**
 * Tokens and who holds them. Tokens are 32 random bytes (base64url); the server keeps only their
 * SHA-256 and compares hashes in constant time.
 *
 * An instance starts with a bootstrap token (from registration, carried in its user data, which any
 * process on the node can read). Its first phone-home exchanges it for a node token that only the
 * agent keeps; from then on the bootstrap token is refused, except for a retried phone-home whose
 * answer was lost (see `bootstrapUse`).
 */
import crypto, {createHash, randomFillSync, timingSafeEqual} from 'node:crypto'
import fs from 'node:fs/promises'
import path from 'node:path'

/** Random bytes drawn 4 KiB at a time: one call into the CSPRNG per 128 tokens, not one per token. */
const pool = Buffer.alloc(4096)
let drawn = pool.length

export function newToken(): string {
  if (drawn + 32 > pool.length) {
    randomFillSync(pool)
    drawn = 0
  }
  const token = pool.toString('base64url', drawn, drawn + 32)
  // A token's bytes do not stay behind in memory once it is made.
  pool.fill(0, drawn, drawn + 32)
  drawn += 32
  return token
}

/**
 * One-shot SHA-256 (crypto.hash, Node 20.12+; a Hash object before): the same digest, without a Hash
 * object per token. Asked for as hex and decoded, because a digest asked for as a buffer gets its own
 * memory outside the buffer pool, which costs more than the hash (every request hashes its token).
 */
const sha256: (data: string) => Buffer =
  typeof crypto.hash === 'function'
    ? (data) => Buffer.from(crypto.hash('sha256', data, 'hex'), 'hex')
    : (data) => createHash('sha256').update(data).digest()

export const hashToken = (token: string): Buffer => sha256(token)

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

/** What a token may be made of: what `Authorization: Bearer` carries (RFC 6750 token68), 16 to 512 characters. */
export const TOKEN_PATTERN = /^[A-Za-z0-9._~+/=-]{16,512}$/
export const TOKEN_RULE = '16 to 512 characters of A-Z a-z 0-9 . _ ~ + / = -'

/** The token of an `Authorization: Bearer …` header, if well formed. */
export function bearerToken(header: string | undefined): string | undefined {
  const match = /^Bearer (\S+)$/.exec(header ?? '')
  return match && TOKEN_PATTERN.test(match[1]) ? match[1] : undefined
}

/** Why `token` cannot serve as the admin token (the Bearer parser would refuse it), or undefined. */
export function adminTokenProblem(token: string): string | undefined {
  if (TOKEN_PATTERN.test(token)) return undefined
  return `the admin token must be ${TOKEN_RULE} (what an "Authorization: Bearer" header can carry)`
}

/**
 * The admin token: the one given, or the one kept in `file`, or a new one written there (mode 0600)
 * so that a restart keeps it. A token no request could present is refused here, not at every request.
 */
export async function adminTokenFrom(given: string | undefined, file: string): Promise<string> {
  if (given !== undefined) {
    const problem = adminTokenProblem(given)
    if (problem) throw new Error(`${problem}; leave it out to have one generated`)
    return given
  }
  try {
    const stat = await fs.stat(file)
    if ((stat.mode & 0o077) !== 0) throw new Error(`${file} can be read by other users; run: chmod 600 ${file}`)
    const stored = (await fs.readFile(file, 'utf8')).trim()
    const problem = adminTokenProblem(stored)
    if (problem === undefined) return stored
    throw new Error(`${file} holds no usable admin token: ${problem}; fix it, or delete it to have a new one generated`)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
  }
  const token = newToken()
  await fs.mkdir(path.dirname(file), {recursive: true, mode: 0o700})
  await fs.writeFile(file, token + '\n', {mode: 0o600, flag: 'wx'})
  return token
}

/** An instance a token belongs to. */
export interface TokenHolder {
  deployment: string
  id: string
}

/** The hashes an instance's tokens have: the bootstrap token's, and the node token's once exchanged. */
export interface TokenHashes {
  id: string
  tokenHash: Buffer
  nodeTokenHash?: Buffer
}

/** sha256(token) → the instance it belongs to, bootstrap and node tokens alike. */
export class TokenIndex {
  private readonly holders = new Map<string, TokenHolder>()

  holder(hash: Buffer): TokenHolder | undefined {
    return this.holders.get(hash.toString('hex'))
  }

  add(deployment: string, instance: TokenHashes): void {
    for (const hash of hashesOf(instance)) this.holders.set(hash.toString('hex'), {deployment, id: instance.id})
  }

  drop(instance: TokenHashes): void {
    for (const hash of hashesOf(instance)) this.holders.delete(hash.toString('hex'))
  }

  /** After an exchange: `next` works for the instance, `previous` (a lost answer's node token) no longer. */
  replace(deployment: string, id: string, previous: Buffer | undefined, next: Buffer): void {
    if (previous) this.holders.delete(previous.toString('hex'))
    this.holders.set(next.toString('hex'), {deployment, id})
  }

  get size(): number {
    return this.holders.size
  }
}

const hashesOf = (instance: TokenHashes): Buffer[] =>
  instance.nodeTokenHash ? [instance.tokenHash, instance.nodeTokenHash] : [instance.tokenHash]

/**
 * Who sends a request: a fastify plugin that, before the body is read, checks the token the route
 * asks for (`config.auth`: 'admin' or 'instance') and sets `request.caller`. An instance token reaches
 * only its own instance's routes; the admin token reaches every route. Repeated failures of one
 * credential, or against one target, from one address are answered 429 for a while (ratelimit.ts,
 * `failureKeys`); a valid token is never limited, so nodes sharing a NAT address with a guesser or
 * a misconfigured neighbour keep working. Tokens have 256 random bits: the limit is backpressure on a
 * misbehaving client, not what keeps tokens from being guessed.
 *
 * The token primitives are in tokens.ts (re-exported here, where callers found them before).
 */
import type {FastifyPluginAsync, FastifyRequest} from 'fastify'
import {HttpError} from './errors.js'
import {ids, type ServerContext} from './http.js'
import type {AuthFailureLimiter} from './ratelimit.js'
import {
  bearerToken,
  bootstrapUse,
  type ExchangeState,
  EXCHANGED_HINT,
  EXCHANGED_MESSAGE,
  hashToken,
  sameHash,
  type TokenHashes,
  type TokenIndex,
} from './tokens.js'

export {
  adminTokenFrom,
  bearerToken,
  bootstrapUse,
  EXCHANGE_GRACE_MS,
  EXCHANGED_HINT,
  EXCHANGED_MESSAGE,
  type ExchangeState,
  hashToken,
  newToken,
  sameHash,
} from './tokens.js'
export {AuthFailureLimiter} from './ratelimit.js'

/** An instance authenticates with its bootstrap token until the first phone-home exchanges it, then with its node token. */
export type Caller = {kind: 'admin'} | {kind: 'instance'; deployment: string; id: string; token: 'bootstrap' | 'node'}

/** Why a token opens nothing: none (or malformed), unknown, or a bootstrap token already exchanged. */
export type Refusal = {refused: 'missing' | 'invalid' | 'exchanged'}

declare module 'fastify' {
  interface FastifyRequest {
    /** Who sent the request, on routes with `config.auth` (set before the body is read). */
    caller: Caller | null
  }
  interface FastifyContextConfig {
    /** The token the route needs: the admin's, or the instance's of the path (the admin's works too). */
    auth?: 'admin' | 'instance'
    /** The phone-home route: a bootstrap token may be exchanged (again, within the grace). */
    exchange?: boolean
  }
}

/** What caller resolution needs to know: the admin token's hash, who holds which token, and the clock. */
export interface CallerLookup {
  adminHash: Buffer
  tokens: TokenIndex
  instance(deployment: string, id: string): (TokenHashes & ExchangeState) | undefined
  now: number
  exchangeGraceMs: number
}

/**
 * Who presents `token` (from `bearerToken`). An exchanged bootstrap token is refused, except on the
 * phone-home route (`exchange`) while `bootstrapUse` still allows a retried exchange. Pure.
 */
export function resolveCaller(token: string | undefined, lookup: CallerLookup, exchange = false): Caller | Refusal {
  if (token === undefined) return {refused: 'missing'}
  const hash = hashToken(token)
  if (sameHash(hash, lookup.adminHash)) return {kind: 'admin'}
  const holder = lookup.tokens.holder(hash)
  const instance = holder && lookup.instance(holder.deployment, holder.id)
  if (!holder || !instance) return {refused: 'invalid'}
  if (instance.nodeTokenHash && sameHash(hash, instance.nodeTokenHash))
    return {kind: 'instance', ...holder, token: 'node'}
  if (!sameHash(hash, instance.tokenHash)) return {refused: 'invalid'}
  if (
    instance.exchangedAt === undefined ||
    (exchange && bootstrapUse(instance, lookup.now, lookup.exchangeGraceMs) !== 'refuse')
  )
    return {kind: 'instance', ...holder, token: 'bootstrap'}
  return {refused: 'exchanged'}
}

/** The 401 of a refusal. */
export function refusalError(refusal: Refusal): HttpError {
  const challenge = {'www-authenticate': 'Bearer'}
  if (refusal.refused === 'missing')
    return new HttpError(401, 'missing or malformed "Authorization: Bearer <token>" header', {}, challenge)
  if (refusal.refused === 'exchanged') return new HttpError(401, EXCHANGED_MESSAGE, {hint: EXCHANGED_HINT}, challenge)
  return new HttpError(
    401,
    'the token is not valid here (wrong, or of a deployment that was replaced or deleted)',
    {},
    challenge,
  )
}

export interface AuthOptions {
  context: ServerContext
  adminHash: Buffer
  limiter: AuthFailureLimiter
}

/** Where `resolveCaller` looks tokens up, as of now. */
export function callerLookup(context: ServerContext, adminHash: Buffer): CallerLookup {
  return {
    adminHash,
    tokens: context.tokens,
    instance: (deployment, id) => context.registry.get(deployment)?.instance(id),
    now: Date.now(),
    exchangeGraceMs: context.exchangeGraceMs,
  }
}

/** The first request with a node token ends the grace in which the bootstrap token could be exchanged again. */
export async function noteNodeTokenUse(context: ServerContext, deployment: string, id: string): Promise<void> {
  const instance = context.registry.get(deployment)?.instance(id)
  const hash = instance?.nodeTokenHash
  if (!instance || !hash || instance.nodeTokenUsedAt !== undefined) return
  const now = Date.now()
  await context.store.nodeTokenUsed(deployment, id, hash, now, (n) => {
    if (n > 0 && instance.nodeTokenHash === hash) instance.nodeTokenUsedAt ??= now
    context.registry.wrote(deployment)
  })
}

const plugin: FastifyPluginAsync<AuthOptions> = async (app, {context, adminHash, limiter}) => {
  const {store} = context
  const lookup = () => callerLookup(context, adminHash)

  /**
   * The caller, or the refusal: a 401, or a 429 once this credential from this address, or this address
   * aiming at this target (the admin routes, one instance), failed too often. A valid token is never limited.
   */
  const authenticate = async (
    request: FastifyRequest,
    target: string,
    exchange: boolean,
    deployment?: string,
  ): Promise<Caller> => {
    const token = bearerToken(request.headers.authorization)
    let caller = resolveCaller(token, lookup(), exchange)
    // Over a shared store the token may be one another replica just issued or exchanged: read the deployment again.
    if ('refused' in caller && token !== undefined && deployment !== undefined && store.shared) {
      await context.current(deployment)
      caller = resolveCaller(token, lookup(), exchange)
    }
    if (!('refused' in caller)) return caller
    const address = context.address(request)
    const keys = failureKeys(address, token, target)
    const now = Date.now()
    const wait = store.authFailure
      ? await store.authFailure(keys, now, limiter.limit, limiter.windowMs)
      : Math.max(...keys.map((key) => limiter.retryAfter(key, now)))
    if (wait > 0)
      throw new HttpError(
        429,
        `too many failed authentications from this address with this token or for ${target}; retry in ${wait} s`,
        {},
        {'retry-after': String(wait)},
      )
    if (!store.authFailure) for (const key of keys) limiter.fail(key, now)
    throw refusalError(caller)
  }

  app.decorateRequest('caller', null)

  // Before the body is read: check the token the route needs. Routes without one (/healthz) are never limited.
  app.addHook('onRequest', async (request) => {
    const {auth, exchange} = request.routeOptions.config
    if (auth === 'admin') {
      request.caller = await authenticate(request, 'the admin routes', false)
      if (request.caller.kind !== 'admin') throw new HttpError(403, 'this route needs the admin token')
    } else if (auth === 'instance') {
      const {dep, id} = ids(request.params, 'dep', 'id')
      const caller = await authenticate(request, `${dep}/${id}`, exchange === true, dep)
      if (caller.kind === 'instance' && (caller.deployment !== dep || caller.id !== id))
        throw new HttpError(403, 'an instance token reaches only its own instance')
      if (caller.kind === 'instance' && caller.token === 'node') await noteNodeTokenUse(context, dep, id)
      request.caller = caller
    }
  })
}

/**
 * What a failure counts against: the address with the credential it presented (a node retrying a stale
 * token locks out only that token), and the address with what it aimed at (a guesser rotating tokens
 * against one instance). Never the address alone: nodes behind one NAT share it.
 */
export function failureKeys(address: string, token: string | undefined, target: string): string[] {
  const credential = token === undefined ? 'none' : hashToken(token).subarray(0, 12).toString('base64url')
  return [`${address} presenting ${credential}`, `${address} aiming at ${target}`]
}

// Not encapsulated (what fastify-plugin does): the hook and the decorator apply to every route registered after it.
;(plugin as unknown as Record<symbol, boolean>)[Symbol.for('skip-override')] = true

export const authPlugin = plugin

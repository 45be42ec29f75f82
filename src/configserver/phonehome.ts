/**
 * A phone-home (`PUT …/instances/:id/facts`): the facts merge into the instance's, the address the
 * request came from is recorded, and a bootstrap token is exchanged for a node token in the same
 * transaction. The fastify route (routes/instances.ts) and the direct handler (direct.ts) both end here.
 */
import type {Caller} from './auth.js'
import {HttpError} from './errors.js'
import {factsBody, ownInstance, type ServerContext} from './http.js'
import type {FactsResponse} from './protocol.js'
import {hashToken, newToken} from './tokens.js'

function noFacts(facts: object): boolean {
  for (const _ in facts) return false
  return true
}

/** After the commit of an exchange: the new node token works, the one it replaces (a lost answer's) does not. */
function adoptNodeToken(context: ServerContext, dep: string, id: string, hash: Buffer, exchangedAt: number): void {
  const record = context.registry.get(dep)?.instance(id)
  if (!record) return
  context.tokens.replace(dep, id, record.nodeTokenHash, hash)
  record.nodeTokenHash = hash
  record.exchangedAt = exchangedAt
}

/**
 * The phone-home of instance `id` by `caller` (authenticated for it), with the body as parsed and the
 * client address as `context.client` read it; throws the HttpError to answer otherwise.
 */
export async function phoneHome(
  context: ServerContext,
  dep: string,
  id: string,
  body: unknown,
  caller: Caller | null,
  client: {address: string; problem?: string},
): Promise<FactsResponse> {
  const {store, registry, waiters} = context
  const {facts} = factsBody(body)
  if ('ip' in facts)
    throw new HttpError(400, 'do not send the fact "ip": the server records the address it sees the request come from')
  const instance = ownInstance(registry.instance(dep, id))
  const token = caller?.kind === 'instance' && caller.token === 'bootstrap' ? newToken() : undefined
  const tokenHash = token === undefined ? undefined : hashToken(token)
  const {address, problem} = client
  if (problem) throw new HttpError(400, problem)
  const now = Date.now()
  const exchange = tokenHash && {hash: tokenHash, graceMs: context.exchangeGraceMs}
  const {changed} = await store.phoneHome(
    dep,
    id,
    {facts, address, now, firstContact: noFacts(instance.facts), ...(exchange ? {exchange} : {})},
    ({exchanged, changed}) => {
      if (changed === 0) return
      registry.wrote(dep)
      if (exchanged && tokenHash) adoptNodeToken(context, dep, id, tokenHash, exchanged.exchangedAt)
      const registration = registry.get(dep)
      if (registration) waiters.wakeSoon(dep, registration.recordFacts(id, facts, address, now))
    },
  )
  if (changed === 0) throw new HttpError(404, `unknown instance ${id} in deployment ${dep}`)
  return {deployment: dep, instance: id, ip: address, ...(token === undefined ? {} : {token})}
}

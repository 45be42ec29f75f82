/**
 * The server's parts, wired: the registry of deployments, the token index and the long-poll waiters
 * follow every commit that replaces a deployment, and, over a shared store, every change another
 * replica announces (the deployment is re-read, its waiters re-checked); the client address of a
 * request is read once. The routes and the auth plugin see only this.
 */
import type {IncomingMessage} from 'node:http'
import {type AddressRule, clientAddress} from './address.js'
import type {FederationStatus} from './protocol.js'
import type {RegistrationPlan} from './register.js'
import {Registry} from './registry.js'
import type {StateStore} from './state.js'
import {EXCHANGE_GRACE_MS, TokenIndex} from './tokens.js'
import {Waiters} from './waiters.js'

/** A federated server's link to the other sites (federation/federation.ts), as the routes use it. */
export interface FederationHandle {
  readonly site: string
  /** Throws the 400 for a registration this server cannot take. */
  accepts(plan: RegistrationPlan): void
  /** After a registration's commit. */
  registered(deployment: string): Promise<void>
  /** After a deployment's deletion. */
  forget(deployment: string): Promise<void>
  status(deployment: string): FederationStatus | undefined
}

export interface ServerContext {
  store: StateStore
  /** Set when the server was started with a site and a broker. */
  federation?: FederationHandle
  registry: Registry
  tokens: TokenIndex
  waiters: Waiters
  /** How long a lost token exchange may be retried (ms). */
  exchangeGraceMs: number
  /** The client's address: the TCP peer, or with trustProxy the right-most untrusted forwarded address. */
  address(request: {raw: IncomingMessage}): string
  /** The same, with why X-Forwarded-For could not say it (then `address` is the peer's). */
  client(request: {raw: IncomingMessage}): {address: string; problem?: string}
  /** Before reading a deployment from memory: over a shared store, re-read it (a no-op over SQLite). */
  current(deployment: string): Promise<void>
}

/** Wire the parts over an open store and load every deployment it holds. */
export async function createContext(
  store: StateStore,
  options: {
    rule?: AddressRule
    exchangeGraceMs?: number
    logError?: (error: unknown, message: string) => void
  } = {},
): Promise<ServerContext> {
  const rule = options.rule ?? {kind: 'peer'}
  const registry = new Registry(store)
  const tokens = new TokenIndex()
  const waiters = new Waiters(
    (deployment, id, service) => {
      const registration = registry.get(deployment)
      const instance = registration?.instance(id)
      const spec = service === undefined ? undefined : instance?.services.find((s) => s.name === service)
      if (!registration || !instance || (service !== undefined && !spec)) return 'gone'
      return registration.settled(instance, spec) ? 'settled' : 'pending'
    },
    options.logError ?? (() => {}),
  )
  registry.listen({
    replaced(name, before, after) {
      if (before) for (const instance of before.allInstances()) tokens.drop(instance)
      if (after) for (const instance of after.allInstances()) tokens.add(name, instance)
      waiters.wakeAll(name)
    },
  })
  const logError = options.logError ?? (() => {})
  // Another replica changed a deployment: re-read it (which wakes its waiters). Unknown: re-read everything held.
  store.onChange?.((deployment) => {
    const names = deployment === undefined ? registry.names() : [deployment]
    for (const name of names)
      registry.refresh(name).catch((error: unknown) => logError(error, `re-reading deployment ${name} failed`))
    if (deployment === undefined)
      store
        .deploymentNames()
        .then((all) => {
          for (const name of all.filter((known) => !registry.get(known)))
            registry.refresh(name).catch((error: unknown) => logError(error, `reading deployment ${name} failed`))
        })
        .catch((error: unknown) => logError(error, 're-reading the deployments failed'))
  })
  await registry.loadAll()

  // Read once per request, or with the peer rule once per connection (its peer does not change; a
  // keep-alive connection carries many phone-homes).
  type Client = {address: string; problem?: string}
  const clients = new WeakMap<object, Client>()
  const client = ({raw}: {raw: IncomingMessage}): Client => {
    const key = rule.kind === 'peer' ? raw.socket : raw
    let seen = clients.get(key)
    if (!seen) {
      seen = clientAddress(raw.socket.remoteAddress ?? '', raw.headers['x-forwarded-for'], rule)
      clients.set(key, seen)
    }
    return seen
  }
  return {
    store,
    registry,
    tokens,
    waiters,
    exchangeGraceMs: options.exchangeGraceMs ?? EXCHANGE_GRACE_MS,
    client,
    address: (request) => client(request).address,
    current: (deployment) => registry.refresh(deployment),
  }
}

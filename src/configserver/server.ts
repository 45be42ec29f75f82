/**
 * The config server: nodes phone home here, and get their configuration once every value it needs
 * is known. HTTP (fastify) over a SQLite store; routes and bodies are in protocol.ts.
 */
import fs from 'node:fs'
import path from 'node:path'
import {Readable} from 'node:stream'
import Fastify, {type FastifyInstance, type FastifyReply, type FastifyRequest} from 'fastify'
import {z} from 'zod'
import type {Analysis} from '../plan/check.js'
import {
  AuthFailureLimiter,
  adminTokenFrom,
  bearerToken,
  bootstrapUse,
  EXCHANGE_GRACE_MS,
  EXCHANGED_HINT,
  EXCHANGED_MESSAGE,
  hashToken,
  newToken,
  sameHash,
} from './auth.js'
import {HttpError, zodIssues} from './errors.js'
import {Deployment, type InstanceRecord} from './model.js'
import {
  factsRequestSchema,
  type FactsResponse,
  type InstanceConfig,
  serviceReportSchema,
  type ServiceSpec,
} from './protocol.js'
import {ID_PATTERN, ID_RULE} from '../core/ids.js'
import {planRegistration, writeRegistration} from './register.js'
import {Store, writes} from './store.js'

export interface ConfigServerOptions {
  /** Where to listen; port 0 picks a free port. Default 127.0.0.1:0. */
  listen?: {host: string; port: number}
  /** Directory of the SQLite state (created, mode 0700). */
  stateDir: string
  /** The admin token; when absent, the one in `<stateDir>/admin-token` (created on first start). */
  adminToken?: string
  /** PEM text, or paths of PEM files. */
  tls?: {cert: string; key: string}
  /** Take the client address from X-Forwarded-For (only behind a proxy you run). */
  trustProxy?: boolean
  /** fastify's pino logger: true for JSON lines on stdout, or pino options. */
  logger?: boolean | object
  /** Failed authentications per address per minute before 429 (default 20). */
  authFailureLimit?: number
  /**
   * Seconds after a bootstrap token's exchange during which a retried phone-home with it gets a fresh
   * node token, as long as the node token is unused (default 600).
   */
  tokenExchangeGraceSec?: number
}

export interface RunningConfigServer {
  url: string
  port: number
  adminToken: string
  /** Where the admin token is kept, when it was not given. */
  adminTokenFile?: string
  close(): Promise<void>
}

/** Longest long-poll; a larger `wait` is cut to this. */
export const MAX_WAIT_SEC = 300
/** What a 202 suggests before asking again. */
export const RETRY_AFTER_SEC = 2

const configQuerySchema = z
  .object({
    service: z.string().regex(ID_PATTERN, `service ${ID_RULE}`).optional(),
    wait: z
      .string()
      .regex(/^\d{1,6}(\.\d{1,3})?$/, 'wait is a number of seconds')
      .optional(),
    roles: z.enum(['true', 'false'], 'roles is true or false').optional(),
  })
  .strict()

/** An instance authenticates with its bootstrap token until the first phone-home exchanges it, then with its node token. */
type Caller = {kind: 'admin'} | {kind: 'instance'; deployment: string; id: string; token: 'bootstrap' | 'node'}
type WaitOutcome = 'complete' | 'gone' | 'timeout' | 'shutdown' | 'closed'
interface Waiter {
  service?: string
  done(outcome: WaitOutcome): void
}

type Params = Record<string, string>

export async function startConfigServer(opts: ConfigServerOptions): Promise<RunningConfigServer> {
  const stateDir = path.resolve(opts.stateDir)
  const tls = opts.tls ? {cert: pem(opts.tls.cert, 'certificate'), key: pem(opts.tls.key, 'key')} : undefined
  const store = new Store(stateDir)
  const adminTokenFile = opts.adminToken === undefined ? path.join(stateDir, 'admin-token') : undefined
  let adminToken: string
  try {
    adminToken = await adminTokenFrom(opts.adminToken, path.join(stateDir, 'admin-token'))
  } catch (error) {
    store.close()
    throw error
  }
  const grace = opts.tokenExchangeGraceSec
  if (grace !== undefined && !(Number.isFinite(grace) && grace >= 0)) {
    store.close()
    throw new Error(`tokenExchangeGraceSec must be a number of seconds, 0 or more, not ${grace}`)
  }
  const graceMs = grace === undefined ? EXCHANGE_GRACE_MS : grace * 1000
  const hub = new Hub(store, hashToken(adminToken), new AuthFailureLimiter(opts.authFailureLimit ?? 20), graceMs)
  hub.loadAll()

  const app = Fastify({
    logger: loggerOptions(opts.logger),
    ...(tls ? {https: tls} : {}),
    trustProxy: opts.trustProxy ?? false,
    bodyLimit: 1024 * 1024,
    routerOptions: {maxParamLength: 2048},
    return503OnClosing: true,
    // Malformed URLs (bad percent-encoding, over-long ids) get the same {error} body as everything else.
    frameworkErrors: (error, _request, reply: FastifyReply) => {
      const status = error.statusCode && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 400
      void reply
        .code(status)
        .send({error: `bad request URL (${error.code ?? 'invalid'}): ids must be 1-253 of A-Z a-z 0-9 . _ : -`})
    },
  }) as unknown as FastifyInstance
  routes(app, hub)

  const listen = opts.listen ?? {host: '127.0.0.1', port: 0}
  try {
    await app.listen({host: listen.host, port: listen.port, backlog: 4096})
  } catch (error) {
    store.close()
    // Keep the errno code, so a caller can tell a taken port (EADDRINUSE) from other failures.
    throw Object.assign(new Error(`cannot listen on ${listen.host}:${listen.port}: ${(error as Error).message}`), {
      code: (error as NodeJS.ErrnoException).code,
    })
  }
  const address = app.server.address()
  const port = typeof address === 'object' && address ? address.port : listen.port
  const host = ['0.0.0.0', '::', ''].includes(listen.host) ? '127.0.0.1' : listen.host
  const url = `${opts.tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}`

  let closing: Promise<void> | undefined
  return {
    url,
    port,
    adminToken,
    ...(adminTokenFile ? {adminTokenFile} : {}),
    close() {
      closing ??= (async () => {
        hub.shutdown()
        await app.close()
        store.close()
      })()
      return closing
    },
  }
}

function pem(value: string, what: string): string {
  if (value.includes('-----BEGIN')) return value
  try {
    return fs.readFileSync(value, 'utf8')
  } catch (error) {
    throw new Error(`cannot read the TLS ${what} ${value}: ${(error as Error).message}`, {cause: error})
  }
}

function loggerOptions(logger: boolean | object | undefined): boolean | object {
  if (!logger) return false
  const redact = {paths: ['req.headers.authorization', 'headers.authorization'], censor: '[redacted]'}
  return logger === true ? {level: 'info', redact} : {redact, ...logger}
}

/** The deployments in memory, who holds which token, and who is waiting for what. */
class Hub {
  private readonly deployments = new Map<string, Deployment>()
  /** sha256(token) as hex → the instance it belongs to (bootstrap and node tokens alike). */
  private readonly tokens = new Map<string, {deployment: string; id: string}>()
  private readonly waiters = new Map<string, Map<string, Set<Waiter>>>()
  private closing = false

  constructor(
    readonly store: Store,
    private readonly adminHash: Buffer,
    readonly limiter: AuthFailureLimiter,
    readonly exchangeGraceMs: number,
  ) {}

  loadAll(): void {
    for (const name of this.store.deploymentNames()) this.reload(name)
  }

  deployment(name: string): Deployment {
    const deployment = this.deployments.get(name)
    if (!deployment)
      throw new HttpError(404, `unknown deployment ${name}; register it first (PUT /v1/deployments/${name})`)
    return deployment
  }

  instance(name: string, id: string): {deployment: Deployment; instance: InstanceRecord} {
    const deployment = this.deployment(name)
    const instance = deployment.instance(id)
    if (!instance) throw new HttpError(404, `unknown instance ${id} in deployment ${name}`)
    return {deployment, instance}
  }

  /** Re-read a deployment after a commit that changed its membership. */
  reload(name: string, analysis?: Analysis): void {
    const old = this.deployments.get(name)
    if (old) for (const instance of old.allInstances()) this.dropTokens(instance)
    const record = this.store.load(this.store.db, name)
    if (record) {
      const deployment = new Deployment(record, analysis)
      this.deployments.set(name, deployment)
      for (const instance of deployment.allInstances()) {
        for (const hash of tokenHashes(instance))
          this.tokens.set(hash.toString('hex'), {deployment: name, id: instance.id})
      }
    } else {
      this.deployments.delete(name)
    }
    this.wake(name, [...(this.waiters.get(name)?.keys() ?? [])])
  }

  /**
   * Who sends the request. An exchanged bootstrap token is refused, except on the phone-home route
   * (`exchange`) while `bootstrapUse` still allows a retried exchange.
   */
  authenticate(request: FastifyRequest, exchange = false): Caller {
    const token = bearerToken(request.headers.authorization)
    if (token === undefined) {
      this.limiter.fail(peerAddress(request), Date.now())
      throw new HttpError(
        401,
        'missing or malformed "Authorization: Bearer <token>" header',
        {},
        {'www-authenticate': 'Bearer'},
      )
    }
    const hash = hashToken(token)
    if (sameHash(hash, this.adminHash)) return {kind: 'admin'}
    const holder = this.tokens.get(hash.toString('hex'))
    const instance = holder ? this.deployments.get(holder.deployment)?.instance(holder.id) : undefined
    if (holder && instance) {
      if (instance.nodeTokenHash && sameHash(hash, instance.nodeTokenHash))
        return {kind: 'instance', ...holder, token: 'node'}
      if (sameHash(hash, instance.tokenHash)) {
        if (
          instance.exchangedAt === undefined ||
          (exchange && bootstrapUse(instance, Date.now(), this.exchangeGraceMs) !== 'refuse')
        ) {
          return {kind: 'instance', ...holder, token: 'bootstrap'}
        }
        this.limiter.fail(peerAddress(request), Date.now())
        throw new HttpError(401, EXCHANGED_MESSAGE, {hint: EXCHANGED_HINT}, {'www-authenticate': 'Bearer'})
      }
    }
    this.limiter.fail(peerAddress(request), Date.now())
    throw new HttpError(
      401,
      'the token is not valid here (wrong, or of a deployment that was replaced or deleted)',
      {},
      {'www-authenticate': 'Bearer'},
    )
  }

  requireAdmin(request: FastifyRequest): void {
    if (this.authenticate(request).kind !== 'admin') throw new HttpError(403, 'this route needs the admin token')
  }

  /** The caller of an instance route; a node token's first use is recorded (durably) before the route runs. */
  async requireInstance(request: FastifyRequest, deployment: string, id: string, exchange: boolean): Promise<Caller> {
    const caller = this.authenticate(request, exchange)
    if (caller.kind === 'instance' && (caller.deployment !== deployment || caller.id !== id)) {
      throw new HttpError(403, 'an instance token reaches only its own instance')
    }
    if (caller.kind === 'instance' && caller.token === 'node') await this.noteNodeTokenUse(deployment, id)
    return caller
  }

  /** The first request with a node token ends the grace in which the bootstrap token could be exchanged again. */
  private async noteNodeTokenUse(name: string, id: string): Promise<void> {
    const instance = this.deployments.get(name)?.instance(id)
    const hash = instance?.nodeTokenHash
    if (!instance || !hash || instance.nodeTokenUsedAt !== undefined) return
    const now = Date.now()
    await this.store.write(
      (db) => writes.nodeTokenUsed(db, name, id, hash, now),
      (n) => {
        if (n > 0 && instance.nodeTokenHash === hash) instance.nodeTokenUsedAt ??= now
      },
    )
  }

  /** After the commit of an exchange: the new node token works, the one it replaces (a lost answer's) does not. */
  adoptNodeToken(name: string, id: string, hash: Buffer, exchangedAt: number): void {
    const instance = this.deployments.get(name)?.instance(id)
    if (!instance) return
    if (instance.nodeTokenHash) this.tokens.delete(instance.nodeTokenHash.toString('hex'))
    instance.nodeTokenHash = hash
    instance.exchangedAt = exchangedAt
    this.tokens.set(hash.toString('hex'), {deployment: name, id})
  }

  private dropTokens(instance: InstanceRecord): void {
    for (const hash of tokenHashes(instance)) this.tokens.delete(hash.toString('hex'))
  }

  /** Wait until the instance's config (or one service's) is complete, or `seconds` pass. */
  wait(
    name: string,
    id: string,
    service: string | undefined,
    seconds: number,
    reply: FastifyReply,
  ): Promise<WaitOutcome> {
    if (this.closing) return Promise.resolve('shutdown')
    return new Promise((resolve) => {
      const forDeployment = this.waiters.get(name) ?? new Map<string, Set<Waiter>>()
      this.waiters.set(name, forDeployment)
      const forInstance = forDeployment.get(id) ?? new Set<Waiter>()
      forDeployment.set(id, forInstance)
      const onClose = () => waiter.done('closed')
      const waiter: Waiter = {
        ...(service === undefined ? {} : {service}),
        done: (outcome) => {
          clearTimeout(timer)
          reply.raw.off('close', onClose)
          forInstance.delete(waiter)
          if (forInstance.size === 0 && forDeployment.get(id) === forInstance) forDeployment.delete(id)
          if (forDeployment.size === 0 && this.waiters.get(name) === forDeployment) this.waiters.delete(name)
          resolve(outcome)
        },
      }
      const timer = setTimeout(() => waiter.done('timeout'), seconds * 1000)
      reply.raw.on('close', onClose)
      forInstance.add(waiter)
    })
  }

  /** After a commit: answer the waiters of `ids` whose configuration is now complete (or gone). */
  wake(name: string, ids: string[]): void {
    const forDeployment = this.waiters.get(name)
    if (!forDeployment) return
    const deployment = this.deployments.get(name)
    for (const id of ids) {
      const waiting = forDeployment.get(id)
      if (!waiting) continue
      const instance = deployment?.instance(id)
      for (const waiter of [...waiting]) {
        if (!deployment || !instance) {
          waiter.done('gone')
          continue
        }
        const service =
          waiter.service === undefined ? undefined : instance.services.find((s) => s.name === waiter.service)
        if (waiter.service !== undefined && !service) waiter.done('gone')
        else if (isComplete(deployment, instance, service)) waiter.done('complete')
      }
    }
  }

  /** Wake after the writer's own answer has gone out: a phone-home is not held up by the configs it completes. */
  wakeSoon(name: string, ids: string[]): void {
    setImmediate(() => this.wake(name, ids))
  }

  forget(name: string): void {
    const old = this.deployments.get(name)
    if (old) for (const instance of old.allInstances()) this.dropTokens(instance)
    this.deployments.delete(name)
    this.wake(name, [...(this.waiters.get(name)?.keys() ?? [])])
  }

  shutdown(): void {
    this.closing = true
    for (const forDeployment of [...this.waiters.values()]) {
      for (const waiting of [...forDeployment.values()]) for (const waiter of [...waiting]) waiter.done('shutdown')
    }
  }
}

const tokenHashes = (instance: InstanceRecord): Buffer[] =>
  instance.nodeTokenHash ? [instance.tokenHash, instance.nodeTokenHash] : [instance.tokenHash]

function isComplete(deployment: Deployment, instance: InstanceRecord, service?: ServiceSpec): boolean {
  return (service ? [service] : instance.services).every((s) => deployment.resolveService(instance, s).complete)
}

/** The client's address; `::ffff:10.0.0.1` is written 10.0.0.1. */
function peerAddress(request: FastifyRequest): string {
  return request.ip.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/, '$1')
}

function ids(params: unknown, ...names: Array<'dep' | 'id' | 'svc'>): Params {
  const out: Params = {}
  const what = {dep: 'deployment', id: 'instance', svc: 'service'}
  for (const name of names) {
    const value = (params as Params)[name]
    if (typeof value !== 'string' || !ID_PATTERN.test(value))
      throw new HttpError(400, `the ${what[name]} id in the path is invalid: it ${ID_RULE}`)
    out[name] = value
  }
  return out
}

function body<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const parsed = schema.safeParse(value)
  if (!parsed.success) throw new HttpError(400, `invalid ${what}`, {issues: zodIssues(parsed.error)})
  return parsed.data
}

function findService(instance: InstanceRecord, name: string): ServiceSpec {
  const service = instance.services.find((s) => s.name === name)
  if (!service)
    throw new HttpError(
      404,
      `instance ${instance.id} runs no service ${name}; it runs: ${instance.services.map((s) => s.name).join(', ') || 'nothing'}`,
    )
  return service
}

const EMPTY_ROLES = Buffer.from('{}')

/** A config body: the instance's part, then the deployment's shared `roles` JSON, which is not copied. */
function sendConfig(reply: FastifyReply, config: Omit<InstanceConfig, 'roles'>, roles: Buffer): FastifyReply {
  const head = Buffer.from(JSON.stringify(config).slice(0, -1) + ',"roles":')
  const chunks = [head, roles, Buffer.from('}')]
  const length = chunks.reduce((n, c) => n + c.length, 0)
  reply
    .code(config.complete ? 200 : 202)
    .type('application/json; charset=utf-8')
    .header('content-length', length)
  if (!config.complete) reply.header('retry-after', String(RETRY_AFTER_SEC))
  return reply.send(length < 64 * 1024 ? Buffer.concat(chunks, length) : Readable.from(chunks))
}

function routes(app: FastifyInstance, hub: Hub): void {
  const {store} = hub
  const callers = new WeakMap<FastifyRequest, Caller>()

  // Before the body is read: refuse blocked addresses, then check the token the route needs.
  app.addHook('onRequest', async (request, reply) => {
    const wait = hub.limiter.retryAfter(peerAddress(request), Date.now())
    if (wait > 0) {
      reply
        .code(429)
        .header('retry-after', String(wait))
        .send({error: `too many failed authentications from this address; retry in ${wait} s`})
      return reply
    }
    const {auth, exchange} = request.routeOptions.config as {auth?: 'admin' | 'instance'; exchange?: boolean}
    if (auth === 'admin') hub.requireAdmin(request)
    else if (auth === 'instance') {
      const {dep, id} = ids(request.params, 'dep', 'id')
      callers.set(request, await hub.requireInstance(request, dep, id, exchange === true))
    }
  })

  app.setErrorHandler((error: Error & {statusCode?: number}, request, reply) => {
    if (error instanceof HttpError) {
      reply
        .code(error.statusCode)
        .headers(error.headers)
        .send({error: error.message, ...error.extra})
      return
    }
    const status =
      typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 500
    if (status === 500) request.log.error({err: error}, 'internal error')
    reply.code(status).send({error: status === 500 ? 'internal error; see the config server log' : error.message})
  })

  app.setNotFoundHandler((request, reply) => {
    reply.code(404).send({
      error: `no route ${request.method} ${request.url.split('?')[0].slice(0, 200)}; the routes are under /v1/deployments/`,
    })
  })

  app.get('/healthz', async () => ({ok: true}))

  app.put('/v1/deployments/:dep', {bodyLimit: 256 * 1024 * 1024, config: {auth: 'admin'}}, async (request, reply) => {
    const {dep} = ids(request.params, 'dep')
    const plan = planRegistration(dep, request.body)
    const now = Date.now()
    const tokens = await store.write(
      (db) => writeRegistration(db, plan, now),
      () => hub.reload(dep, plan.analysis),
      true,
    )
    reply.code(201)
    return {deployment: dep, tokens}
  })

  app.get('/v1/deployments/:dep/status', {config: {auth: 'admin'}}, async (request) => {
    const {dep} = ids(request.params, 'dep')
    return hub.deployment(dep).status(Date.now())
  })

  app.get('/v1/deployments/:dep/state', {config: {auth: 'admin'}}, async (request) => {
    const {dep} = ids(request.params, 'dep')
    return hub.deployment(dep).state()
  })

  app.get('/v1/deployments/:dep/graph', {config: {auth: 'admin'}}, async (request) => {
    const {dep} = ids(request.params, 'dep')
    const {vertices, edges} = hub.deployment(dep).analysis()
    return {vertices, edges}
  })

  app.delete('/v1/deployments/:dep', {config: {auth: 'admin'}}, async (request, reply) => {
    const {dep} = ids(request.params, 'dep')
    hub.deployment(dep)
    const removed = await store.write(
      (db) => writes.deleteDeployment(db, dep),
      (n) => n > 0 && hub.forget(dep),
    )
    if (removed === 0) throw new HttpError(404, `unknown deployment ${dep}`)
    return reply.code(204).send()
  })

  app.delete('/v1/deployments/:dep/instances/:id', {config: {auth: 'admin'}}, async (request, reply) => {
    const {dep, id} = ids(request.params, 'dep', 'id')
    hub.instance(dep, id)
    const removed = await store.write(
      (db) => writes.deleteInstance(db, dep, id),
      (n) => n > 0 && hub.reload(dep),
    )
    if (removed === 0) throw new HttpError(404, `unknown instance ${id} in deployment ${dep}`)
    return reply.code(204).send()
  })

  // A phone-home with the bootstrap token exchanges it for a node token, in the same transaction as the facts.
  app.put(
    '/v1/deployments/:dep/instances/:id/facts',
    {config: {auth: 'instance', exchange: true}},
    async (request): Promise<FactsResponse> => {
      const {dep, id} = ids(request.params, 'dep', 'id')
      const {facts} = body(factsRequestSchema, request.body, 'facts')
      if ('ip' in facts)
        throw new HttpError(
          400,
          'do not send the fact "ip": the server records the address it sees the request come from',
        )
      hub.instance(dep, id)
      const caller = callers.get(request)
      const token = caller?.kind === 'instance' && caller.token === 'bootstrap' ? newToken() : undefined
      const tokenHash = token === undefined ? undefined : hashToken(token)
      const address = peerAddress(request)
      const now = Date.now()
      const {changed} = await store.write(
        (db) => ({
          exchanged: tokenHash && writes.exchange(db, dep, id, tokenHash, now, hub.exchangeGraceMs),
          changed: writes.facts(db, dep, id, facts, address, now),
        }),
        ({exchanged, changed}) => {
          if (changed === 0) return
          if (exchanged && tokenHash) hub.adoptNodeToken(dep, id, tokenHash, exchanged.exchangedAt)
          hub.wakeSoon(dep, hub.deployment(dep).recordFacts(id, facts, address, now))
        },
        token !== undefined,
      )
      if (changed === 0) throw new HttpError(404, `unknown instance ${id} in deployment ${dep}`)
      return {deployment: dep, instance: id, ip: address, ...(token === undefined ? {} : {token})}
    },
  )

  app.get('/v1/deployments/:dep/instances/:id/config', {config: {auth: 'instance'}}, async (request, reply) => {
    const {dep, id} = ids(request.params, 'dep', 'id')
    const query = body(configQuerySchema, request.query, 'query')
    const wait = Math.min(Number(query.wait ?? 0), MAX_WAIT_SEC)
    let {deployment, instance} = hub.instance(dep, id)
    let service = query.service === undefined ? undefined : findService(instance, query.service)
    if (wait > 0 && !isComplete(deployment, instance, service)) {
      const outcome = await hub.wait(dep, id, query.service, wait, reply)
      ;({deployment, instance} = hub.instance(dep, id))
      if (outcome === 'gone' && query.service !== undefined) service = findService(instance, query.service)
    }
    // `roles=false`: a client that fetches /roles and /hosts itself need not get the whole role map each time.
    return sendConfig(
      reply,
      deployment.config(instance, service),
      query.roles === 'false' ? EMPTY_ROLES : deployment.roles().json,
    )
  })

  app.put('/v1/deployments/:dep/instances/:id/services/:svc', {config: {auth: 'instance'}}, async (request) => {
    const {dep, id, svc} = ids(request.params, 'dep', 'id', 'svc')
    const report = body(serviceReportSchema, request.body, 'service report')
    const {instance} = hub.instance(dep, id)
    const service = findService(instance, svc)
    const undeclared = Object.keys(report.outputs).filter((key) => !service.provides.includes(key))
    if (undeclared.length > 0) {
      throw new HttpError(
        400,
        `service ${svc} does not provide ${undeclared.join(', ')}; it provides: ${service.provides.join(', ') || 'nothing'}`,
        {
          hint: 'declare the key in the service metadata "provides", or stop writing it to $NODESET_OUTPUT',
        },
      )
    }
    const now = Date.now()
    const changed = await store.write(
      (db) => writes.run(db, dep, id, svc, report, now),
      (n) => {
        const deployment = hub.deployment(dep)
        if (n > 0) hub.wakeSoon(dep, deployment.recordRun(id, svc, report, now))
      },
    )
    if (changed === 0) throw new HttpError(404, `unknown instance ${id} in deployment ${dep}`)
    return {deployment: dep, instance: id, service: svc, state: report.state}
  })

  app.get('/v1/deployments/:dep/instances/:id/roles', {config: {auth: 'instance'}}, async (request, reply) => {
    const {dep, id} = ids(request.params, 'dep', 'id')
    const {deployment} = hub.instance(dep, id)
    return reply.type('text/plain; charset=utf-8').send(deployment.roleMap())
  })

  app.get('/v1/deployments/:dep/instances/:id/hosts', {config: {auth: 'instance'}}, async (request, reply) => {
    const {dep, id} = ids(request.params, 'dep', 'id')
    const {deployment} = hub.instance(dep, id)
    return reply.type('text/plain; charset=utf-8').send(deployment.hostsBlock())
  })
}

/**
 * The config server: nodes phone home here, and get their configuration once every value it needs
 * is known. HTTP (fastify, app.ts) over a store (state.ts): SQLite (store.ts, the default) or
 * PostgreSQL (pgstore.ts, for replicas); routes and bodies are in protocol.ts. This module starts it: options, state, listening, and closing.
 */
import fs from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import path from 'node:path'
import type {FastifyInstance} from 'fastify'
import {addressRule, type TrustProxy} from './address.js'
import {buildApp} from './app.js'
import {ConnectionGuard} from './connections.js'
import {SITE_PATTERN, SITE_RULE} from './protocol.js'
import {createContext} from './context.js'
import {DirectPhoneHome} from './direct.js'
import {type TimeLimits, timeLimits} from './limits.js'
import {AuthFailureLimiter} from './ratelimit.js'
import {SqliteStore} from './sqlitestore.js'
import type {StateStore} from './state.js'
import {adminTokenFrom, EXCHANGE_GRACE_MS, hashToken} from './tokens.js'

export {MAX_WAIT_SEC, RETRY_AFTER_SEC} from './routes/instances.js'

export interface ConfigServerOptions {
  /** Where to listen; port 0 picks a free port. Default 127.0.0.1:0. */
  listen?: {host: string; port: number}
  /** Directory of the SQLite state (created, mode 0700), and of the admin token when none is given. */
  stateDir?: string
  /**
   * Where the state is: `sqlite:DIR` (the SQLite state in DIR, the same as `stateDir`; the default), or
   * a `postgresql://` (or `postgres://`) URL shared by replicas, who then need the same `adminToken`.
   */
  store?: string
  /** The admin token; when absent, the one in `<stateDir>/admin-token` (created on first start). */
  adminToken?: string
  /** PEM text, or paths of PEM files. */
  tls?: {cert: string; key: string}
  /**
   * Take the client address from X-Forwarded-For, only behind proxies you run: `true` for one proxy in
   * front, a number of proxy hops, or the proxies' addresses and CIDR ranges (an array or `a,b,c`). The
   * address is the right-most one that is not a trusted proxy, and it must be a literal IP.
   */
  trustProxy?: TrustProxy
  /** fastify's pino logger: true for JSON lines on stdout, or pino options. */
  logger?: boolean | object
  /**
   * Failed authentications a minute, per address and credential and per address and target (the admin
   * routes, or one instance), before such failures get 429 (default 20). A valid token is never limited.
   */
  authFailureLimit?: number
  /** Time limits on receiving requests (milliseconds); defaults in limits.ts (nginx's: 60 s for headers and body). */
  timeLimits?: Partial<TimeLimits>
  /**
   * Connections one address may hold at once (default: half of what the file-descriptor limit allows,
   * or 512); trusted proxies are exempt.
   */
  maxConnectionsPerAddress?: number
  /**
   * Seconds after a bootstrap token's exchange during which a retried phone-home with it gets a fresh
   * node token, as long as the node token is unused (default 600).
   */
  tokenExchangeGraceSec?: number
  /** The site this server serves, in deployments spanning sites (docs/federation.md); needs `broker`. */
  site?: string
  /**
   * The site's broker (RabbitMQ): `url` amqp(s)://user:pass@host:port/vhost, `ca` the PEM text of the CA
   * of an amqps broker's certificate, `heartbeatMs` how often heartbeats go out (default 1000). SQLite store only.
   */
  broker?: {url: string; ca?: string; heartbeatMs?: number}
}

export interface RunningConfigServer {
  url: string
  port: number
  adminToken: string
  /** Where the admin token is kept, when it was not given. */
  adminTokenFile?: string
  close(): Promise<void>
}

/** What `store` names: a SQLite state directory, or a PostgreSQL URL. */
export function parseStore(
  store: string | undefined,
  stateDir: string | undefined,
): {sqlite: string} | {postgresql: string} {
  if (store === undefined || store.startsWith('sqlite:')) {
    const dir = store === undefined ? stateDir : store.slice('sqlite:'.length)
    if (!dir) throw new Error('say where the state is: a state directory, or --store sqlite:DIR or postgresql://…')
    return {sqlite: path.resolve(dir)}
  }
  if (/^postgres(ql)?:\/\//.test(store)) return {postgresql: store}
  throw new Error(`--store must be sqlite:DIR or a postgresql:// URL, not ${store.split(':')[0]}:…`)
}

export async function startConfigServer(opts: ConfigServerOptions): Promise<RunningConfigServer> {
  const where = parseStore(opts.store, opts.stateDir)
  const stateDir = 'sqlite' in where ? where.sqlite : opts.stateDir && path.resolve(opts.stateDir)
  if (!stateDir && opts.adminToken === undefined)
    throw new Error('with a PostgreSQL store, give the admin token (the same on every replica): --admin-token-file')
  const tls = opts.tls ? {cert: pem(opts.tls.cert, 'certificate'), key: pem(opts.tls.key, 'key')} : undefined
  const grace = opts.tokenExchangeGraceSec
  if (grace !== undefined && !(Number.isFinite(grace) && grace >= 0))
    throw new Error(`tokenExchangeGraceSec must be a number of seconds, 0 or more, not ${grace}`)
  const limits = timeLimits(opts.timeLimits)
  if (limits.headersMs > limits.requestMs)
    throw new Error('timeLimits.headersMs must not be longer than timeLimits.requestMs (the whole request)')
  const maxPerAddress = opts.maxConnectionsPerAddress
  if (maxPerAddress !== undefined && !(Number.isInteger(maxPerAddress) && maxPerAddress > 0))
    throw new Error(`maxConnectionsPerAddress must be a positive integer, not ${maxPerAddress}`)
  const rule = addressRule(opts.trustProxy)
  checkFederation(opts, where)
  const adminTokenFile = opts.adminToken === undefined && stateDir ? path.join(stateDir, 'admin-token') : undefined
  const adminToken = await adminTokenFrom(opts.adminToken, path.join(stateDir ?? '.', 'admin-token'))

  // The log exists once the app does; what fails before (a commit's aftermath, a wake-up) is told to it then.
  let app: FastifyInstance | undefined
  let closeFederation = async (): Promise<void> => {}
  const logError = (error: unknown, message: string) => app?.log.error({err: error}, message)
  const onApplyError = (error: unknown) => logError(error, 'applying a committed write failed')
  // PostgreSQL (pg) and the broker (amqplib) load only where configured: most servers use neither.
  const openPostgres = async (url: string) =>
    (await import('./pgstore.js')).PgStore.open(url, {
      onApplyError,
      log: (message, error) => (error ? logError(error, message) : app?.log.info(message)),
    })
  const store: StateStore =
    'sqlite' in where ? new SqliteStore(where.sqlite, {onApplyError}) : await openPostgres(where.postgresql)
  try {
    const context = await createContext(store, {
      rule,
      exchangeGraceMs: grace === undefined ? EXCHANGE_GRACE_MS : grace * 1000,
      logError,
    })
    if (opts.site !== undefined && opts.broker && store instanceof SqliteStore) {
      const {Federation} = await import('./federation/federation.js')
      const federation = new Federation(
        {
          site: opts.site,
          broker: opts.broker,
          ...(opts.broker.heartbeatMs ? {heartbeatMs: opts.broker.heartbeatMs} : {}),
        },
        {
          store: store.store,
          registry: context.registry,
          waiters: context.waiters,
          log: (message, error) => (error ? logError(error, message) : app?.log.info(message)),
        },
      )
      store.federate(federation.outbox)
      await federation.start()
      context.federation = federation
      closeFederation = () => federation.close()
    }
    const guard = new ConnectionGuard({
      ...(maxPerAddress === undefined ? {} : {maxPerAddress}),
      // Behind proxies the peer is a proxy carrying many clients: its connections are not capped.
      exempt: (address) =>
        rule.kind === 'hops' ||
        (rule.kind === 'list' && rule.list.check(address, address.includes(':') ? 'ipv6' : 'ipv4')),
      limits,
      log: () => app?.log,
    })
    const serverOptions = {
      headersTimeout: limits.headersMs,
      requestTimeout: limits.requestMs,
      connectionsCheckingInterval: Math.min(30_000, Math.max(50, Math.min(limits.headersMs, limits.requestMs) / 4)),
    }
    const adminHash = hashToken(adminToken)
    const genReqId = requestIds()
    const direct = new DirectPhoneHome({
      context,
      adminHash,
      lingerMs: limits.lingerMs,
      ...(opts.logger ? {requestLog: {genReqId, log: (reqId: string) => app!.log.child({reqId})}} : {}),
    })
    app = buildApp({
      context,
      adminHash,
      limiter: new AuthFailureLimiter(opts.authFailureLimit ?? 20),
      health: () => guard.health(),
      lingerMs: limits.lingerMs,
      fastify: {
        logger: loggerOptions(opts.logger),
        genReqId,
        serverFactory: (handler) => {
          const wrapped = guard.wrap(direct.wrap(handler))
          const server = tls
            ? https.createServer({...tls, ...serverOptions}, wrapped)
            : http.createServer(serverOptions, wrapped)
          guard.attach(server)
          return server
        },
      },
    })

    const listen = opts.listen ?? {host: '127.0.0.1', port: 0}
    try {
      await app.listen({host: listen.host, port: listen.port, backlog: 4096})
    } catch (error) {
      // Keep the errno code, so a caller can tell a taken port (EADDRINUSE) from other failures.
      throw Object.assign(new Error(`cannot listen on ${listen.host}:${listen.port}: ${(error as Error).message}`), {
        code: (error as NodeJS.ErrnoException).code,
      })
    }
    const address = app.server.address()
    const port = typeof address === 'object' && address ? address.port : listen.port
    const host = ['0.0.0.0', '::', ''].includes(listen.host) ? '127.0.0.1' : listen.host
    const url = `${opts.tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}`

    const running = app
    let closing: Promise<void> | undefined
    return {
      url,
      port,
      adminToken,
      ...(adminTokenFile ? {adminTokenFile} : {}),
      close() {
        closing ??= (async () => {
          context.waiters.shutdown()
          direct.close()
          await running.close()
          await closeFederation()
          await store.close()
        })()
        return closing
      },
    }
  } catch (error) {
    await app?.close()
    await closeFederation()
    await store.close()
    throw error
  }
}

/** A site needs a broker and the other way round; SITE_RULE for its name; the outbox lives in SQLite. */
function checkFederation(opts: ConfigServerOptions, where: {sqlite: string} | {postgresql: string}): void {
  if (opts.site === undefined && opts.broker === undefined) return
  if (opts.site === undefined || opts.broker === undefined)
    throw new Error('a federated config server needs both its site (--site) and its broker (--broker)')
  if (!SITE_PATTERN.test(opts.site)) throw new Error(`--site ${opts.site}: ${SITE_RULE}`)
  if (!/^amqps?:\/\//.test(opts.broker.url)) throw new Error('--broker must be an amqp:// or amqps:// URL')
  if ('postgresql' in where)
    throw new Error(
      'a federated config server keeps its outbox in SQLite: --broker cannot be used with --store postgresql://… (run one federated server per site, on --state)',
    )
}

function pem(value: string, what: string): string {
  if (value.includes('-----BEGIN')) return value
  try {
    return fs.readFileSync(value, 'utf8')
  } catch (error) {
    throw new Error(`cannot read the TLS ${what} ${value}: ${(error as Error).message}`, {cause: error})
  }
}

/** Request ids as fastify makes them (req-1, req-2, … in base 36), one sequence for fastify and the direct phone-homes. */
function requestIds(): () => string {
  let next = 0
  return () => {
    next = (next + 1) & 0x7fffffff
    return `req-${next.toString(36)}`
  }
}

function loggerOptions(logger: boolean | object | undefined): boolean | object {
  if (!logger) return false
  const redact = {paths: ['req.headers.authorization', 'headers.authorization'], censor: '[redacted]'}
  return logger === true ? {level: 'info', redact} : {redact, ...logger}
}

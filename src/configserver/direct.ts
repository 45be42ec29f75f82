/**
 * Phone-homes answered below fastify. The phone-home is the config server's busiest request (every
 * node, at every boot and agent restart), and fastify's per-request machinery (the router, the hook
 * runner, the content-type parser, the reply and its hooks) cost about as much CPU as the write
 * itself. This handler sits in front of fastify's and takes a request only when it is plainly one
 * the phone-home route would serve: `PUT /v1/deployments/:dep/instances/:id/facts` with valid ids and
 * no query, a JSON body of a stated length within the body limit (no chunked or encoded body), and
 * a token that opens that instance (its own, or the admin's) and whose use needs no write first.
 * Anything else goes on to fastify untouched, nothing of it read: a refusal, a rate limit, a closing
 * server, a forwarded address that does not parse are all answered there, exactly as before.
 *
 * What it takes, it answers as the route would: the same work (phonehome.ts), the same JSON parse
 * (secure-json-parse, with fastify's settings), the same error bodies (errors.ts), the same request
 * log lines when logging is on.
 */
import type {IncomingMessage, ServerResponse} from 'node:http'
import secureJson from 'secure-json-parse'
import {ID_PATTERN} from '../core/ids.js'
import {callerLookup, resolveCaller} from './auth.js'
import {closeAfterRefusal} from './connections.js'
import {errorAnswer} from './errors.js'
import type {ServerContext} from './http.js'
import {LIMITS} from './limits.js'
import {phoneHome} from './phonehome.js'
import {bearerToken} from './tokens.js'

type Handler = (req: IncomingMessage, res: ServerResponse) => void

/** The log of one request, as fastify's request logger (pino) takes it. */
export interface RequestLog {
  info(fields: Record<string, unknown>, message: string): void
  error(fields: Record<string, unknown>, message: string): void
}

export interface DirectOptions {
  context: ServerContext
  adminHash: Buffer
  /** How long a refused request's remaining body is drained before its connection is closed (ms). */
  lingerMs: number
  /** The log of a request with this id, when requests are logged; the ids come from the generator fastify uses too. */
  requestLog?: {log(reqId: string): RequestLog; genReqId(req: IncomingMessage): string}
}

const FACTS_PATH = /^\/v1\/deployments\/([^/?#]+)\/instances\/([^/?#]+)\/facts$/
const JSON_TYPE = /^application\/json(;\s*charset=utf-8)?$/i
const LENGTH = /^[1-9][0-9]{0,7}$/
const PARSE = {protoAction: 'error', constructorAction: 'error'} as const
const TYPE = 'application/json; charset=utf-8'

/** The phone-home's ids, when the request is one this handler takes before reading it; undefined sends it on to fastify. */
function plainPhoneHome(req: IncomingMessage): {dep: string; id: string} | undefined {
  if (req.method !== 'PUT') return undefined
  const match = FACTS_PATH.exec(req.url ?? '')
  if (!match || !ID_PATTERN.test(match[1]) || !ID_PATTERN.test(match[2])) return undefined
  const {headers} = req
  const length = headers['content-length']
  if (
    length === undefined ||
    !LENGTH.test(length) ||
    Number(length) > LIMITS.bodyBytes ||
    headers['transfer-encoding'] !== undefined ||
    headers['content-encoding'] !== undefined ||
    !JSON_TYPE.test(headers['content-type'] ?? '')
  )
    return undefined
  return {dep: match[1], id: match[2]}
}

export class DirectPhoneHome {
  private closing = false

  constructor(private readonly options: DirectOptions) {}

  /** From now on every request goes to fastify, which answers 503 while it closes. */
  close(): void {
    this.closing = true
  }

  /** `next` (fastify's handler), with the plain phone-homes taken off it. */
  wrap(next: Handler): Handler {
    return (req, res) => {
      let taken: Parameters<DirectPhoneHome['serve']> | undefined
      try {
        const ids = this.closing ? undefined : plainPhoneHome(req)
        const caller = ids && this.caller(req, ids.dep, ids.id)
        const client = caller && this.options.context.client({raw: req})
        if (ids && caller && client && !client.problem) taken = [req, res, ids.dep, ids.id, caller, client]
      } catch {
        // Nothing is read yet: whatever went wrong here, fastify answers the request as it would any other.
      }
      if (taken) this.serve(...taken)
      else next(req, res)
    }
  }

  /**
   * The caller, when its token opens this instance as it is: the admin token, the instance's node
   * token once its first use is recorded, or a bootstrap token the exchange takes. Otherwise fastify's
   * auth decides (and records the node token's first use, limits failures, answers 401/403/429).
   */
  private caller(req: IncomingMessage, dep: string, id: string) {
    const {context, adminHash} = this.options
    const caller = resolveCaller(bearerToken(req.headers.authorization), callerLookup(context, adminHash), true)
    if ('refused' in caller) return undefined
    if (caller.kind === 'admin') return caller
    if (caller.deployment !== dep || caller.id !== id) return undefined
    if (caller.token === 'node' && context.registry.get(dep)?.instance(id)?.nodeTokenUsedAt === undefined)
      return undefined
    return caller
  }

  private serve(
    req: IncomingMessage,
    res: ServerResponse,
    dep: string,
    id: string,
    caller: NonNullable<ReturnType<DirectPhoneHome['caller']>>,
    client: {address: string; problem?: string},
  ): void {
    const started = performance.now()
    const log = this.options.requestLog?.log(this.options.requestLog.genReqId(req))
    log?.info({req: requestFields(req)}, 'incoming request')
    const answer = (statusCode: number, body: unknown, headers: Record<string, string> = {}): void => {
      const text = JSON.stringify(body)
      if (closeAfterRefusal(req, this.options.lingerMs)) headers = {...headers, connection: 'close'}
      res.writeHead(statusCode, {...headers, 'content-type': TYPE, 'content-length': Buffer.byteLength(text)})
      res.end(text)
      log?.info({res: {statusCode}, responseTime: performance.now() - started}, 'request completed')
    }
    const fail = (error: Error & {statusCode?: number; code?: string}): void => {
      const refused = errorAnswer(error)
      if (refused.logged) log?.error({err: error}, refused.logged)
      answer(refused.statusCode, refused.body, refused.headers)
    }
    const chunks: Buffer[] = []
    const onData = (chunk: Buffer) => chunks.push(chunk)
    const done = (error?: Error & {statusCode?: number}) => {
      req.off('data', onData).off('end', done).off('error', done)
      try {
        read(error)
      } catch {
        res.destroy()
      }
    }
    const read = (error?: Error & {statusCode?: number}) => {
      if (error) {
        // As fastify's body reader: a stream error (a stalled body's 408, a reset) is the client's.
        if (!(typeof error.statusCode === 'number' && error.statusCode >= 400)) error.statusCode = 400
        return fail(error)
      }
      let body: unknown
      try {
        body = secureJson.parse(
          chunks.length === 1 ? chunks[0].toString('utf8') : Buffer.concat(chunks).toString('utf8'),
          PARSE,
        )
      } catch {
        return answer(400, {error: "Body is not valid JSON but content-type is set to 'application/json'"})
      }
      phoneHome(this.options.context, dep, id, body, caller, client)
        .then((facts) => answer(200, facts), fail)
        // An answer that cannot be written (the socket went away meanwhile) ends the connection, not the server.
        .catch(() => res.destroy())
    }
    req.on('data', onData).on('end', done).on('error', done)
  }
}

/** The request in the shape fastify's request serializer reads (`ip` is the TCP peer, as fastify's without its trustProxy). */
function requestFields(req: IncomingMessage) {
  return {
    method: req.method,
    url: req.url,
    headers: req.headers,
    host: req.headers.host,
    ip: req.socket.remoteAddress,
    socket: req.socket,
  }
}

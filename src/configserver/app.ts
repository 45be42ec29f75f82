/**
 * The config server's fastify application, without a socket: errors as `{error}` bodies, the auth
 * plugin, then the routes grouped by resource. `startConfigServer` (server.ts) listens with it; tests
 * can `inject` requests into it.
 */
import Fastify, {type FastifyInstance, type FastifyReply, type FastifyServerOptions} from 'fastify'
import {type AuthFailureLimiter, authPlugin} from './auth.js'
import {closeAfterRefusal} from './connections.js'
import {errorAnswer} from './errors.js'
import type {ServerContext} from './http.js'
import {LIMITS} from './limits.js'
import {adminRoutes} from './routes/admin.js'
import {instanceRoutes} from './routes/instances.js'

export interface AppOptions {
  context: ServerContext
  adminHash: Buffer
  limiter: AuthFailureLimiter
  /** What /healthz says beyond `ok`. */
  health?: () => Record<string, unknown>
  /** How long a refused request's remaining body is drained before its connection is closed (ms). */
  lingerMs?: number
  /** fastify's own options: logger, https, serverFactory, … */
  fastify?: FastifyServerOptions & {https?: unknown}
}

/** The compiler factory of a server that has no route schemas: a route given one fails to register, saying why. */
function noSchemas(): () => never {
  return () => {
    throw new Error('the config server checks bodies with zod in its routes; a fastify route schema is not compiled')
  }
}

export function buildApp(options: AppOptions): FastifyInstance {
  const app = Fastify({
    bodyLimit: LIMITS.bodyBytes,
    routerOptions: {maxParamLength: 2048},
    return503OnClosing: true,
    // Bodies and queries are checked with zod in the routes, not with route schemas: fastify need not
    // load Ajv and fast-json-stringify (a sixth of a setup-node run's start) for compilers never used.
    schemaController: {compilersFactory: {buildValidator: noSchemas, buildSerializer: noSchemas}},
    // Malformed URLs (bad percent-encoding, over-long ids) get the same {error} body as everything else.
    frameworkErrors: (error, _request, reply: FastifyReply) => {
      const status = error.statusCode && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 400
      void reply
        .code(status)
        .send({error: `bad request URL (${error.code ?? 'invalid'}): ids must be 1-253 of A-Z a-z 0-9 . _ : -`})
    },
    ...options.fastify,
  } as FastifyServerOptions) as unknown as FastifyInstance

  app.setErrorHandler((error: Error & {statusCode?: number; code?: string}, request, reply) => {
    const answer = errorAnswer(error)
    if (answer.logged) request.log.error({err: error}, answer.logged)
    reply.code(answer.statusCode).headers(answer.headers).send(answer.body)
  })

  app.setNotFoundHandler((request, reply) => {
    reply.code(404).send({
      error: `no route ${request.method} ${request.url.split('?')[0].slice(0, 200)}; the routes are under /v1/deployments/`,
    })
  })

  // A refusal answered before the body was read closes the connection: a client cannot hold it by never sending the body.
  // A callback hook, not an async one: it runs on every answer, and a promise per answer costs.
  app.addHook('onSend', (request, reply, payload, done) => {
    if (closeAfterRefusal(request.raw, options.lingerMs ?? 5000)) reply.header('connection', 'close')
    done(null, payload)
  })

  void app.register(authPlugin, {context: options.context, adminHash: options.adminHash, limiter: options.limiter})
  app.get('/healthz', async () => ({ok: true, ...options.health?.()}))
  void app.register(adminRoutes, {context: options.context})
  void app.register(instanceRoutes, {context: options.context})
  return app
}

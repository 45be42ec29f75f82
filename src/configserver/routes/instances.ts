/** An instance's routes: phone home (facts), its configuration (long-poll), service reports, role map and hosts block. */
import {Readable} from 'node:stream'
import type {FastifyPluginAsync, FastifyReply, FastifyRequest} from 'fastify'
import {z} from 'zod'
import {ID_PATTERN, ID_RULE} from '../../core/ids.js'
import {HttpError} from '../errors.js'
import {body, findService, ids, ownInstance, type ServerContext} from '../http.js'
import {phoneHome} from '../phonehome.js'
import {type FactsResponse, type InstanceConfig, serviceReportSchema} from '../protocol.js'
import type {Registration} from '../model.js'

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
    roles: z
      .string()
      .regex(/^(true|false|since:[A-Za-z0-9_-]{1,64})$/, 'roles is true, false or since:VERSION')
      .optional(),
  })
  .strict()

const ROLES_LEFT_OUT = ',"roles":{}'
/** A delta up to this size goes into the answer's text; a larger one is sent from its shared buffer. */
const TEXT_DELTA_BYTES = 16 * 1024

/**
 * The role-map part of a config answer (`roles` as the query asks), as JSON members to follow the
 * instance's part: text when it is small (left out, or a small delta), else chunks around the
 * deployment's shared buffer (the whole map, or a large delta), not decoded and copied into each answer.
 */
function rolesPart(registration: Registration, roles: string | undefined): string | Buffer[] {
  if (roles === 'false') return ROLES_LEFT_OUT
  const current = registration.roles()
  const version = `,"rolesVersion":"${current.version}"`
  const delta = roles?.startsWith('since:') ? registration.rolesDelta(roles.slice('since:'.length)) : undefined
  if (delta && delta.length <= TEXT_DELTA_BYTES) return `${version},"rolesDelta":${delta.toString()}`
  if (delta) return [Buffer.from(`${version},"rolesDelta":`), delta]
  return [Buffer.from(',"roles":'), current.json, Buffer.from(version)]
}

/** Whether an If-None-Match header names `etag` (weak comparison, as RFC 9110 says for it). */
function noneMatchHits(header: string | undefined, etag: string): boolean {
  return (header ?? '').split(',').some((tag) => {
    const value = tag.trim()
    return value === '*' || value === etag || value === `W/${etag}`
  })
}

/** A text with its ETag; 304 without a body when the client holds it already. */
function sendTagged(request: FastifyRequest, reply: FastifyReply, {text, etag}: {text: string; etag: string}) {
  reply.header('etag', etag).type('text/plain; charset=utf-8')
  if (noneMatchHits(request.headers['if-none-match'], etag)) return reply.code(304).send()
  return reply.send(text)
}

const CLOSE = Buffer.from('}')

/**
 * A config body: the instance's part, then the role-map part. One string when the role part is text
 * (most answers: a long-poll's fan-out writes thousands of them); else chunks around the shared map.
 */
function sendConfig(
  reply: FastifyReply,
  config: Omit<InstanceConfig, 'roles'>,
  roles: string | Buffer[],
): FastifyReply {
  if (config.failed && config.failed.length > 0) {
    const what = config.failed.map((f) => `${f.service}/${f.param}: ${f.message}`)
    throw new HttpError(
      422,
      `the configuration of ${config.instance} cannot be rendered: ${what.slice(0, 3).join('; ')}${what.length > 3 ? ` and ${what.length - 3} more` : ''}`,
      {failed: config.failed, hint: 'fix the template and register the deployment again'},
    )
  }
  const instancePart = JSON.stringify(config).slice(0, -1)
  const payload = typeof roles === 'string' ? `${instancePart}${roles}}` : [Buffer.from(instancePart), ...roles, CLOSE]
  const length = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.reduce((n, c) => n + c.length, 0)
  reply
    .code(config.complete ? 200 : 202)
    .type('application/json; charset=utf-8')
    .header('content-length', length)
  if (!config.complete) reply.header('retry-after', String(RETRY_AFTER_SEC))
  if (typeof payload === 'string') return reply.send(payload)
  return reply.send(length < 64 * 1024 ? Buffer.concat(payload, length) : Readable.from(payload))
}

export const instanceRoutes: FastifyPluginAsync<{context: ServerContext}> = async (app, {context}) => {
  const {store, registry, waiters} = context
  const instance = {config: {auth: 'instance' as const}}

  // A phone-home with the bootstrap token exchanges it for a node token, in the same transaction as the facts.
  // Most phone-homes are answered below fastify (direct.ts), with the same work: this route takes the rest.
  app.put(
    '/v1/deployments/:dep/instances/:id/facts',
    {config: {auth: 'instance', exchange: true}},
    async (request): Promise<FactsResponse> => {
      const {dep, id} = ids(request.params, 'dep', 'id')
      return phoneHome(context, dep, id, request.body, request.caller, context.client(request))
    },
  )

  app.get('/v1/deployments/:dep/instances/:id/config', instance, async (request, reply) => {
    const {dep, id} = ids(request.params, 'dep', 'id')
    const query = body(configQuerySchema, request.query, 'query')
    const wait = Math.min(Number(query.wait ?? 0), MAX_WAIT_SEC)
    await context.current(dep)
    let {registration, instance} = registry.instance(dep, id)
    let service = query.service === undefined ? undefined : findService(instance, query.service)
    if (wait > 0 && !registration.settled(instance, service)) {
      // The socket is quiet while the answer is held: the idle limit does not apply meanwhile.
      const socket = request.raw.socket
      const idle = socket.timeout ?? 0
      socket.setTimeout(0)
      await waiters.wait(dep, id, query.service, wait, reply.raw)
      if (!socket.destroyed) socket.setTimeout(idle)
      // Read again: the instance (or its service) may have been replaced or removed meanwhile (404).
      ;({registration, instance} = registry.instance(dep, id))
      if (query.service !== undefined) service = findService(instance, query.service)
    }
    // `roles=false`: a client that fetches /roles and /hosts itself need not get the whole role map each time.
    return sendConfig(reply, registration.config(instance, service), rolesPart(registration, query.roles))
  })

  app.put('/v1/deployments/:dep/instances/:id/services/:svc', instance, async (request) => {
    const {dep, id, svc} = ids(request.params, 'dep', 'id', 'svc')
    const report = body(serviceReportSchema, request.body, 'service report')
    const service = findService(ownInstance(registry.instance(dep, id)), svc)
    const undeclared = Object.keys(report.outputs).filter((key) => !service.provides.includes(key))
    if (undeclared.length > 0) {
      throw new HttpError(
        400,
        `service ${svc} does not provide ${undeclared.join(', ')}; it provides: ${service.provides.join(', ') || 'nothing'}`,
        {hint: 'declare the key in the service metadata "provides", or stop writing it to $NODESET_OUTPUT'},
      )
    }
    const now = Date.now()
    const changed = await store.report(dep, id, svc, report, now, (n) => {
      if (n > 0) registry.wrote(dep)
      const registration = registry.get(dep)
      if (n > 0 && registration) waiters.wakeSoon(dep, registration.recordRun(id, svc, report, now))
    })
    if (changed === 0) throw new HttpError(404, `unknown instance ${id} in deployment ${dep}`)
    return {deployment: dep, instance: id, service: svc, state: report.state}
  })

  app.get('/v1/deployments/:dep/instances/:id/roles', instance, async (request, reply) => {
    const {dep, id} = ids(request.params, 'dep', 'id')
    await context.current(dep)
    const {registration} = registry.instance(dep, id)
    return sendTagged(request, reply, registration.roleMap())
  })

  app.get('/v1/deployments/:dep/instances/:id/hosts', instance, async (request, reply) => {
    const {dep, id} = ids(request.params, 'dep', 'id')
    await context.current(dep)
    const {registration} = registry.instance(dep, id)
    return sendTagged(request, reply, registration.hostsBlock())
  })
}

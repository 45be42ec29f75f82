/** The admin's routes: register or replace a deployment, read its status, state and graph, delete it or one instance. */
import type {FastifyPluginAsync} from 'fastify'
import {HttpError} from '../errors.js'
import {ids, type ServerContext} from '../http.js'
import {LIMITS} from '../limits.js'
import {planRegistration} from '../register.js'

export const adminRoutes: FastifyPluginAsync<{context: ServerContext}> = async (app, {context}) => {
  const {store, registry} = context
  const admin = {config: {auth: 'admin' as const}}

  app.put('/v1/deployments/:dep', {...admin, bodyLimit: LIMITS.registrationBodyBytes}, async (request, reply) => {
    const {dep} = ids(request.params, 'dep')
    const plan = planRegistration(dep, request.body)
    const {federation} = context
    if (plan.federation && !federation)
      throw new HttpError(400, `deployment ${dep} spans sites, but this config server is not federated`, {
        hint: 'start it with --site NAME --broker amqp(s)://… (docs/federation.md)',
      })
    federation?.accepts(plan)
    const now = Date.now()
    const tokens = await store.register(plan, now, (record) => registry.set(dep, record, plan.analysis))
    await federation?.registered(dep)
    reply.code(201)
    return {deployment: dep, tokens}
  })

  app.get('/v1/deployments/:dep/status', admin, async (request) => {
    const {dep} = ids(request.params, 'dep')
    await context.current(dep)
    const status = registry.registration(dep).status(Date.now())
    const federation = context.federation?.status(dep)
    return federation ? {...status, federation} : status
  })

  app.get('/v1/deployments/:dep/state', admin, async (request) => {
    const {dep} = ids(request.params, 'dep')
    await context.current(dep)
    return registry.registration(dep).state()
  })

  app.get('/v1/deployments/:dep/graph', admin, async (request) => {
    const {dep} = ids(request.params, 'dep')
    await context.current(dep)
    const {vertices, edges} = registry.registration(dep).analysis()
    return {vertices, edges}
  })

  app.delete('/v1/deployments/:dep', admin, async (request, reply) => {
    const {dep} = ids(request.params, 'dep')
    await context.current(dep)
    registry.registration(dep)
    const removed = await store.deleteDeployment(dep, (n) => n > 0 && registry.set(dep, undefined))
    if (removed === 0) throw new HttpError(404, `unknown deployment ${dep}`)
    await context.federation?.forget(dep)
    return reply.code(204).send()
  })

  app.delete('/v1/deployments/:dep/instances/:id', admin, async (request, reply) => {
    const {dep, id} = ids(request.params, 'dep', 'id')
    await context.current(dep)
    registry.instance(dep, id)
    const removed = await store.deleteInstance(dep, id, (n, record) => n > 0 && registry.set(dep, record))
    if (removed === 0) throw new HttpError(404, `unknown instance ${id} in deployment ${dep}`)
    return reply.code(204).send()
  })
}

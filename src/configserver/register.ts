/**
 * Registering (or replacing) a deployment: check the request the way `nodeset plan` checks a
 * nodeset file, then write it so instances that stay keep their facts, outputs, contact times
 * and tokens, new ones get a bootstrap token (returned once), and removed ones are dropped.
 */
import type {Analysis} from '../plan/check.js'
import {analyze} from '../plan/check.js'
import type {Diagnostic} from '../core/diagnostics.js'
import {HttpError, zodIssues} from './errors.js'
import {hashToken, newToken} from './tokens.js'
import {checkInstances, type Inputs} from './model.js'
import {registerRequestSchema, type ServiceSpec} from './protocol.js'
import {renderProblem} from './resolve.js'
import {type Db, stmt} from './store.js'

export interface RegistrationPlan {
  deployment: string
  startupTimeoutSec?: number
  inputs: Inputs
  instances: Array<{id: string; role: string; index: number; services: ServiceSpec[]}>
  reissue: Set<string>
  analysis: Analysis
}

/** Validate a registration body; throws HttpError 400 with every problem found. */
export function planRegistration(deployment: string, body: unknown): RegistrationPlan {
  const parsed = registerRequestSchema.safeParse(body)
  if (!parsed.success) throw new HttpError(400, 'invalid registration', {issues: zodIssues(parsed.error)})
  const request = parsed.data

  const problems: Diagnostic[] = []
  const seen = new Set<string>()
  const nextIndex = new Map<string, number>()
  const instances = request.instances.map((instance) => {
    if (seen.has(instance.id))
      problems.push({message: `instance ${instance.id} is listed twice`, hint: 'give every instance its own id'})
    seen.add(instance.id)
    const index = instance.index ?? (nextIndex.get(instance.role) ?? 0) + 1
    nextIndex.set(instance.role, Math.max(index, nextIndex.get(instance.role) ?? 0))
    const names = new Set<string>()
    for (const service of instance.services) {
      if (names.has(service.name))
        problems.push({
          message: `instance ${instance.id} runs service ${service.name} twice`,
          hint: 'list each service once per instance',
        })
      names.add(service.name)
    }
    for (const service of instance.services) {
      for (const before of service.after) {
        if (!names.has(before))
          problems.push({
            message: `service ${service.name} of ${instance.id} runs after "${before}", which ${instance.id} does not run`,
            hint: `${instance.id} runs: ${[...names].join(', ')}`,
          })
      }
    }
    return {id: instance.id, role: instance.role, index, services: instance.services}
  })
  for (const id of request.reissueTokens) {
    if (!seen.has(id))
      problems.push({
        message: `reissueTokens names ${id}, which is not among the instances`,
        hint: 'list only instances of this registration',
      })
  }
  if (problems.length > 0) throw new HttpError(400, describeProblems(problems), {diagnostics: problems})

  checkInputs(instances, request.inputs)

  const analysis = analyze(checkInstances(instances))
  if (analysis.problems.length > 0)
    throw new HttpError(400, describeProblems(analysis.problems), {diagnostics: analysis.problems})
  const unrenderable = renderProblems(instances)
  if (unrenderable.length > 0) throw new HttpError(400, describeProblems(unrenderable), {diagnostics: unrenderable})

  return {
    deployment,
    ...(request.startupTimeoutSec === undefined ? {} : {startupTimeoutSec: request.startupTimeoutSec}),
    inputs: request.inputs,
    instances,
    reissue: new Set(request.reissueTokens),
    analysis,
  }
}

/** Templates that parse and whose references resolve, but that handlebars cannot render (`renderProblem`). */
function renderProblems(instances: RegistrationPlan['instances']): Diagnostic[] {
  const problems: Diagnostic[] = []
  for (const instance of instances)
    for (const service of instance.services)
      for (const [param, spec] of Object.entries(service.params)) {
        if (!('template' in spec)) continue
        const problem = renderProblem(spec.template)
        if (problem === undefined) continue
        problems.push({
          message: `param ${param} of ${service.name}: cannot be rendered: ${problem}`,
          ...(spec.source ? {source: spec.source} : {}),
          hint: 'templates may use ip, private_ip, hostname, fact, output, nodes and the handlebars built-ins (if, unless, each, with, lookup); no partials',
        })
        if (problems.length >= 100) return problems
      }
  return problems
}

function describeProblems(problems: Diagnostic[]): string {
  const n = problems.length
  return `the deployment has ${n} problem${n === 1 ? '' : 's'}; nothing was registered`
}

/** Every `{input: true}` param needs a value, and every value an input param (a typo is caught, not ignored). */
function checkInputs(instances: RegistrationPlan['instances'], inputs: Inputs): void {
  const wanted = new Set<string>()
  const missing: string[] = []
  for (const instance of instances) {
    for (const service of instance.services) {
      for (const [param, spec] of Object.entries(service.params)) {
        if (!('input' in spec)) continue
        const key = `${instance.id}/${service.name}/${param}`
        wanted.add(key)
        if (inputs[instance.id]?.[service.name]?.[param] === undefined) missing.push(key)
      }
    }
  }
  const unexpected = Object.entries(inputs)
    .flatMap(([instance, services]) =>
      Object.entries(services).flatMap(([service, params]) =>
        Object.keys(params).map((param) => `${instance}/${service}/${param}`),
      ),
    )
    .filter((key) => !wanted.has(key))
  if (missing.length > 0) {
    throw new HttpError(400, `missing inputs: ${missing.join(', ')}`, {
      missing,
      hint: 'supply them in "inputs" as inputs[instance][service][param]',
    })
  }
  if (unexpected.length > 0) {
    throw new HttpError(400, `inputs for params that are not inputs: ${unexpected.join(', ')}`, {
      unexpected,
      hint: 'only params declared {"input": true} take inputs',
    })
  }
}

/** Write the registration; returns the tokens of new and reissued instances. */
export function writeRegistration(db: Db, plan: RegistrationPlan, now: number): Record<string, string> {
  stmt(
    db,
    `INSERT INTO deployments (name, registered_at, startup_timeout_sec, inputs) VALUES (?, ?, ?, ?)
     ON CONFLICT (name) DO UPDATE SET registered_at = excluded.registered_at, startup_timeout_sec = excluded.startup_timeout_sec, inputs = excluded.inputs`,
  ).run(plan.deployment, now, plan.startupTimeoutSec ?? null, JSON.stringify(plan.inputs))
  const existing = new Set(
    stmt(db, 'SELECT id FROM instances WHERE deployment = ?').pluck().all(plan.deployment) as string[],
  )
  const insert = stmt(
    db,
    'INSERT INTO instances (deployment, id, role, idx, services, token_hash) VALUES (?, ?, ?, ?, ?, ?)',
  )
  const update = stmt(db, 'UPDATE instances SET role = ?, idx = ?, services = ? WHERE deployment = ? AND id = ?')
  // A reissued instance starts over with a bootstrap token: its node token stops working too.
  const reissue = stmt(
    db,
    'UPDATE instances SET token_hash = ?, node_token_hash = NULL, exchanged_at = NULL, node_token_used_at = NULL WHERE deployment = ? AND id = ?',
  )
  const dropRuns = stmt(
    db,
    'DELETE FROM runs WHERE deployment = ? AND instance = ? AND service NOT IN (SELECT value FROM json_each(?))',
  )
  const remove = stmt(db, 'DELETE FROM instances WHERE deployment = ? AND id = ?')
  const tokens: Record<string, string> = {}
  for (const instance of plan.instances) {
    const services = JSON.stringify(instance.services)
    if (existing.has(instance.id)) {
      existing.delete(instance.id)
      update.run(instance.role, instance.index, services, plan.deployment, instance.id)
      dropRuns.run(plan.deployment, instance.id, JSON.stringify(instance.services.map((s) => s.name)))
      if (!plan.reissue.has(instance.id)) continue
      tokens[instance.id] = newToken()
      reissue.run(hashToken(tokens[instance.id]), plan.deployment, instance.id)
    } else {
      tokens[instance.id] = newToken()
      insert.run(plan.deployment, instance.id, instance.role, instance.index, services, hashToken(tokens[instance.id]))
    }
  }
  for (const gone of existing) remove.run(plan.deployment, gone)
  return tokens
}

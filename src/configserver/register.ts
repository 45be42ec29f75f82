/**
 * Registering (or replacing) a deployment: check the request the way `nodeset plan` checks a
 * nodeset file, then write it so instances that stay keep their facts, outputs, contact times
 * and tokens, new ones get a bootstrap token (returned once), and removed ones are dropped.
 */
import type {Analysis} from '../plan/check.js'
import {analyze} from '../plan/check.js'
import type {Diagnostic} from '../core/diagnostics.js'
import {HttpError, zodIssues} from './errors.js'
import {randomBytes} from 'node:crypto'
import {parseKeys} from './federation/keys.js'
import {hashToken, newToken} from './tokens.js'
import {checkInstances, type Inputs} from './model.js'
import {type FederationSpec, registerRequestSchema, type ServiceSpec} from './protocol.js'
import {renderProblem} from './resolve.js'
import {type Db, stmt} from './store.js'

export interface RegistrationPlan {
  deployment: string
  startupTimeoutSec?: number
  inputs: Inputs
  instances: Array<{id: string; role: string; index: number; services: ServiceSpec[]; site?: string}>
  reissue: Set<string>
  analysis: Analysis
  /** A deployment spanning sites: this server's site and keys (checked: the keys parse). */
  federation?: FederationSpec
}

/** Whether this server's site owns the instance (every instance, when the deployment is not federated). */
export const ownedHere = (instance: {site?: string}, site: string | undefined): boolean =>
  site === undefined || instance.site === undefined || instance.site === site

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
    return {
      id: instance.id,
      role: instance.role,
      index,
      services: instance.services,
      ...(instance.site === undefined ? {} : {site: instance.site}),
    }
  })
  problems.push(...federationProblems(instances, request.federation))
  for (const id of request.reissueTokens) {
    if (!seen.has(id))
      problems.push({
        message: `reissueTokens names ${id}, which is not among the instances`,
        hint: 'list only instances of this registration',
      })
  }
  if (problems.length > 0) throw new HttpError(400, describeProblems(problems), {diagnostics: problems})

  const site = request.federation?.site
  checkInputs(
    instances.filter((instance) => ownedHere(instance, site)),
    request.inputs,
  )

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
    ...(request.federation ? {federation: request.federation} : {}),
  }
}

/** Sites and keys of a federated registration: every instance names a known site, and every key parses. */
function federationProblems(instances: RegistrationPlan['instances'], federation?: FederationSpec): Diagnostic[] {
  const problems: Diagnostic[] = []
  if (!federation) {
    const sited = instances.filter((instance) => instance.site !== undefined)
    if (sited.length > 0)
      problems.push({
        message: `instance ${sited[0].id} names site ${sited[0].site}, but the registration has no "federation"`,
        hint: 'a deployment spanning sites is registered with its federation block (docs/federation.md)',
      })
    return problems
  }
  try {
    parseKeys(federation)
  } catch (error) {
    problems.push({message: (error as Error).message, hint: 'the CLI makes these keys; register again with its body'})
  }
  const sites = new Set([federation.site, ...Object.keys(federation.peers)])
  for (const instance of instances) {
    if (instance.site === undefined)
      problems.push({
        message: `instance ${instance.id} names no site`,
        hint: 'in a federated registration, every instance has one',
      })
    else if (!sites.has(instance.site))
      problems.push({
        message: `instance ${instance.id} is of site ${instance.site}, which is neither this server's site nor a peer`,
        hint: `the sites: ${[...sites].join(', ')}`,
      })
    if (problems.length >= 100) break
  }
  return problems
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

interface InstanceSite {
  id: string
  site: string | null
}

/**
 * Write the registration; returns the tokens of new and reissued instances of this server's site (an
 * instance of another site gets a hash no token has: it phones home to its own site). The ids of
 * instances it removes go to `removed`.
 */
export function writeRegistration(
  db: Db,
  plan: RegistrationPlan,
  now: number,
  removed: Array<{id: string; site?: string}> = [],
): Record<string, string> {
  const site = plan.federation?.site
  stmt(
    db,
    `INSERT INTO deployments (name, registered_at, startup_timeout_sec, inputs) VALUES (?, ?, ?, ?)
     ON CONFLICT (name) DO UPDATE SET registered_at = excluded.registered_at, startup_timeout_sec = excluded.startup_timeout_sec, inputs = excluded.inputs`,
  ).run(plan.deployment, now, plan.startupTimeoutSec ?? null, JSON.stringify(plan.inputs))
  const existing = new Map(
    (stmt(db, 'SELECT id, site FROM instances WHERE deployment = ?').all(plan.deployment) as InstanceSite[]).map(
      (row) => [row.id, row.site],
    ),
  )
  const insert = stmt(
    db,
    'INSERT INTO instances (deployment, id, role, idx, services, token_hash, site) VALUES (?, ?, ?, ?, ?, ?, ?)',
  )
  const update = stmt(
    db,
    'UPDATE instances SET role = ?, idx = ?, services = ?, site = ? WHERE deployment = ? AND id = ?',
  )
  const disown = stmt(
    db,
    'UPDATE instances SET token_hash = ?, node_token_hash = NULL, exchanged_at = NULL, node_token_used_at = NULL WHERE deployment = ? AND id = ?',
  )
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
    const own = ownedHere(instance, site)
    if (existing.has(instance.id)) {
      existing.delete(instance.id)
      update.run(instance.role, instance.index, services, instance.site ?? null, plan.deployment, instance.id)
      dropRuns.run(plan.deployment, instance.id, JSON.stringify(instance.services.map((s) => s.name)))
      // An instance now of another site keeps no token that works here.
      if (!own) disown.run(randomBytes(32), plan.deployment, instance.id)
      if (!own || !plan.reissue.has(instance.id)) continue
      tokens[instance.id] = newToken()
      reissue.run(hashToken(tokens[instance.id]), plan.deployment, instance.id)
    } else {
      const hash = own ? hashToken((tokens[instance.id] = newToken())) : randomBytes(32)
      insert.run(plan.deployment, instance.id, instance.role, instance.index, services, hash, instance.site ?? null)
    }
  }
  for (const [gone, goneSite] of existing) {
    remove.run(plan.deployment, gone)
    removed.push({id: gone, ...(goneSite === null ? {} : {site: goneSite})})
  }
  return tokens
}

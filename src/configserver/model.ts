/**
 * The config server's view of one deployment, in memory: who is registered, what each instance
 * reported, and what every service's configuration resolves to. Pure: no I/O, no clock (callers
 * pass `now`), so resolution and status are tested without a server.
 *
 * Resolution renders each template param with the plan's `renderTemplate` over a small world that
 * holds only the nodes the instance refers to, and caches per (instance, service) until one of
 * those nodes changes; `dependentsOf` says whose configuration a change may complete.
 */
import {type Analysis, type CheckInstance, analyze} from '../plan/check.js'
import {
  extractRefs,
  missingValues,
  parseTemplate,
  renderTemplate,
  type TemplateRef,
  type World,
  type WorldNode,
} from '../plan/template.js'
import {renderHostsBlock, renderRoleMap, type RoleMember} from '../plan/wiring.js'
import type {
  DeploymentPhase,
  DeploymentState,
  DeploymentStatus,
  InstanceConfig,
  ServiceSpec,
  ServiceStatus,
  Waiting,
} from './protocol.js'

export type FactValue = string | string[] | number | boolean
export type ServiceState = 'running' | 'succeeded' | 'failed'

/** What one service reported (by the node or by setup). Times are epoch milliseconds. */
export interface ServiceRun {
  state?: ServiceState
  exitCode?: number
  message?: string
  outputs: Record<string, string>
  startedAt?: number
  endedAt?: number
}

export interface InstanceRecord {
  id: string
  role: string
  index: number
  services: ServiceSpec[]
  /** SHA-256 of the bootstrap token issued at registration (carried in the node's user data). */
  tokenHash: Buffer
  /** SHA-256 of the node token the bootstrap token was exchanged for at the first phone-home. */
  nodeTokenHash?: Buffer
  /** When the bootstrap token was first exchanged, and when the node token was first used (epoch ms). */
  exchangedAt?: number
  nodeTokenUsedAt?: number
  /** Facts the node sent; `ip` is not among them (it is `address`, what the server saw). */
  facts: Record<string, FactValue>
  address?: string
  firstContact?: number
  lastContact?: number
  runs: Record<string, ServiceRun>
}

/** inputs[instance][service][param] */
export type Inputs = Record<string, Record<string, Record<string, string>>>

export interface DeploymentRecord {
  name: string
  registeredAt: number
  startupTimeoutSec?: number
  inputs: Inputs
  instances: InstanceRecord[]
}

export interface ResolvedService {
  complete: boolean
  params: Record<string, string>
  waiting: Waiting[]
}

/** The plan's checks take constants and templates alike; inputs carry no references. */
export function checkInstances(
  instances: Array<Pick<InstanceRecord, 'id' | 'role' | 'index' | 'services'>>,
): CheckInstance[] {
  return instances.map((instance) => ({
    id: instance.id,
    role: instance.role,
    index: instance.index,
    services: instance.services.map((service) => ({
      name: service.name,
      provides: service.provides,
      after: service.after,
      params: Object.entries(service.params).flatMap(([name, spec]) => {
        const value = 'template' in spec ? spec.template : 'value' in spec ? spec.value : undefined
        return value === undefined ? [] : [{name, value, source: spec.source}]
      }),
    })),
  }))
}

/** A template whose output depends only on the nodes it names (no `{{name}}`, `{{#each}}`, …) renders the same for everyone. */
const REF_HELPERS = new Set(['ip', 'private_ip', 'hostname', 'fact', 'output'])

function isContextFree(template: string): boolean {
  const ast = parseTemplate(template) as {
    body: Array<{
      type: string
      path?: {type: string; original?: unknown}
      params?: Array<{type: string}>
      hash?: unknown
    }>
  }
  return ast.body.every((statement) => {
    if (statement.type === 'ContentStatement' || statement.type === 'CommentStatement') return true
    if (statement.type !== 'MustacheStatement' || statement.hash) return false
    const name = statement.path?.type === 'PathExpression' ? statement.path.original : undefined
    const params = statement.params ?? []
    return (
      typeof name === 'string' &&
      REF_HELPERS.has(name) &&
      params.length > 0 &&
      params.every((p) => p.type === 'StringLiteral')
    )
  })
}

/** Parsed templates, shared by every deployment (templates repeat across instances). */
const templateInfo = new Map<string, {refs: TemplateRef[]; contextFree: boolean}>()

function infoOf(template: string): {refs: TemplateRef[]; contextFree: boolean} {
  let info = templateInfo.get(template)
  if (!info) {
    info = {refs: extractRefs(template), contextFree: template.includes('{{') ? isContextFree(template) : true}
    if (templateInfo.size > 50_000) templateInfo.clear()
    templateInfo.set(template, info)
  }
  return info
}

const RENDER_MEMO_LIMIT = 20_000
const RENDER_MEMO_KEY_LIMIT = 64 * 1024

export class Deployment {
  readonly name: string
  readonly registeredAt: number
  readonly startupTimeoutSec?: number
  readonly inputs: Inputs
  private readonly instances = new Map<string, InstanceRecord>()
  private readonly byRole = new Map<string, InstanceRecord[]>()
  /** target (role or node name) → instances whose templates refer to it. */
  private readonly dependents = new Map<string, Set<string>>()
  /** instance → the targets its templates refer to. */
  private readonly targets = new Map<string, string[]>()
  private readonly resolved = new Map<string, Map<string, ResolvedService>>()
  private readonly worldNodes = new Map<string, WorldNode>()
  private readonly renderMemo = new Map<string, string>()
  /** Everything derived from membership and addresses; dropped when an address changes. */
  private rolesCache?: {json: Buffer; map: InstanceConfig['roles']; roleMap?: string; hosts?: string}
  private analysisCache?: Analysis

  constructor(record: DeploymentRecord, analysis?: Analysis) {
    this.name = record.name
    this.registeredAt = record.registeredAt
    this.startupTimeoutSec = record.startupTimeoutSec
    this.inputs = record.inputs
    this.analysisCache = analysis
    for (const instance of record.instances) this.add(instance)
    for (const members of this.byRole.values()) members.sort((a, b) => a.index - b.index || a.id.localeCompare(b.id))
  }

  private add(instance: InstanceRecord): void {
    this.instances.set(instance.id, instance)
    const members = this.byRole.get(instance.role)
    if (members) members.push(instance)
    else this.byRole.set(instance.role, [instance])
    const targets = new Set<string>()
    for (const service of instance.services) {
      for (const spec of Object.values(service.params)) {
        if ('template' in spec) for (const ref of infoOf(spec.template).refs) targets.add(ref.target)
      }
    }
    this.targets.set(instance.id, [...targets])
    for (const target of targets) {
      const set = this.dependents.get(target)
      if (set) set.add(instance.id)
      else this.dependents.set(target, new Set([instance.id]))
    }
  }

  get deadline(): number | undefined {
    return this.startupTimeoutSec === undefined ? undefined : this.registeredAt + this.startupTimeoutSec * 1000
  }

  get size(): number {
    return this.instances.size
  }

  instance(id: string): InstanceRecord | undefined {
    return this.instances.get(id)
  }

  allInstances(): IterableIterator<InstanceRecord> {
    return this.instances.values()
  }

  /** The analysis of the registered instances (for the graph), computed once. */
  analysis(): Analysis {
    this.analysisCache ??= analyze(checkInstances([...this.instances.values()]))
    return this.analysisCache
  }

  /** Instances whose configuration may change when `id` changes (itself included). */
  dependentsOf(id: string): string[] {
    const instance = this.instances.get(id)
    const out = new Set<string>([id])
    for (const dependent of this.dependents.get(id) ?? []) out.add(dependent)
    if (instance) for (const dependent of this.dependents.get(instance.role) ?? []) out.add(dependent)
    return [...out]
  }

  private changed(id: string, addressChanged: boolean): string[] {
    this.worldNodes.delete(id)
    if (addressChanged) this.rolesCache = undefined
    const affected = this.dependentsOf(id)
    for (const dependent of affected) this.resolved.delete(dependent)
    return affected
  }

  /** Apply a phone-home; returns the instances whose configuration may have completed. */
  recordFacts(id: string, facts: Record<string, FactValue>, address: string, now: number): string[] {
    const instance = this.instances.get(id)
    if (!instance) return []
    Object.assign(instance.facts, facts)
    const addressChanged = instance.address !== address
    instance.address = address
    instance.firstContact ??= now
    instance.lastContact = now
    return this.changed(id, addressChanged)
  }

  /** Apply a service report (outputs merge into earlier ones). */
  recordRun(
    id: string,
    service: string,
    report: {state: ServiceState; exitCode?: number; outputs: Record<string, string>; message?: string},
    now: number,
  ): string[] {
    const instance = this.instances.get(id)
    if (!instance) return []
    const run = (instance.runs[service] ??= {outputs: {}})
    run.state = report.state
    run.exitCode = report.exitCode
    run.message = report.message
    Object.assign(run.outputs, report.outputs)
    run.startedAt ??= now
    run.endedAt = report.state === 'running' ? undefined : now
    return this.changed(id, false)
  }

  private worldNode(instance: InstanceRecord): WorldNode {
    let node = this.worldNodes.get(instance.id)
    if (!node) {
      const outputs: Record<string, Record<string, string>> = {}
      for (const [service, run] of Object.entries(instance.runs)) outputs[service] = run.outputs
      node = {
        name: instance.id,
        role: instance.role,
        index: instance.index,
        facts: instance.address === undefined ? {...instance.facts} : {...instance.facts, ip: instance.address},
        outputs,
        provides: Object.fromEntries(instance.services.map((s) => [s.name, s.provides])),
      }
      this.worldNodes.set(instance.id, node)
    }
    return node
  }

  /** Only the nodes an instance's templates name: the same answers as the whole deployment, far cheaper. */
  private worldFor(instance: InstanceRecord): World {
    const seen = new Set<string>()
    const nodes: WorldNode[] = []
    for (const target of this.targets.get(instance.id) ?? []) {
      const members = this.byRole.get(target) ?? []
      const named = this.instances.get(target)
      for (const member of named ? [...members, named] : members) {
        if (seen.has(member.id)) continue
        seen.add(member.id)
        nodes.push(this.worldNode(member))
      }
    }
    return {nodes}
  }

  private render(template: string, world: World, instance: InstanceRecord): string {
    const vars = () => {
      const self = this.worldNode(instance)
      return {
        ...self.facts,
        name: instance.id,
        role: instance.role,
        index: instance.index,
        n: instance.index,
        facts: self.facts,
        outputs: self.outputs,
      }
    }
    if (!infoOf(template).contextFree) return renderTemplate(template, world, vars())
    const key = `${template}\u0000${JSON.stringify(world.nodes)}`
    if (key.length > RENDER_MEMO_KEY_LIMIT) return renderTemplate(template, world, vars())
    let value = this.renderMemo.get(key)
    if (value === undefined) {
      value = renderTemplate(template, world, vars())
      if (this.renderMemo.size >= RENDER_MEMO_LIMIT) this.renderMemo.clear()
      this.renderMemo.set(key, value)
    }
    return value
  }

  /** One service's params: constants, inputs, and templates rendered once all they name is known. */
  resolveService(instance: InstanceRecord, service: ServiceSpec): ResolvedService {
    let perInstance = this.resolved.get(instance.id)
    const cached = perInstance?.get(service.name)
    if (cached) return cached
    const params: Record<string, string> = {}
    const waiting: Waiting[] = []
    let world: World | undefined
    for (const [param, spec] of Object.entries(service.params)) {
      if ('value' in spec) {
        params[param] = spec.value
      } else if ('input' in spec) {
        const value = this.inputs[instance.id]?.[service.name]?.[param]
        if (value === undefined)
          waiting.push({service: service.name, param, kind: 'input', instance: instance.id, key: param})
        else params[param] = value
      } else {
        world ??= this.worldFor(instance)
        const missing = missingValues(infoOf(spec.template).refs, world)
        if (missing.length > 0) {
          for (const m of missing)
            waiting.push({
              service: service.name,
              param,
              kind: m.kind,
              instance: m.node,
              ...(m.service ? {service_: m.service} : {}),
              key: m.key,
            })
        } else {
          params[param] = this.render(spec.template, world, instance)
        }
      }
    }
    const result = {complete: waiting.length === 0, params, waiting}
    if (!perInstance) this.resolved.set(instance.id, (perInstance = new Map()))
    perInstance.set(service.name, result)
    return result
  }

  /** Every instance by role, ordered by index, with the address it phoned home from. */
  roles(): {json: Buffer; map: InstanceConfig['roles']; roleMap?: string; hosts?: string} {
    if (!this.rolesCache) {
      const map: InstanceConfig['roles'] = {}
      for (const [role, members] of this.byRole)
        map[role] = members.map((m) => (m.address === undefined ? {name: m.id} : {name: m.id, ip: m.address}))
      this.rolesCache = {json: Buffer.from(JSON.stringify(map)), map}
    }
    return this.rolesCache
  }

  private members(): RoleMember[] {
    return [...this.instances.values()].map((m) => ({
      name: m.id,
      role: m.role,
      index: m.index,
      ...(m.address === undefined ? {} : {ip: m.address}),
    }))
  }

  /** `/etc/nodeset/roles` for every node of the deployment. */
  roleMap(): string {
    const cache = this.roles()
    cache.roleMap ??= renderRoleMap(this.members())
    return cache.roleMap
  }

  /** The managed block of `/etc/hosts`. */
  hostsBlock(): string {
    const cache = this.roles()
    cache.hosts ??= renderHostsBlock(this.name, this.members())
    return cache.hosts
  }

  /** An instance's configuration, all services or one, without `roles` (see `roles()`). */
  config(instance: InstanceRecord, only?: ServiceSpec): Omit<InstanceConfig, 'roles'> {
    const services: InstanceConfig['services'] = {}
    const waiting: Waiting[] = []
    for (const service of only ? [only] : instance.services) {
      const resolved = this.resolveService(instance, service)
      services[service.name] = {complete: resolved.complete, params: resolved.params}
      waiting.push(...resolved.waiting)
    }
    return {
      deployment: this.name,
      instance: instance.id,
      role: instance.role,
      complete: waiting.length === 0,
      services,
      waiting,
    }
  }

  status(now: number): DeploymentStatus {
    const deadline = this.deadline
    const overdue = deadline !== undefined && now > deadline
    const failed: string[] = []
    const timedOut: string[] = []
    let total = 0
    let succeeded = 0
    const instances: DeploymentStatus['instances'] = []
    for (const instance of this.instances.values()) {
      const services: DeploymentStatus['instances'][number]['services'] = []
      for (const service of instance.services) {
        const entry = this.serviceStatus(instance, service, overdue ? deadline : undefined)
        services.push(entry)
        total++
        if (entry.status === 'succeeded') succeeded++
        if (entry.status === 'failed')
          failed.push(
            `${instance.id}/${service.name}${entry.exitCode === undefined ? '' : ` (exit code ${entry.exitCode})`}`,
          )
        if (entry.status === 'timed out') timedOut.push(`${instance.id}/${service.name}`)
      }
      instances.push({
        id: instance.id,
        role: instance.role,
        ...(instance.address === undefined ? {} : {address: instance.address}),
        ...(instance.firstContact === undefined ? {} : {firstContact: iso(instance.firstContact)}),
        ...(instance.lastContact === undefined ? {} : {lastContact: iso(instance.lastContact)}),
        services,
      })
    }
    let state: DeploymentPhase = 'pending'
    let reason: string | undefined
    if (failed.length > 0) {
      state = 'failed'
      reason = `${failed.length} service${failed.length === 1 ? '' : 's'} failed: ${listSome(failed)}`
    } else if (timedOut.length > 0) {
      state = 'failed'
      reason = `the startup deadline ${iso(deadline!)} passed with ${timedOut.length} service${timedOut.length === 1 ? '' : 's'} not started: ${listSome(timedOut)}`
    } else if (succeeded === total) {
      state = 'settled'
    }
    return {
      deployment: this.name,
      state,
      ...(reason ? {reason} : {}),
      registeredAt: iso(this.registeredAt),
      ...(deadline === undefined ? {} : {deadline: iso(deadline)}),
      instances,
    }
  }

  private serviceStatus(
    instance: InstanceRecord,
    service: ServiceSpec,
    passedDeadline: number | undefined,
  ): DeploymentStatus['instances'][number]['services'][number] {
    const run = instance.runs[service.name]
    if (run?.state) {
      return {
        name: service.name,
        status: run.state,
        ...(run.exitCode === undefined ? {} : {exitCode: run.exitCode}),
        ...(run.message === undefined ? {} : {message: run.message}),
      }
    }
    const resolved = this.resolveService(instance, service)
    const waitingFor = [
      ...resolved.waiting.map(describeWaiting),
      ...service.after
        .filter((before) => instance.runs[before]?.state !== 'succeeded')
        .map((before) => `${instance.id}/${before} to succeed`),
    ]
    if (passedDeadline !== undefined) {
      const still =
        waitingFor.length > 0 ? `; it was waiting for ${listSome(waitingFor)}` : '; it was ready but never reported'
      return {
        name: service.name,
        status: 'timed out',
        message: `not started by the startup deadline ${iso(passedDeadline)}${still}`,
      }
    }
    const status: ServiceStatus = waitingFor.length > 0 ? 'waiting' : 'ready'
    return {name: service.name, status, ...(waitingFor.length > 0 ? {waitingFor} : {})}
  }

  state(): DeploymentState {
    return {
      deployment: this.name,
      instances: [...this.instances.values()].map((instance) => {
        const node = this.worldNode(instance)
        const services: DeploymentState['instances'][number]['services'] = {}
        for (const service of instance.services) {
          const run = instance.runs[service.name]
          const status: ServiceStatus =
            run?.state ?? (this.resolveService(instance, service).complete ? 'ready' : 'waiting')
          services[service.name] = run?.exitCode === undefined ? {status} : {status, exitCode: run.exitCode}
        }
        return {
          id: instance.id,
          role: instance.role,
          index: instance.index,
          facts: node.facts,
          outputs: node.outputs,
          services,
        }
      }),
    }
  }
}

export function describeWaiting(w: Waiting): string {
  if (w.kind === 'input') return `input ${w.key}`
  if (w.kind === 'fact') return `fact ${w.key} of ${w.instance}`
  return `output ${w.key} of ${w.instance}${w.service_ ? `/${w.service_}` : ''}`
}

function listSome(items: string[], limit = 10): string {
  return items.length <= limit
    ? items.join(', ')
    : `${items.slice(0, limit).join(', ')} and ${items.length - limit} more`
}

export const iso = (ms: number): string => new Date(ms).toISOString()

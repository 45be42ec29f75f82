/**
 * Over 300 lines: one class whose caches (resolution, world nodes, roles) are invalidated together.
 *
 * The config server's view of one registered deployment, in memory: who is registered, what each
 * instance reported, and what every service's configuration resolves to. Pure: no I/O, no clock
 * (callers pass `now`), so resolution and status are tested without a server.
 *
 * Resolution (resolve.ts) renders each template param over a small world that holds only the nodes
 * the instance refers to, and is cached per (instance, service) until one of those nodes changes;
 * `dependentsOf` says whose configuration a change may complete. Status and state are in status.ts.
 */
import {type Analysis, type CheckInstance, analyze} from '../plan/check.js'
import type {World, WorldNode} from '../plan/template.js'
import {renderHostsBlock, renderRoleMap, type RoleMember} from '../plan/wiring.js'
import type {DeploymentState, DeploymentStatus, InstanceConfig, ServiceSpec, Waiting} from './protocol.js'
import {infoOf, Renderer, type RenderFailure, resolveParams, type ResolvedService} from './resolve.js'
import type {FactValue, Inputs, InstanceRecord, RegistrationRecord, ServiceState} from './records.js'
import {stateOf, statusOf} from './status.js'
import {diffRoles, roleVersions, rolesVersionOfJson} from './rolemap.js'

export type {RenderFailure, ResolvedService} from './resolve.js'

export type {FactValue, Inputs, InstanceRecord, RegistrationRecord, ServiceRun, ServiceState} from './records.js'

/**
 * The plan's checks see the templates: constants are served as they are (a constant may contain
 * `{{`, a password for one) and inputs carry no references.
 */
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
      params: Object.entries(service.params).flatMap(([name, spec]) =>
        'template' in spec ? [{name, value: spec.template, source: spec.source}] : [],
      ),
    })),
  }))
}

type Tagged = {text: string; etag: string}
type Roles = {
  json: Buffer
  map: InstanceConfig['roles']
  version: string
  /** The delta from an older version to this one, as JSON, computed once for every client that holds it. */
  deltas: Map<string, Buffer | null>
  roleMap?: Tagged
  hosts?: Tagged
}

export class Registration {
  readonly name: string
  readonly registeredAt: number
  readonly startupTimeoutSec?: number
  readonly inputs: Inputs
  /** A federated deployment: this server's site; instances of other sites are filled from the broker. */
  readonly site?: string
  private readonly instances = new Map<string, InstanceRecord>()
  private readonly byRole = new Map<string, InstanceRecord[]>()
  /** target (role or node name) → instances whose templates refer to it. */
  private readonly dependents = new Map<string, Set<string>>()
  /** instance → the targets its templates refer to. */
  private readonly targets = new Map<string, string[]>()
  private readonly resolved = new Map<string, Map<string, ResolvedService>>()
  private readonly worldNodes = new Map<string, WorldNode>()
  private readonly renderer = new Renderer()
  /** Everything derived from membership and addresses; dropped when an address changes. */
  private rolesCache?: Roles
  private analysisCache?: Analysis

  constructor(record: RegistrationRecord, analysis?: Analysis) {
    this.name = record.name
    this.registeredAt = record.registeredAt
    this.startupTimeoutSec = record.startupTimeoutSec
    this.inputs = record.inputs
    if (record.site !== undefined) this.site = record.site
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
        if (!('template' in spec)) continue
        try {
          for (const ref of infoOf(spec.template).refs) targets.add(ref.target)
        } catch {
          // A template that does not parse (a state older than the checks) fails at resolution, with its reason.
        }
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

  /** Whether the instance is another site's: it phones home there, and its state comes from the broker. */
  remote(instance: InstanceRecord): boolean {
    return this.site !== undefined && instance.site !== undefined && instance.site !== this.site
  }

  /** Apply the state another site sent of one of its instances (it replaces what was held). */
  replaceRemote(
    id: string,
    state: Pick<InstanceRecord, 'facts' | 'address' | 'firstContact' | 'lastContact' | 'runs'>,
    sentAt: number,
  ): string[] {
    const instance = this.instances.get(id)
    if (!instance) return []
    const addressChanged = instance.address !== state.address
    const known = new Set(instance.services.map((s) => s.name))
    instance.facts = {...state.facts}
    instance.address = state.address
    instance.firstContact = state.firstContact
    instance.lastContact = state.lastContact
    instance.runs = Object.fromEntries(Object.entries(state.runs).filter(([service]) => known.has(service)))
    instance.fedAt = sentAt
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

  /** What templates see of an instance: its facts (with `ip`), outputs and what its services provide. */
  worldNode(instance: InstanceRecord): WorldNode {
    let node = this.worldNodes.get(instance.id)
    if (!node) {
      // A snapshot, frozen: a change to the instance makes a new node (`changed`), so the renderer
      // may remember what it rendered over this one by the node's identity.
      const outputs: Record<string, Record<string, string>> = {}
      for (const [service, run] of Object.entries(instance.runs)) outputs[service] = Object.freeze({...run.outputs})
      node = Object.freeze({
        name: instance.id,
        role: instance.role,
        index: instance.index,
        facts: Object.freeze(
          instance.address === undefined ? {...instance.facts} : {...instance.facts, ip: instance.address},
        ),
        outputs: Object.freeze(outputs),
        provides: Object.freeze(Object.fromEntries(instance.services.map((s) => [s.name, s.provides]))),
      })
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

  private vars(instance: InstanceRecord): Record<string, unknown> {
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

  /** One service's params: constants, inputs, and templates rendered once all they name is known. */
  resolveService(instance: InstanceRecord, service: ServiceSpec): ResolvedService {
    let perInstance = this.resolved.get(instance.id)
    const cached = perInstance?.get(service.name)
    if (cached) return cached
    const result = resolveParams(instance.id, service, {
      input: (param) => this.inputs[instance.id]?.[service.name]?.[param],
      world: () => this.worldFor(instance),
      render: (template, world) => this.renderer.render(template, world, () => this.vars(instance)),
    })
    if (!perInstance) this.resolved.set(instance.id, (perInstance = new Map()))
    perInstance.set(service.name, result)
    return result
  }

  /** Complete, or failed for good (a template that cannot be rendered): nothing more will come. */
  settled(instance: InstanceRecord, service?: ServiceSpec): boolean {
    return (service ? [service] : instance.services).every((s) => {
      const resolved = this.resolveService(instance, s)
      return resolved.complete || resolved.failed.length > 0
    })
  }

  /** Every instance by role (roles in code-unit order), ordered by index, with the address it phoned home from. */
  roles(): Roles {
    if (!this.rolesCache) {
      const map: InstanceConfig['roles'] = {}
      for (const role of [...this.byRole.keys()].sort())
        map[role] = this.byRole
          .get(role)!
          .map((m) => (m.address === undefined ? {name: m.id} : {name: m.id, ip: m.address}))
      const json = Buffer.from(JSON.stringify(map))
      const version = rolesVersionOfJson(json)
      roleVersions.remember(version, map)
      this.rolesCache = {json, map, version, deltas: new Map()}
    }
    return this.rolesCache
  }

  /** What turns the role map of version `from` into the current one, as JSON; undefined when `from` is not known here. */
  rolesDelta(from: string): Buffer | undefined {
    const current = this.roles()
    let delta = current.deltas.get(from)
    if (delta === undefined) {
      const before = roleVersions.get(from)
      delta = before ? Buffer.from(JSON.stringify(diffRoles(from, before, current.version, current.map))) : null
      if (current.deltas.size >= 64) current.deltas.clear()
      current.deltas.set(from, delta)
    }
    return delta ?? undefined
  }

  private members(): RoleMember[] {
    return [...this.instances.values()].map((m) => ({
      name: m.id,
      role: m.role,
      index: m.index,
      ...(m.address === undefined ? {} : {ip: m.address}),
    }))
  }

  /** `/etc/nodeset/roles` for every node of the deployment, with its entity tag. */
  roleMap(): Tagged {
    const cache = this.roles()
    cache.roleMap ??= tagged(renderRoleMap(this.members()))
    return cache.roleMap
  }

  /** The managed block of `/etc/hosts`, with its entity tag. */
  hostsBlock(): Tagged {
    const cache = this.roles()
    cache.hosts ??= tagged(renderHostsBlock(this.name, this.members()))
    return cache.hosts
  }

  /** An instance's configuration, all services or one, without `roles` (see `roles()`); `failed` lists what cannot be rendered. */
  config(instance: InstanceRecord, only?: ServiceSpec): Omit<InstanceConfig, 'roles'> {
    const services: InstanceConfig['services'] = {}
    const waiting: Waiting[] = []
    const failed: RenderFailure[] = []
    for (const service of only ? [only] : instance.services) {
      const resolved = this.resolveService(instance, service)
      services[service.name] = {complete: resolved.complete, params: resolved.params}
      waiting.push(...resolved.waiting)
      failed.push(...resolved.failed)
    }
    return {
      deployment: this.name,
      instance: instance.id,
      role: instance.role,
      complete: waiting.length === 0 && failed.length === 0,
      services,
      waiting,
      ...(failed.length > 0 ? {failed} : {}),
    }
  }

  status(now: number): DeploymentStatus {
    return statusOf(this, now)
  }

  state(): DeploymentState {
    return stateOf(this)
  }
}

/** A text and its strong entity tag (a hash of the text). */
function tagged(text: string): Tagged {
  return {text, etag: `"${rolesVersionOfJson(text)}"`}
}

export {describeWaiting, iso} from './status.js'

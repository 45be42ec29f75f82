/**
 * Where an app goes: the appservers whose role's locations name it, the port it listens on there,
 * the balancer in front of them, and the nodes of the services it needs. Pure: from the plan, the
 * provider's records and the config server's state.
 */
import {UserError} from '../core/errors.js'
import type {DeploymentState} from '../configserver/protocol.js'
import type {Nodeset} from '../nodeset/types.js'
import {setupVars, type LocationVar} from '../plan/vars.js'
import type {Plan} from '../plan/types.js'
import type {NodeRecord} from '../providers/provider.js'
import type {NodesetOffer} from './appini.js'

export interface DeployNode {
  name: string
  role: string
  /** The address the config server saw it at: what the balancer's upstreams use. */
  ip: string
  record: NodeRecord
  /** Outputs of its services, by service (secrets among them: never print). */
  outputs: Record<string, Record<string, string>>
}

export interface DeployTargets {
  app: string
  /** The port the app listens on, on every appserver. */
  port: number
  /** In plan order: the first one is activated first and runs the migration hook. */
  appservers: DeployNode[]
  /** Present when the appservers sit behind a balancer and there are several of them, so one can be taken out. */
  balancer?: DeployNode
  /** Nodes running each service the app needs. */
  services: Record<string, DeployNode[]>
  /** Whether node names resolve on the nodes (the managed /etc/hosts block); otherwise addresses are used. */
  namesResolve: boolean
}

/** The apps the nodeset's locations name and the services its nodes run. */
export function nodesetOffer(nodeset: Nodeset, plan: Plan): NodesetOffer {
  return {
    nodesetFile: nodeset.file,
    apps: [...new Set(nodeset.roles.flatMap((r) => r.locations.map((l) => l.app)))],
    services: [...new Set(plan.steps.map((s) => s.service))],
  }
}

export function appLocation(nodeset: Nodeset, app: string): LocationVar | undefined {
  return (setupVars(nodeset).locations as LocationVar[]).find((l) => l.app === app)
}

export interface TargetInput {
  nodeset: Nodeset
  plan: Plan
  loadBalancing: boolean
  records: NodeRecord[]
  state: DeploymentState
  app: string
  /** Services the app needs (service.NAME lines of app.ini). */
  services: string[]
  file: string
}

export function resolveTargets(input: TargetInput): DeployTargets {
  const {nodeset, plan, app, file} = input
  const location = appLocation(nodeset, app)
  if (!location)
    throw new UserError(
      `app "${app}" is not in the locations of ${file}: add "http://HOST/ ${app}" to locations in [appserver]`,
      2,
    )
  const roles = nodeset.roles.filter((r) => r.locations.some((l) => l.app === app)).map((r) => r.role)
  const node = (name: string): DeployNode => deployNode(name, input)
  const appserverPlans = plan.nodes.filter((n) => roles.includes(n.role))
  const notAppservers = appserverPlans.filter((n) => !n.services.includes('appserver'))
  if (notAppservers.length) {
    throw new UserError(
      `${notAppservers.map((n) => n.name).join(', ')} ${notAppservers.length === 1 ? 'is' : 'are'} to run ${app} but not the appserver service: add appserver to the services of its role in ${file}`,
      2,
    )
  }
  if (appserverPlans.length === 0)
    throw new UserError(
      `no node runs the role whose locations name ${app}: set nodes = 1 or more in its section of ${file}`,
      2,
    )
  const appservers = appserverPlans.map((n) => node(n.name))
  const balancerPlan = plan.nodes.find((n) => n.services.includes('balancer'))
  const services: Record<string, DeployNode[]> = {}
  for (const service of input.services)
    services[service] = plan.nodes.filter((n) => n.services.includes(service)).map((n) => node(n.name))
  return {
    app,
    port: location.port,
    appservers,
    balancer: input.loadBalancing && balancerPlan && appservers.length > 1 ? node(balancerPlan.name) : undefined,
    services,
    namesResolve: nodeset.general.setEtcHosts,
  }
}

function deployNode(name: string, input: TargetInput): DeployNode {
  const record = input.records.find((r) => r.name === name && r.state !== 'terminated')
  if (!record)
    throw new UserError(
      `node ${name} does not exist: run nodeset create-node ${input.file} and nodeset setup-node ${input.file} first`,
    )
  const instance = input.state.instances.find((i) => i.id === name)
  const ip = instance?.facts.ip
  if (!instance || typeof ip !== 'string' || !ip)
    throw new UserError(
      `node ${name} has not phoned home to the config server yet: run nodeset create-node ${input.file} (it waits for it), then nodeset setup-node ${input.file}`,
    )
  return {name, role: record.role, ip, record, outputs: instance.outputs}
}

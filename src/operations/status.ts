/**
 * status and list-nodes: the deployment as the config server and the provider see it; with sites, as
 * every site's server sees its own nodes, and each one's links to the others.
 */
import type {DeploymentStatus} from '../configserver/protocol.js'
import {UserError} from '../core/errors.js'
import {reconcile} from './nodes.js'
import type {OpenedDeployment} from './opened.js'
import type {SitesStatus} from './sites.js'

export interface StatusOptions {
  /** Return only when the deployment settles or fails, or this many seconds passed. */
  waitSec?: number
  /** How often to ask while waiting (ms). */
  pollMs?: number
}

/** Three heartbeat intervals: a link is down when no heartbeat came in that long. */
const LINK_GRACE_MS = 3500

function linksDown(current: DeploymentStatus): boolean {
  const sites = (current as Partial<SitesStatus>).sites ?? []
  return sites.some((s) => s.links.length === 0 || s.links.some((l) => l.state !== 'up'))
}

export async function status(dep: OpenedDeployment, opts: StatusOptions = {}): Promise<DeploymentStatus> {
  const server = await dep.configServer({readOnly: true})
  const {client} = server
  try {
    let current = await client.status()
    // Embedded site servers start with this command: give each a few heartbeats to hear its peers.
    const heard = Date.now() + LINK_GRACE_MS
    while (server.embedded && linksDown(current) && Date.now() < heard) {
      await new Promise((resolve) => setTimeout(resolve, 250))
      current = await client.status()
    }
    const deadline = Date.now() + (opts.waitSec ?? 0) * 1000
    while (opts.waitSec !== undefined && current.state === 'pending' && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, opts.pollMs ?? 1000))
      current = await client.status()
    }
    return current
  } catch (error) {
    if ((error as {status?: number}).status === 404)
      throw new UserError(`deployment ${dep.name} is not registered yet: run nodeset create-node ${dep.file}`)
    throw error
  }
}

export interface NodeListing {
  name: string
  role: string
  id: string | null
  address: string | null
  state: string
  lastPhoneHome: string | null
  /** False for a node the file no longer has. */
  planned: boolean
  /** Its site, in a deployment with sites. */
  site?: string
}

/** Every planned node (missing ones too) and every node the file no longer has, with its last phone-home. */
export async function listNodes(dep: OpenedDeployment): Promise<NodeListing[]> {
  const {plan} = dep
  const records = await dep.provider.list()
  let contacts = new Map<string, string | undefined>()
  if (records.length > 0) {
    try {
      const server = await dep.configServer({readOnly: true})
      contacts = new Map((await server.client.status()).instances.map((i) => [i.id, i.lastContact]))
    } catch {
      // A deployment never registered has no contacts yet.
    }
  }
  const contact = (name: string) => contacts.get(name) ?? null
  const planned = plan.nodes.map((n): NodeListing => {
    const r = records.find((x) => x.name === n.name && x.state !== 'terminated')
    const [id, address, state] = [r?.id ?? null, r?.address ?? null, r?.state ?? 'missing']
    const site = n.site ? {site: n.site} : {}
    return {name: n.name, role: n.role, id, address, state, lastPhoneHome: contact(n.name), planned: true, ...site}
  })
  const extras = reconcile(plan, records).extras.map((r): NodeListing => ({
    ...{name: r.name, role: r.role, id: r.id, address: r.address ?? null, state: r.state},
    ...{lastPhoneHome: contact(r.name), planned: false},
  }))
  return [...planned, ...extras]
}

/**
 * create-node, destroy-node and list-nodes: reconcile the provider (the truth about which nodes
 * exist, by their tags) with the plan, register the deployment with the config server, boot the
 * missing nodes with user data that phones home, and wait until they have.
 */
import {UserError} from '../core/errors.js'
import type {DeploymentClient} from './connect.js'
import type {DeploymentStatus} from '../configserver/protocol.js'
import type {Plan, NodePlan} from '../plan/types.js'
import type {NodeRecord, NodeRequest, Provider} from '../providers/provider.js'
import {renderUserData} from '../providers/userdata.js'
import {withReportedSshPort} from '../setup/runner.js'
import {formatHostKey, HostKeyStore} from '../ssh/hostkeys.js'
import {registrationFor} from '../configserver/registration.js'
import type {Inputs} from '../plan/types.js'

export interface Reconciliation {
  missing: NodePlan[]
  existing: Array<{node: NodePlan; record: NodeRecord}>
  /** Nodes of the deployment the plan no longer has (removed only with --prune). */
  extras: NodeRecord[]
}

/** Which planned nodes exist, which are missing, which exist but are not planned. Pure. */
export function reconcile(plan: Plan, records: NodeRecord[]): Reconciliation {
  const live = records.filter((r) => r.state !== 'terminated')
  const byName = new Map(live.map((r) => [r.name, r]))
  const planned = new Set(plan.nodes.map((n) => n.name))
  return {
    missing: plan.nodes.filter((n) => !byName.has(n.name)),
    existing: plan.nodes.filter((n) => byName.has(n.name)).map((node) => ({node, record: byName.get(node.name)!})),
    extras: live.filter((r) => !planned.has(r.name)),
  }
}

export type NodeEvent =
  | {type: 'plan'; missing: string[]; existing: string[]; extras: string[]}
  | {type: 'registered'; deployment: string}
  | {type: 'created'; node: string; id: string; address?: string}
  | {type: 'phoned-home'; node: string; address?: string}
  | {type: 'pruned'; node: string}
  | {type: 'waiting'; nodes: string[]; secondsLeft: number}
  | {type: 'rolled-back'; node: string}

export interface CreateContext {
  plan: Plan
  provider: Provider
  server: DeploymentClient
  /** The URL nodes phone home to. */
  nodeUrl: string
  /** With sites: the URL each node phones home to (its own site's server), over nodeUrl. */
  nodeUrlOf?: (node: string) => string
  hostKeys: HostKeyStore
  bootTimeoutSec: number
  /** Values of the params given at launch (collectInputs). */
  inputs?: Inputs
  onEvent?: (event: NodeEvent) => void
}

export interface CreateOptions {
  prune?: boolean
  wait?: boolean
  rollbackOnFailure?: boolean
  /** Test hook: how often the boot wait asks the server (ms). */
  pollMs?: number
}

export interface NodeRow {
  name: string
  role: string
  id?: string
  address?: string
  state: string
  phonedHome?: string
  createdNow: boolean
}

/** Some nodes did not phone home in time: the message says which and what to do; rows show every node. */
export class BootTimeoutError extends UserError {
  constructor(
    message: string,
    readonly rows: NodeRow[],
  ) {
    super(message)
  }
}

export async function createNodes(ctx: CreateContext, opts: CreateOptions = {}): Promise<NodeRow[]> {
  const {plan, provider, server} = ctx
  const emit = ctx.onEvent ?? (() => undefined)
  const started = Date.now()
  const records = await provider.list()
  const rec = reconcile(plan, records)
  emit({
    type: 'plan',
    missing: rec.missing.map((n) => n.name),
    existing: rec.existing.map((e) => e.node.name),
    extras: rec.extras.map((r) => r.name),
  })

  // No start-up deadline yet: booting has its own (boot_timeout, below); setup-node sets one for the services.
  const {tokens} = await server.register(
    registrationFor(plan, {reissueTokens: rec.missing.map((n) => n.name), inputs: ctx.inputs}),
  )
  emit({type: 'registered', deployment: plan.deployment})

  const requests: NodeRequest[] = rec.missing.map((node) => {
    const token = tokens[node.name]
    if (!token) throw new Error(`the config server issued no token for ${node.name}`)
    return {
      deployment: plan.deployment,
      name: node.name,
      role: node.role,
      index: node.index,
      size: node.size,
      userData: renderUserData({
        deployment: plan.deployment,
        node: node.name,
        token,
        serverUrl: ctx.nodeUrlOf?.(node.name) ?? ctx.nodeUrl,
        bootDeadlineSec: Math.max(ctx.bootTimeoutSec * 4, 3600),
      }),
    }
  })
  const created = requests.length > 0 ? await provider.create(requests) : []
  for (const r of created) emit({type: 'created', node: r.name, id: r.id, address: r.address})

  if (opts.prune && rec.extras.length > 0) {
    await destroyNodes({provider, server, hostKeys: ctx.hostKeys}, rec.extras)
    for (const r of rec.extras) emit({type: 'pruned', node: r.name})
  }

  const all = [...rec.existing.map((e) => e.record), ...created]
  const createdNames = new Set(created.map((r) => r.name))
  if (opts.wait === false) return rows(plan, all, undefined, createdNames)

  const deadline = started + ctx.bootTimeoutSec * 1000
  let status = await server.status()
  for (;;) {
    const waiting = notPhonedHome(status, plan)
    if (waiting.length === 0) break
    if (Date.now() >= deadline) {
      const table = rows(plan, all, status, createdNames)
      let message = `${waiting.length} node${waiting.length === 1 ? ' has' : 's have'} not phoned home within boot_timeout (${ctx.bootTimeoutSec}s): ${waiting.join(', ')}`
      if (opts.rollbackOnFailure && created.length > 0) {
        await destroyNodes({provider, server, hostKeys: ctx.hostKeys}, created)
        for (const r of created) emit({type: 'rolled-back', node: r.name})
        message += `; rolled back the ${created.length} node${created.length === 1 ? '' : 's'} this run created`
      } else {
        message += "; check each node's /var/log/nodeset-agent.log, re-run to wait again, or use --rollback-on-failure"
      }
      throw new BootTimeoutError(message, table)
    }
    emit({type: 'waiting', nodes: waiting, secondsLeft: Math.ceil((deadline - Date.now()) / 1000)})
    await new Promise((resolve) => setTimeout(resolve, opts.pollMs ?? 500))
    const before = new Set(waiting)
    status = await server.status()
    for (const i of status.instances)
      if (before.has(i.id) && i.firstContact) emit({type: 'phoned-home', node: i.id, address: i.address})
  }
  await pinHostKeys(server, ctx.hostKeys, all)
  return rows(plan, all, status, createdNames)
}

function notPhonedHome(status: DeploymentStatus, plan: Plan): string[] {
  const contacted = new Set(status.instances.filter((i) => i.firstContact).map((i) => i.id))
  return plan.nodes.map((n) => n.name).filter((n) => !contacted.has(n))
}

/** Each node with the facts it reported at its phone-home (none yet: empty). */
async function reportedFacts(server: Pick<DeploymentClient, 'state'>, records: NodeRecord[]) {
  const byId = new Map((await server.state()).instances.map((i) => [i.id, i.facts]))
  return records.map((record) => ({record, facts: byId.get(record.name) ?? {}}))
}

/** Pin the SSH host keys each node reported over its authenticated phone-home. */
export async function pinHostKeys(
  server: Pick<DeploymentClient, 'state'>,
  store: HostKeyStore,
  records: NodeRecord[],
): Promise<void> {
  for (const {record, facts} of await reportedFacts(server, records)) {
    const keys = facts.ssh_host_keys
    if (!Array.isArray(keys) || keys.length === 0 || !record.address) continue
    // The port too: the one the node reported (its sshd_port fact) is where later commands reach it.
    store.pin(record.name, record.address, keys.map(String), withReportedSshPort(record, facts).sshPort ?? 22)
  }
}

/**
 * Follow a node's sshd to the port it now reports (an operator moved it), keeping the keys pinned
 * for it: only the phone-home at creation decides which keys a node is trusted with.
 */
export async function followReportedSshPorts(
  server: Pick<DeploymentClient, 'state'>,
  store: HostKeyStore,
  records: NodeRecord[],
): Promise<void> {
  for (const {record, facts} of await reportedFacts(server, records)) {
    const pinned = store.lookup(record.name)
    const port = withReportedSshPort(record, facts).sshPort
    if (!pinned || !record.address || port === undefined || port === store.pinnedPort(record.name)) continue
    store.pin(record.name, record.address, pinned.keys.map(formatHostKey), port)
  }
}

function rows(
  plan: Plan,
  records: NodeRecord[],
  status: DeploymentStatus | undefined,
  createdNow: Set<string>,
): NodeRow[] {
  const byName = new Map(records.map((r) => [r.name, r]))
  return plan.nodes.map((n) => {
    const r = byName.get(n.name)
    const s = status?.instances.find((i) => i.id === n.name)
    return {
      name: n.name,
      role: n.role,
      id: r?.id,
      address: r?.address,
      state: r?.state ?? 'missing',
      phonedHome: s?.lastContact,
      createdNow: createdNow.has(n.name),
    }
  })
}

/**
 * Forget nodes in the config server and the pinned host keys, then terminate them. The config
 * server goes first: an embedded one listens on the local provider's bridge, which goes with the
 * last node.
 */
export async function destroyNodes(
  ctx: {provider: Provider; server?: DeploymentClient; hostKeys: HostKeyStore},
  nodes: NodeRecord[],
): Promise<void> {
  if (nodes.length === 0) return
  for (const node of nodes) {
    if (ctx.server) {
      await ctx.server.forgetInstance(node.name).catch((error: {status?: number}) => {
        if (error.status !== 404) throw error
      })
    }
    ctx.hostKeys.forget(node.name)
  }
  await ctx.provider.destroy(nodes)
}

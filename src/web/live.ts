/**
 * The live part of the status page: each (node, service) vertex's state and each node's address, as
 * the config server reports them, and the changes between two readings (what the page is sent over
 * server-sent events). Pure and imported by the page's own code too: types only from below.
 */
import type {DeploymentStatus, ServiceStatus} from '../configserver/protocol.js'

/** A vertex's state: the config server's, or `not created` while its node is not registered. */
export type VertexState = 'not created' | ServiceStatus

/** Every state in the order the legend shows them. */
export const VERTEX_STATES: readonly VertexState[] = [
  'not created',
  'waiting',
  'ready',
  'running',
  'succeeded',
  'failed',
  'timed out',
]

export interface VertexLive {
  state: VertexState
  waitingFor?: string[]
  message?: string
  exitCode?: number
}

export interface NodeLive {
  address?: string
  firstContact?: string
  lastContact?: string
}

/** The deployment's phase: `not created` until it is registered. */
export type PagePhase = 'not created' | DeploymentStatus['state']

export interface LiveState {
  phase: PagePhase
  reason?: string
  registeredAt?: string
  deadline?: string
  /** Keyed `node/service`, every vertex of the plan. */
  vertices: Record<string, VertexLive>
  /** Keyed by node name: only nodes the config server knows. */
  nodes: Record<string, NodeLive>
}

/** What changed: new values of the header fields (null: gone), and every vertex or node that changed. */
export interface LivePatch {
  phase?: PagePhase
  reason?: string | null
  registeredAt?: string | null
  deadline?: string | null
  vertices?: Record<string, VertexLive>
  nodes?: Record<string, NodeLive | null>
}

const HEADER = ['reason', 'registeredAt', 'deadline'] as const

/** The page's live state from the plan's vertices and the config server's status (undefined: not registered). */
export function liveState(vertexIds: readonly string[], status: DeploymentStatus | undefined): LiveState {
  const vertices: Record<string, VertexLive> = {}
  for (const id of vertexIds) vertices[id] = {state: 'not created'}
  if (!status) return {phase: 'not created', vertices, nodes: {}}
  const nodes: Record<string, NodeLive> = {}
  for (const instance of status.instances) {
    nodes[instance.id] = pick({
      address: instance.address,
      firstContact: instance.firstContact,
      lastContact: instance.lastContact,
    })
    for (const service of instance.services) {
      const id = `${instance.id}/${service.name}`
      if (!(id in vertices)) continue
      vertices[id] = pick({
        state: service.status,
        waitingFor: service.waitingFor?.length ? service.waitingFor : undefined,
        message: service.message,
        exitCode: service.exitCode,
      }) as VertexLive
    }
  }
  return {
    phase: status.state,
    ...pick({reason: status.reason, registeredAt: status.registeredAt, deadline: status.deadline}),
    vertices,
    nodes,
  }
}

/** The changes from `before` to `after`; undefined when nothing changed. */
export function diffLive(before: LiveState, after: LiveState): LivePatch | undefined {
  const patch: LivePatch = {}
  if (before.phase !== after.phase) patch.phase = after.phase
  for (const key of HEADER) if (before[key] !== after[key]) patch[key] = after[key] ?? null
  const vertices = changed(before.vertices, after.vertices)
  if (vertices) patch.vertices = vertices as Record<string, VertexLive>
  const nodes = changed(before.nodes, after.nodes)
  if (nodes) patch.nodes = nodes
  return Object.keys(patch).length > 0 ? patch : undefined
}

/** `state` with `patch` applied: a new object, `state` untouched. */
export function applyLive(state: LiveState, patch: LivePatch): LiveState {
  const next: LiveState = {...state, vertices: {...state.vertices, ...patch.vertices}, nodes: {...state.nodes}}
  if (patch.phase !== undefined) next.phase = patch.phase
  for (const key of HEADER) {
    const value = patch[key]
    if (value === null) delete next[key]
    else if (value !== undefined) next[key] = value
  }
  for (const [name, node] of Object.entries(patch.nodes ?? {})) {
    if (node === null) delete next.nodes[name]
    else next.nodes[name] = node
  }
  return next
}

function changed<T>(before: Record<string, T>, after: Record<string, T>): Record<string, T | null> | undefined {
  const out: Record<string, T | null> = {}
  for (const [key, value] of Object.entries(after)) if (!(key in before) || !same(before[key], value)) out[key] = value
  for (const key of Object.keys(before)) if (!(key in after)) out[key] = null
  return Object.keys(out).length > 0 ? out : undefined
}

/** Equality of the small JSON values above (objects of strings, numbers and string arrays). */
function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b)
}

/** The object without its undefined fields, so that equal states serialize equally. */
function pick<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T
}

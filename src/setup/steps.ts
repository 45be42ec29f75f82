/**
 * The steps of a setup-node run, built from the plan: on every node `base`, then `wiring`, then one
 * step per service of its role. Each step names the steps it needs, as `node/step` keys. Also the
 * world their templates are rendered in, from the config server's state.
 */
import type {DeploymentState} from '../configserver/protocol.js'
import {extractRefs, missingValues, type World} from '../plan/template.js'
import type {Plan, StepPlan} from '../plan/types.js'
import type {RoleMember} from '../plan/wiring.js'
import type {Catalog} from '../services/catalog.js'

export const BASE_STEP = 'base'
export const WIRING_STEP = 'wiring'

export type StepStatus = 'waiting' | 'running' | 'skipped' | 'done' | 'failed' | 'blocked'

export interface StepReport {
  node: string
  step: string
  status: StepStatus
  message?: string
  /** Last lines of the step's output, for a failure. */
  tail?: string
  durationMs?: number
  logFile?: string
}

export interface Step {
  node: string
  name: string
  /** Set for service steps. */
  plan?: StepPlan
  /** The `node/step` keys of the steps that must be done (or unchanged) first. */
  needs: string[]
}

export const stepKey = (node: string, step: string): string => `${node}/${step}`

/** Every step of the plan: base, wiring, then each service after what it comes after and whose outputs it uses. */
export function buildSteps(plan: Plan): Step[] {
  const steps: Step[] = []
  for (const node of plan.nodes) {
    steps.push({node: node.name, name: BASE_STEP, needs: []})
    steps.push({node: node.name, name: WIRING_STEP, needs: [stepKey(node.name, BASE_STEP)]})
    for (const s of plan.steps.filter((s) => s.node === node.name)) {
      const outputDeps = plan.references
        .filter((r) => r.from.node === node.name && r.from.service === s.service && r.kind === 'output' && r.to.service)
        .map((r) => stepKey(r.to.node, r.to.service!))
      const after = s.after.filter((a) => node.services.includes(a)).map((a) => stepKey(node.name, a))
      steps.push({
        node: node.name,
        name: s.service,
        plan: s,
        needs: [...new Set([stepKey(node.name, WIRING_STEP), ...after, ...outputDeps])],
      })
    }
  }
  return steps
}

/** Only rewiring: the wiring step of each of these nodes, needing nothing. */
export const wiringSteps = (nodes: readonly string[]): Step[] =>
  nodes.map((node) => ({node, name: WIRING_STEP, needs: []}))

export function worldFrom(plan: Plan, state: DeploymentState): World {
  return {
    nodes: plan.nodes.map((n) => {
      const instance = state.instances.find((i) => i.id === n.name)
      const provides = Object.fromEntries(
        plan.steps.filter((s) => s.node === n.name).map((s) => [s.service, s.provides]),
      )
      return {
        name: n.name,
        role: n.role,
        index: n.index,
        facts: instance?.facts ?? {},
        outputs: structuredClone(instance?.outputs ?? {}),
        provides,
      }
    }),
  }
}

/** The nodes that have phoned home, with their addresses: what role maps and hosts blocks list. */
export function members(world: World): RoleMember[] {
  return world.nodes
    .filter((n) => typeof n.facts.ip === 'string')
    .map((n) => ({name: n.name, role: n.role, index: n.index, ip: n.facts.ip as string}))
}

/**
 * What a service step's params and templates refer to that the world does not know yet, each as
 * `output password of mysql.x.test/mysql`; nothing for base and wiring.
 */
export function missingFor(catalog: Catalog, step: Step, world: World): string[] {
  if (!step.plan) return []
  const meta = catalog.get(step.plan.service)
  const refs = [
    ...step.plan.params.flatMap((p) => extractRefs(p.value)),
    ...(meta?.script ? extractRefs(meta.script) : []),
    ...Object.values(meta?.partials ?? {}).flatMap((t) => extractRefs(t)),
  ]
  return missingValues(refs, world).map((m) => `${m.kind} ${m.key} of ${m.node}${m.service ? `/${m.service}` : ''}`)
}

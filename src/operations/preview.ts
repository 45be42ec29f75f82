/** The dry run of create-node and up (and plan's view of what exists): what would change, touching nothing. */
import type {Loaded} from './load.js'
import {reconcile} from './nodes.js'
import {OpenedDeployment} from './opened.js'

export interface Preview {
  deployment: string
  /** Planned nodes the provider has. */
  exist: string[]
  /** Planned nodes it does not have: create-node would create them. */
  create: string[]
  /** Nodes of the deployment the file no longer has: destroyed only with --prune. */
  extra: string[]
  /** The steps setup-node would consider on each node (unchanged ones are skipped when it runs). */
  steps: Array<{node: string; steps: string[]}>
}

/** Asks the provider which nodes exist; opens no config server, creates nothing, writes no state. */
export async function preview(dep: OpenedDeployment): Promise<Preview> {
  const {missing, existing, extras} = reconcile(dep.plan, await dep.provider.list())
  return {
    deployment: dep.name,
    exist: existing.map((e) => e.node.name),
    create: missing.map((n) => n.name),
    extra: extras.map((r) => r.name),
    steps: dep.plan.nodes.map((n) => ({node: n.name, steps: ['base', 'wiring', ...n.services]})),
  }
}

/**
 * For `plan`: when this deployment has state beside the file (it was created from here), what exists
 * and what create-node would change. A file never used, or one refused, has nothing to say.
 */
export async function existingState(file: string, loaded: Loaded): Promise<Preview | undefined> {
  if (loaded.result.analysis.problems.length > 0) return undefined
  const dep = new OpenedDeployment(file, loaded)
  if (!dep.workspace.exists()) return undefined
  try {
    return await preview(dep)
  } finally {
    await dep.close()
  }
}

/** destroy-node: terminate nodes, forget them, and rewire the nodes that stay. */
import {UserError} from '../core/errors.js'
import type {StepReport} from '../setup/runner.js'
import {applyOperatorEtcHosts, hasHostsBlock} from './etchosts.js'
import {destroyNodes} from './nodes.js'
import type {OpenedDeployment} from './opened.js'
import {rewire} from './setup.js'

export interface DestroyResult {
  destroyed: string[]
  /** The rewiring of the nodes that stay (their role maps and hosts blocks). */
  rewired: StepReport[]
}

/** Destroy the named nodes (all of the deployment's when none is named), after asking unless `yes`. */
export async function destroy(
  dep: OpenedDeployment,
  names: string[],
  opts: {yes?: boolean} = {},
): Promise<DestroyResult> {
  const records = await dep.liveNodes()
  const unknown = names.filter((n) => !records.some((r) => r.name === n))
  if (unknown.length)
    throw new UserError(`no such node in deployment ${dep.name}: ${unknown.join(', ')} (see nodeset list-nodes)`)
  const targets = names.length ? records.filter((r) => names.includes(r.name)) : records
  if (targets.length === 0) return {destroyed: [], rewired: []}
  if (!opts.yes) await confirmOrRefuse(dep, `Destroy ${targets.map((t) => t.name).join(', ')}?`, '--yes')
  const server = await dep.configServer()
  const {provider, hostKeys} = dep
  await destroyNodes({provider, server: server.client, hostKeys}, targets)
  // The nodes that stay forget the destroyed ones: role maps and hosts blocks, here and on them.
  const remaining = records.filter((r) => !targets.includes(r))
  const rewired = remaining.length > 0 ? await rewire(dep, remaining) : []
  if (hasHostsBlock(dep.name)) applyOperatorEtcHosts(dep.name, (await server.client.state()).instances)
  return {destroyed: targets.map((t) => t.name), rewired}
}

/** Ask on the terminal; without one, refuse and name the flag that answers yes. */
export async function confirmOrRefuse(dep: OpenedDeployment, question: string, yesFlag: string): Promise<void> {
  const answer = await dep.ui.confirm(question)
  if (answer === undefined)
    throw new UserError(`${question.replace(/\?$/, '')}: this needs confirmation; pass ${yesFlag}`)
  if (!answer) throw new UserError('nothing changed')
}

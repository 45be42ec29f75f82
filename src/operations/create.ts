/** create-node (and up's first phase): create the missing nodes, boot them, wait until each phoned home. */
import {ConfigServerError} from '../configserver/client.js'
import {DiagnosticsError} from '../core/diagnostics.js'
import {confirmOrRefuse} from './destroy.js'
import {collectInputs, type InputOptions} from './inputs.js'
import {createNodes, reconcile, type NodeEvent, type NodeRow} from './nodes.js'
import type {OpenedDeployment} from './opened.js'
import type {ProgressSink} from './ui.js'

export interface CreateOptions extends InputOptions {
  /** Destroy nodes of the deployment that the file no longer has. */
  prune?: boolean
  /** Wait until every node has phoned home (default true). */
  wait?: boolean
  /** With prune: destroy without asking. */
  yes?: boolean
  /** When a node does not phone home in time, destroy the nodes this run created. */
  rollbackOnFailure?: boolean
}

export async function create(dep: OpenedDeployment, opts: CreateOptions = {}): Promise<NodeRow[]> {
  // Before anything is prepared or created: a missing value stops the command here (exit 2).
  const inputs = opts.inputs ?? (await collectInputs(dep, {...opts, ask: dep.ui.ask?.bind(dep.ui)}))
  if (opts.prune && !opts.yes) {
    const {extras} = reconcile(dep.plan, await dep.provider.list())
    if (extras.length) await confirmOrRefuse(dep, `Destroy ${extras.map((r) => r.name).join(', ')}?`, '--yes')
  }
  const server = await dep.configServer()
  const progress = dep.ui.progress(dep.plan.nodes.map((n) => n.name))
  try {
    const rows = await createNodes(
      {
        plan: dep.plan,
        provider: dep.provider,
        server: server.client,
        nodeUrl: server.nodeUrl,
        nodeUrlOf: server.nodeUrlOf,
        hostKeys: dep.hostKeys,
        inputs,
        bootTimeoutSec: dep.nodeset.general.bootTimeoutSec,
        onEvent: (event) => showCreateEvent(dep, progress, event, opts),
      },
      opts,
    )
    for (const r of rows) progress.done(r.name, true, r.phonedHome ? `up (${r.address ?? '?'})` : r.state)
    return rows
  } catch (error) {
    if (error instanceof ConfigServerError && error.diagnostics.length) throw new DiagnosticsError(error.diagnostics)
    throw error
  } finally {
    await progress.finish()
  }
}

function showCreateEvent(dep: OpenedDeployment, progress: ProgressSink, e: NodeEvent, opts: CreateOptions): void {
  progress.event({...e})
  if (e.type === 'plan') {
    for (const n of e.missing) progress.update(n, 'creating')
    for (const n of e.existing) progress.update(n, 'exists')
    for (const n of e.extras)
      dep.ui.note(`${n} is not in ${dep.file}${opts.prune ? '; destroying it' : '; --prune destroys it'}`)
  } else if (e.type === 'created') {
    progress.update(e.node, `created (${e.id}${e.address ? `, ${e.address}` : ''}), waiting for it to phone home`)
  } else if (e.type === 'phoned-home') progress.done(e.node, true, `phoned home from ${e.address ?? '?'}`)
  else if (e.type === 'rolled-back') progress.done(e.node, false, 'rolled back')
}

/**
 * `nodeset up`: create-node, setup-node and update of each app, in one go, over one config server.
 * Each phase is the same code its own command runs; a phase that fails stops the rest.
 */
import {UserError} from '../core/errors.js'
import {progressView} from '../cli/progress.js'
import type {DeploymentState} from '../configserver/protocol.js'
import {createNodes, BootTimeoutError} from './nodes.js'
import {setupVars} from '../plan/vars.js'
import {setupNodes, type StepReport} from '../setup/runner.js'
import {connect} from '../ssh/ssh.js'
import type {OpenedDeployment} from './deploy-context.js'

export async function createPhase(opened: OpenedDeployment, opts: {json: boolean; secrets: string[]}): Promise<void> {
  const {deployment, server} = opened
  const {plan} = deployment.result
  const progress = progressView(
    plan.nodes.map((n) => n.name),
    {json: opts.json, secrets: opts.secrets},
  )
  try {
    const rows = await createNodes({
      plan,
      provider: deployment.provider,
      server: server.client,
      nodeUrl: server.nodeUrl,
      hostKeys: deployment.hostKeys,
      bootTimeoutSec: deployment.nodeset.general.bootTimeoutSec,
      onEvent: (e) => {
        progress.event({...e})
        if (e.type === 'plan') {
          for (const n of e.missing) progress.update(n, 'creating')
          for (const n of e.existing) progress.update(n, 'exists')
        } else if (e.type === 'created') progress.update(e.node, 'created, waiting for it to phone home')
      },
    })
    for (const r of rows) progress.done(r.name, true, r.phonedHome ? `up (${r.address ?? '?'})` : r.state)
  } catch (error) {
    if (error instanceof BootTimeoutError) throw new UserError(error.message)
    throw error
  } finally {
    await progress.finish()
  }
}

export async function setupPhase(
  opened: OpenedDeployment,
  opts: {json: boolean; secrets: string[]},
): Promise<StepReport[]> {
  const {deployment, server} = opened
  const {plan} = deployment.result
  const records = (await deployment.provider.list(plan.deployment)).filter((r) => r.state !== 'terminated')
  const items = plan.nodes.map((n) => n.name)
  const progress = progressView(items, {json: opts.json, secrets: opts.secrets})
  try {
    const reports = await setupNodes({
      plan,
      catalog: deployment.catalog,
      records,
      server: server.client,
      connect: (record) =>
        connect(deployment.sshTarget(record), {
          hostKeys: {mode: 'pinned', store: deployment.hostKeys},
          retryForMs: 60_000,
        }),
      logFile: (node, step) => deployment.workspace.logFile(node, step),
      vars: setupVars(deployment.nodeset),
      setEtcHosts: deployment.nodeset.general.setEtcHosts,
      concurrency: 16,
      force: false,
      secrets: opts.secrets,
      onEvent: (e) => {
        progress.event({...e})
        progress.update(e.node, `${e.step}: ${e.message ?? e.status}`)
      },
    })
    for (const node of items) {
      const bad = reports.filter((r) => r.node === node && (r.status === 'failed' || r.status === 'blocked'))
      progress.done(node, bad.length === 0, bad.length ? bad.map((r) => `${r.step} ${r.status}`).join(', ') : 'set up')
    }
    const failed = reports.filter((r) => r.status === 'failed')
    if (failed.length) {
      const detail = failed
        .map((r) => `${r.node} ${r.step}: ${r.message ?? 'failed'}${r.tail ? `\n${r.tail}` : ''}`)
        .join('\n')
      throw new UserError(
        `setup did not complete, so no app was deployed:\n${detail}\nfix the cause and run nodeset up again (finished steps are skipped)`,
      )
    }
    return reports
  } finally {
    await progress.finish()
  }
}

/** Where to open the app: the balancer's URL, or each appserver's address and port without one. */
export function entryUrls(state: DeploymentState, ports: number[]): string[] {
  const balancer = state.instances.find((i) => i.outputs.balancer?.url)
  if (balancer) return [balancer.outputs.balancer.url]
  return state.instances
    .filter((i) => i.role === 'appserver' && typeof i.facts.ip === 'string')
    .flatMap((i) => ports.map((port) => `http://${i.facts.ip as string}:${port}/`))
}

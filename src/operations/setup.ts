/** setup-node (and up's second phase, and rewiring): layers over SSH, in dependency order. */
import {registrationFor} from '../configserver/registration.js'
import {UserError} from '../core/errors.js'
import {setupVars} from '../plan/vars.js'
import type {NodeRecord} from '../providers/provider.js'
import type {Session} from '../ssh/session.js'
import {DEFAULT_SETUP_TIMEOUT_SEC, setupNodes, StepMatrix, type StepReport} from '../setup/runner.js'
import {applyOperatorEtcHosts} from './etchosts.js'
import {collectInputs, type InputOptions} from './inputs.js'
import {followReportedSshPorts} from './nodes.js'
import type {OpenedDeployment} from './opened.js'
import {silentUi} from './ui.js'

/** Steps run at once, across nodes. */
export const DEFAULT_CONCURRENCY = 16

export interface SetupOptions extends InputOptions {
  concurrency?: number
  /** Run every step even when unchanged. */
  force?: boolean
  /** Seconds by which every service must have started (the config server's start-up deadline). */
  timeoutSec?: number
  /** Also write the deployment's block into this machine's /etc/hosts. */
  etcHosts?: boolean
}

export async function setup(dep: OpenedDeployment, opts: SetupOptions = {}): Promise<StepReport[]> {
  const {plan} = dep
  const records = await dep.liveNodes()
  const missing = plan.nodes.filter((n) => !records.some((r) => r.name === n.name)).map((n) => n.name)
  if (missing.length)
    throw new UserError(
      `these nodes do not exist yet: ${missing.join(', ')}; run nodeset create-node ${dep.file} first`,
    )
  const inputs = opts.inputs ?? (await collectInputs(dep, {...opts, ask: dep.ui.ask?.bind(dep.ui)}))
  const server = await dep.configServer()
  // Registering again keeps the config server's params in step with the file, and starts the
  // deployment's start-up deadline for this run; facts, outputs and tokens of existing nodes stay.
  await server.client.register(
    registrationFor(plan, {startupTimeoutSec: opts.timeoutSec ?? DEFAULT_SETUP_TIMEOUT_SEC, inputs}),
  )
  // A node whose sshd moved since create-node is reached where it now reports it listens.
  await followReportedSshPorts(server.client, dep.hostKeys, records)
  const reports = await runSetup(dep, records, {...opts, inputs}, false)
  if (opts.etcHosts) applyOperatorEtcHosts(plan.deployment, (await server.client.state()).instances)
  return reports
}

/** Rewrite the role maps and hosts blocks of these nodes from the config server's state. */
export function rewire(dep: OpenedDeployment, records: NodeRecord[]): Promise<StepReport[]> {
  return runSetup(dep, records, {}, true)
}

async function runSetup(dep: OpenedDeployment, records: NodeRecord[], opts: SetupOptions, wiringOnly: boolean) {
  const {plan} = dep

  const server = await dep.configServer()
  const nodes = wiringOnly ? plan.nodes.filter((n) => records.some((r) => r.name === n.name)) : plan.nodes
  // Rewiring is a side job of destroy-node: its steps are reported in its result, not as progress.
  const progress = wiringOnly ? silentUi.progress([]) : dep.ui.progress(nodes.map((n) => n.name))
  const matrix = new StepMatrix(
    nodes.map((n) => ({node: n.name, steps: wiringOnly ? ['wiring'] : ['base', 'wiring', ...n.services]})),
  )
  try {
    const reports = await setupNodes({
      plan,
      catalog: dep.catalog,
      records,
      server: server.client,
      // The deployment's shared sessions: up's update then reuses each node's connection instead of a new handshake.
      connect: async (record) => borrowed(await dep.session(record)),
      logFile: (node, step) => dep.workspace.logFile(node, step),
      vars: setupVars(dep.nodeset),
      setEtcHosts: dep.nodeset.general.setEtcHosts,
      concurrency: opts.concurrency ?? DEFAULT_CONCURRENCY,
      force: opts.force ?? false,
      secrets: dep.secrets,
      inputs: opts.inputs ?? {},
      wiringOnly,
      onEvent: (e) => {
        progress.event({...e})
        progress.update(e.node, matrix.record(e.node, e.step, e.status, e.message))
      },
    })
    for (const {name} of nodes) {
      const mine = reports.filter((r) => r.node === name)
      const bad = mine.filter((r) => r.status === 'failed' || r.status === 'blocked')
      const ran = mine.filter((r) => r.status === 'done').length
      const unchanged = mine.filter((r) => r.status === 'skipped').length
      progress.done(
        name,
        bad.length === 0,
        bad.length ? bad.map((r) => `${r.step} ${r.status}`).join(', ') : `${ran} ran, ${unchanged} unchanged`,
      )
    }
    return reports
  } finally {
    await progress.finish()
  }
}

/** A shared session lent to the setup runner: its close() leaves the connection to the deployment's close(). */
function borrowed(session: Session): Session {
  return {exec: (command, opts) => session.exec(command, opts), close: () => {}}
}

export function failedSteps(reports: StepReport[]): StepReport[] {
  return reports.filter((r) => r.status === 'failed' || r.status === 'blocked')
}

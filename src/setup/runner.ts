/**
 * setup-node: on every node, a base layer, the wiring (role map and hosts block), then each service
 * of its role, rendered from the node's complete configuration. A (node, service) step starts as
 * soon as what it references is known and what it comes after is done, in parallel across nodes
 * under a concurrency limit; it is never all-or-nothing per node. A failed step blocks only what
 * depends on it. Unchanged steps (same rendered content, recorded on the node) are skipped.
 * Which step starts when is decided by `schedule` (schedule.ts); one step runs with `runStep`.
 */
import type {ConfigServerClient} from '../configserver/client.js'
import type {World} from '../plan/template.js'
import type {Inputs, Plan} from '../plan/types.js'
import type {RoleMember} from '../plan/wiring.js'
import type {NodeRecord} from '../providers/provider.js'
import type {Catalog} from '../services/catalog.js'
import type {Session} from '../ssh/session.js'
import {parseRecordedSteps, recordedStepsCommand, type RecordedStep} from './commands.js'
import {renderStep} from './render.js'
import {runStep} from './run-step.js'
import {schedule} from './schedule.js'
import {
  BASE_STEP,
  buildSteps,
  members,
  missingFor,
  type Step,
  stepKey,
  type StepReport,
  type StepStatus,
  wiringSteps,
  worldFrom,
} from './steps.js'

export {StepMatrix} from './matrix.js'
export {wiringScript} from './render.js'
export {BASE_STEP, members, type StepReport, type StepStatus, WIRING_STEP, worldFrom} from './steps.js'

export interface SetupEvent {
  type: 'step'
  node: string
  step: string
  status: StepStatus
  message?: string
}

/** What setup-node asks of the config server. */
export type SetupServer = Pick<ConfigServerClient, 'state' | 'reportService'>

export interface SetupContext {
  plan: Plan
  catalog: Catalog
  records: NodeRecord[]
  server: SetupServer
  /** A session to the node; one per node is opened, on its first step, and closed at the end. */
  connect(node: NodeRecord): Promise<Session>
  logFile(node: string, step: string): string
  /** Values rendered into root context of every template (general, locations, hostnames…). */
  vars: Record<string, unknown>
  setEtcHosts: boolean
  concurrency: number
  force: boolean
  /** Secret values known so far; secret outputs are added as they arrive. */
  secrets: string[]
  /** Values of the params given at launch (collectInputs): inputs[node][service][param]. */
  inputs?: Inputs
  onEvent?(event: SetupEvent): void
  /** Longest a step may run. */
  stepTimeoutMs?: number
  /** Only rewire: run the wiring step on the nodes that exist (after nodes were destroyed). */
  wiringOnly?: boolean
}

/** Seconds every service has to start by default: the start-up deadline the caller registers with. */
export const DEFAULT_SETUP_TIMEOUT_SEC = 1800

/**
 * Run the steps on the nodes. The deployment is registered with the config server beforehand (by the
 * caller), so its params are those of the file and its start-up deadline runs.
 */
export async function setupNodes(ctx: SetupContext): Promise<StepReport[]> {
  const {plan} = ctx
  const world = worldFrom(plan, await ctx.server.state())
  const list = members(world)
  const records = new Map(ctx.records.map((r) => [r.name, r]))
  const steps = ctx.wiringOnly
    ? wiringSteps(plan.nodes.filter((n) => records.has(n.name)).map((n) => n.name))
    : buildSteps(plan)
  const reports = new Map<string, StepReport>(
    steps.map((s) => [stepKey(s.node, s.name), {node: s.node, step: s.name, status: 'waiting'}]),
  )
  const update = (report: StepReport, fields: Partial<StepReport>) => {
    Object.assign(report, fields)
    ctx.onEvent?.({type: 'step', node: report.node, step: report.step, status: report.status, message: report.message})
  }
  if (!ctx.wiringOnly)
    for (const {name} of plan.nodes.filter((n) => !list.some((m) => m.name === n.name)))
      update(reports.get(stepKey(name, BASE_STEP))!, {
        status: 'failed',
        message: `${name} has not phoned home to the config server: run nodeset create-node, and see its /var/log/nodeset-agent.log`,
      })

  const sessions = new Map<string, Promise<Session>>()
  const session = (node: string): Promise<Session> => {
    let s = sessions.get(node)
    if (!s) {
      const record = records.get(node)
      s = record
        ? ctx.connect(withReportedSshPort(record, world.nodes.find((n) => n.name === node)?.facts ?? {}))
        : Promise.reject(new Error(`${node} does not exist at the provider: run nodeset create-node first`))
      sessions.set(node, s)
    }
    return s
  }
  // Each node's recorded steps, read in one round trip on its first step (none readable: each step asks).
  const recordedOf = new Map<string, Promise<ReadonlyMap<string, RecordedStep>>>()
  const recorded = (node: string): Promise<ReadonlyMap<string, RecordedStep>> => {
    let r = recordedOf.get(node)
    if (!r) {
      r = session(node)
        .then((s) => s.exec(recordedStepsCommand(), {label: 'recorded steps'}))
        .then((result) => (result.code === 0 ? parseRecordedSteps(result.stdout) : new Map()))
        .catch(() => new Map())
      recordedOf.set(node, r)
    }
    return r
  }
  const running = new Map<string, Promise<void>>()
  try {
    for (;;) {
      const decisions = schedule({
        steps,
        status: new Map([...reports].map(([k, r]) => [k, r.status])),
        missing: (step) => missingFor(ctx.catalog, step, world),
        concurrency: ctx.concurrency,
      })
      for (const {step, message} of decisions.blocked)
        update(reports.get(stepKey(step.node, step.name))!, {status: 'blocked', message})
      for (const step of decisions.start) {
        const k = stepKey(step.node, step.name)
        const report = reports.get(k)!
        update(report, {status: 'running', message: 'starting', logFile: ctx.logFile(step.node, step.name)})
        running.set(
          k,
          execute(ctx, step, world, list, report, {session, recorded}, update).finally(() => running.delete(k)),
        )
      }
      if (decisions.settled) break
      await Promise.race(running.values())
    }
  } finally {
    await Promise.all(running.values())
    await Promise.all(
      [...sessions.values()].map(async (s) => {
        try {
          ;(await s).close()
        } catch {
          // A node that could not be reached has no session to close.
        }
      }),
    )
  }
  return [...reports.values()]
}

/** Run one step and record its outcome; a service's published outputs become known to the steps that wait for them. */
async function execute(
  ctx: SetupContext,
  step: Step,
  world: World,
  list: RoleMember[],
  report: StepReport,
  node: {
    session: (node: string) => Promise<Session>
    recorded: (node: string) => Promise<ReadonlyMap<string, RecordedStep>>
  },
  update: (report: StepReport, fields: Partial<StepReport>) => void,
): Promise<void> {
  const self = world.nodes.find((n) => n.name === step.node)!
  const outcome = await runStep(
    {
      deployment: ctx.plan.deployment,
      node: step.node,
      role: self.role,
      step: step.name,
      service: step.plan && {name: step.plan.service, provides: step.plan.provides},
      script: () => renderStep({...ctx, deployment: ctx.plan.deployment}, step, world, list),
      logFile: report.logFile!,
      force: ctx.force,
      timeoutMs: ctx.stepTimeoutMs,
    },
    {
      session: () => node.session(step.node),
      recorded: () => node.recorded(step.node),
      reportService: (node, service, r) => ctx.server.reportService(node, service, r),
      secrets: ctx.secrets,
      now: Date.now,
      onRunning: () => update(report, {message: 'running'}),
    },
  )
  if (step.plan && outcome.status !== 'failed')
    self.outputs[step.plan.service] = {...self.outputs[step.plan.service], ...outcome.outputs}
  const {status, message, tail, durationMs} = outcome
  update(report, {status, message, tail, durationMs})
}

/**
 * The node as setup reaches it: at the port its sshd listens on, as the node reported it (the
 * `sshd_port` fact, from `sshd -T` on the node), else where the provider says.
 */
export function withReportedSshPort(record: NodeRecord, facts: Record<string, unknown>): NodeRecord {
  const fact = facts.sshd_port
  const port = typeof fact === 'number' || (typeof fact === 'string' && /^[0-9]{1,5}$/.test(fact)) ? Number(fact) : 0
  return Number.isInteger(port) && port >= 1 && port <= 65535 ? {...record, sshPort: port} : record
}

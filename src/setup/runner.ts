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
import type {RecordedStep} from './commands.js'
import {renderStep} from './render.js'
import {runChain} from './run-step.js'
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

type Settle = (recorded: ReadonlyMap<string, RecordedStep>) => void

/** A node's recorded steps for one step: the first step of the node reads them (`reader` hands them on). */
interface NodeRecords {
  recorded(): Promise<ReadonlyMap<string, RecordedStep>>
  reader?: Settle
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
  // What each node recorded, read by its first step in that step's own round trip; its other steps wait
  // for it (none readable: each step asks the node itself).
  const recordedOf = new Map<string, Promise<ReadonlyMap<string, RecordedStep>>>()
  const recordsOf = (node: string): NodeRecords => {
    const known = recordedOf.get(node)
    if (known) return {recorded: () => known}
    let reader!: Settle
    const read = new Promise<ReadonlyMap<string, RecordedStep>>((resolve) => (reader = resolve))
    recordedOf.set(node, read)
    return {recorded: () => read, reader}
  }
  const running = new Map<string, Promise<void>>()
  // Steps that a running chain will run after the one it runs now: not the scheduler's to start.
  const claimed = new Set<string>()
  const status = (k: string) => reports.get(k)!.status
  try {
    for (;;) {
      const decisions = schedule({
        steps: steps.filter((s) => !claimed.has(stepKey(s.node, s.name))),
        status: new Map([...reports].map(([k, r]) => [k, r.status])),
        missing: (step) => missingFor(ctx.catalog, step, world),
        concurrency: ctx.concurrency,
      })
      for (const {step, message} of decisions.blocked)
        update(reports.get(stepKey(step.node, step.name))!, {status: 'blocked', message})
      for (const step of decisions.start) {
        const chain = ctx.stepTimeoutMs
          ? [step]
          : chainFrom(step, steps, status, claimed, (s) => missingFor(ctx.catalog, s, world))
        for (const s of chain.slice(1)) claimed.add(stepKey(s.node, s.name))
        const done = chain.map(() => deferred())
        chain.forEach((s, i) => {
          const k = stepKey(s.node, s.name)
          running.set(
            k,
            done[i].promise.finally(() => running.delete(k)),
          )
        })
        const begin = (s: Step) => {
          claimed.delete(stepKey(s.node, s.name))
          update(reports.get(stepKey(s.node, s.name))!, {
            status: 'running',
            message: 'starting',
            logFile: ctx.logFile(s.node, s.name),
          })
        }
        // Steps the chain will not reach wait again, for the scheduler to decide, before it is asked.
        const release = (after: number) =>
          chain.forEach((s, i) => {
            if (i <= after) return
            claimed.delete(stepKey(s.node, s.name))
            done[i].resolve()
          })
        const ended = (i: number, last: boolean) => {
          if (last) release(i)
          done[i].resolve()
        }
        void execute(ctx, chain, world, list, reports, {session, records: recordsOf}, update, begin, ended).finally(
          () => release(-1),
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

/**
 * After `step`, the steps of its node that become ready one at a time, each as the only one once the
 * steps before it are done: they run in the same round trip. A chain never follows a service that
 * publishes outputs (a later step would be rendered before them), nor runs two steps that could run at
 * once one after the other.
 */
export function chainFrom(
  step: Step,
  steps: readonly Step[],
  status: (key: string) => StepStatus,
  claimed: ReadonlySet<string>,
  missing: (step: Step) => readonly string[],
): Step[] {
  const chain = [step]
  const inChain = new Set([stepKey(step.node, step.name)])
  const finished = (k: string) => inChain.has(k) || status(k) === 'done' || status(k) === 'skipped'
  for (;;) {
    const last = chain[chain.length - 1]
    if (last.plan && last.plan.provides.length > 0) return chain
    const ready = steps.filter(
      (s) =>
        s.node === step.node &&
        !inChain.has(stepKey(s.node, s.name)) &&
        !claimed.has(stepKey(s.node, s.name)) &&
        status(stepKey(s.node, s.name)) === 'waiting' &&
        // Ready because of the chain: a step ready without it is the scheduler's to start.
        s.needs.some((k) => inChain.has(k)) &&
        s.needs.every(finished),
    )
    if (ready.length !== 1 || missing(ready[0]).length > 0) return chain
    chain.push(ready[0])
    inChain.add(stepKey(ready[0].node, ready[0].name))
  }
}

function deferred(): {promise: Promise<void>; resolve: () => void} {
  let resolve!: () => void
  const promise = new Promise<void>((r) => (resolve = r))
  return {promise, resolve}
}

/** Run a chain of steps and record each outcome; a service's published outputs become known to the steps that wait for them. */
async function execute(
  ctx: SetupContext,
  chain: Step[],
  world: World,
  list: RoleMember[],
  reports: Map<string, StepReport>,
  node: {
    session: (node: string) => Promise<Session>
    records: (node: string) => NodeRecords
  },
  update: (report: StepReport, fields: Partial<StepReport>) => void,
  begin: (step: Step) => void,
  ended: (index: number, last: boolean) => void,
): Promise<void> {
  const name = chain[0].node
  const self = world.nodes.find((n) => n.name === name)!
  const {recorded, reader} = node.records(name)
  const report = (step: Step) => reports.get(stepKey(step.node, step.name))!
  const jobs = chain.map((step) => ({
    deployment: ctx.plan.deployment,
    node: step.node,
    role: self.role,
    step: step.name,
    service: step.plan && {name: step.plan.service, provides: step.plan.provides},
    script: () => renderStep({...ctx, deployment: ctx.plan.deployment}, step, world, list),
    logFile: ctx.logFile(step.node, step.name),
    force: ctx.force,
    timeoutMs: ctx.stepTimeoutMs,
  }))
  await runChain(
    jobs,
    {
      session: () => node.session(name),
      ...(reader ? {onRecorded: reader} : {recorded}),
      reportService: (node, service, r) => ctx.server.reportService(node, service, r),
      secrets: ctx.secrets,
      now: Date.now,
      onRunning: (job) => update(report(chain[jobs.indexOf(job as (typeof jobs)[number])]), {message: 'running'}),
    },
    {
      begin: (i) => begin(chain[i]),
      end: (i, outcome, last) => {
        const step = chain[i]
        if (step.plan && outcome.status !== 'failed')
          self.outputs[step.plan.service] = {...self.outputs[step.plan.service], ...outcome.outputs}
        const {status, message, tail, durationMs} = outcome
        update(report(step), {status, message, tail, durationMs})
        ended(i, last)
      },
    },
  )
  // A first step that could not read them leaves the node's other steps to ask for themselves.
  reader?.(new Map())
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

/**
 * setup-node: on every node, a base layer, the wiring (role map and hosts block), then each service
 * of its role, rendered from the node's complete configuration. A (node, service) step starts as
 * soon as what it references is known and what it comes after is done, in parallel across nodes
 * under a concurrency limit; it is never all-or-nothing per node. A failed step blocks only what
 * depends on it. Unchanged steps (same rendered content, recorded on the node) are skipped.
 */
import fs from 'node:fs'
import path from 'node:path'
import pLimit from 'p-limit'
import type {ConfigServerClient} from '../configserver/client.js'
import type {DeploymentState} from '../configserver/protocol.js'
import {redact} from '../core/redact.js'
import {extractRefs, missingValues, renderTemplate, type World} from '../plan/template.js'
import type {Plan, StepPlan} from '../plan/types.js'
import {registrationFor} from '../configserver/registration.js'
import type {NodeRecord} from '../providers/provider.js'
import {type Catalog, isSecretName, TEMPLATES_DIR} from '../services/catalog.js'
import {randomBytes} from 'node:crypto'
import {contentHash, outputsCommand, parseOutputs, stepCommand} from './commands.js'
import type {SshSession} from '../ssh/ssh.js'
import {renderHostsBlock, renderRoleMap, renderRolesJson, type RoleMember} from '../plan/wiring.js'

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

export interface SetupEvent {
  type: 'step'
  node: string
  step: string
  status: StepStatus
  message?: string
}

export interface SetupContext {
  plan: Plan
  catalog: Catalog
  records: NodeRecord[]
  server: ConfigServerClient
  connect(node: NodeRecord): Promise<SshSession>
  logFile(node: string, step: string): string
  /** Values rendered into root context of every template (general, locations, hostnames…). */
  vars: Record<string, unknown>
  setEtcHosts: boolean
  concurrency: number
  force: boolean
  /** Secret values known so far; secret outputs are added as they arrive. */
  secrets: string[]
  onEvent?(event: SetupEvent): void
  /** Longest a step may run. */
  stepTimeoutMs?: number
  /** Only rewire: run the wiring step on the nodes that exist (after nodes were destroyed). */
  wiringOnly?: boolean
  /**
   * Seconds from now by which every service must have started, or the deployment fails at the config
   * server (its start-up deadline). Default 30 minutes.
   */
  startupTimeoutSec?: number
}

export const DEFAULT_SETUP_TIMEOUT_SEC = 1800

interface Step {
  node: string
  name: string
  /** Set for service steps. */
  plan?: StepPlan
  needs: string[]
}

const key = (node: string, step: string): string => `${node}/${step}`

const MARK: Record<StepStatus, string> = {
  waiting: '·',
  running: '…',
  skipped: '=',
  done: '✓',
  failed: '✗',
  blocked: '⊘',
}

/** One line per node with every step and its state, `base ✓  wiring ✓  mysql …`: the node × step view. */
export class StepMatrix {
  private readonly states = new Map<string, Map<string, {status: StepStatus; message?: string}>>()

  constructor(nodes: Array<{node: string; steps: string[]}>) {
    for (const {node, steps} of nodes)
      this.states.set(node, new Map(steps.map((s) => [s, {status: 'waiting' as StepStatus}])))
  }

  /** Record a step's state; returns the node's line. */
  record(node: string, step: string, status: StepStatus, message?: string): string {
    const steps = this.states.get(node)
    steps?.set(step, {status, message})
    const cells = [...(steps ?? [])].map(([name, s]) => `${name} ${MARK[s.status]}`).join('  ')
    const detail =
      status === 'running' || status === 'failed' || status === 'blocked' ? `  (${step}: ${message ?? status})` : ''
    return cells + detail
  }
}

function buildSteps(plan: Plan): Step[] {
  const steps: Step[] = []
  for (const node of plan.nodes) {
    steps.push({node: node.name, name: BASE_STEP, needs: []})
    steps.push({node: node.name, name: WIRING_STEP, needs: [key(node.name, BASE_STEP)]})
    for (const s of plan.steps.filter((s) => s.node === node.name)) {
      const outputDeps = plan.references
        .filter((r) => r.from.node === node.name && r.from.service === s.service && r.kind === 'output' && r.to.service)
        .map((r) => key(r.to.node, r.to.service!))
      const after = s.after.filter((a) => node.services.includes(a)).map((a) => key(node.name, a))
      steps.push({
        node: node.name,
        name: s.service,
        plan: s,
        needs: [...new Set([key(node.name, WIRING_STEP), ...after, ...outputDeps])],
      })
    }
  }
  return steps
}

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

/** The wiring step's script: role map, roles.json, and the managed block of /etc/hosts. */
export function wiringScript(deployment: string, list: RoleMember[], setEtcHosts: boolean): string {
  const heredoc = (file: string, content: string) =>
    `cat > ${file}.new <<'NODESET_EOF'\n${content}NODESET_EOF\nmv -f ${file}.new ${file}\n`
  let script =
    '#!/bin/sh\nset -eu\nmkdir -p /etc/nodeset\n' +
    heredoc('/etc/nodeset/roles', renderRoleMap(list)) +
    heredoc('/etc/nodeset/roles.json', renderRolesJson(list))
  if (setEtcHosts) {
    const block = renderHostsBlock(deployment, list)
    const [begin, end] = [`# BEGIN nodeset ${deployment}`, `# END nodeset ${deployment}`]
    // /etc/hosts may be a bind mount (local nodes): rewrite it in place, never rename over it.
    script +=
      `awk -v b='${begin}' -v e='${end}' '$0==b{skip=1;next} skip&&$0==e{skip=0;next} !skip{print}' /etc/hosts > /etc/nodeset/hosts.new\n` +
      `cat >> /etc/nodeset/hosts.new <<'NODESET_EOF'\n${block}NODESET_EOF\n` +
      'cat /etc/nodeset/hosts.new > /etc/hosts\nrm -f /etc/nodeset/hosts.new\n'
  }
  return script
}

const baseTemplate = (): string => fs.readFileSync(path.join(TEMPLATES_DIR, 'base', 'setup.sh.hbs'), 'utf8')

export async function setupNodes(ctx: SetupContext): Promise<StepReport[]> {
  const {plan} = ctx
  // Registering again keeps the config server's params in step with the file, and starts the
  // deployment's start-up deadline for this run; facts, outputs and tokens of existing nodes stay.
  if (!ctx.wiringOnly)
    await ctx.server.register(
      registrationFor(plan, {startupTimeoutSec: ctx.startupTimeoutSec ?? DEFAULT_SETUP_TIMEOUT_SEC}),
    )
  const state = await ctx.server.state()
  const world = worldFrom(plan, state)
  const list = members(world)
  const records = new Map(ctx.records.map((r) => [r.name, r]))
  const notHome = ctx.wiringOnly
    ? []
    : plan.nodes.map((n) => n.name).filter((name) => !list.some((m) => m.name === name))
  const steps = ctx.wiringOnly
    ? plan.nodes.filter((n) => records.has(n.name)).map((n): Step => ({node: n.name, name: WIRING_STEP, needs: []}))
    : buildSteps(plan)
  const reports = new Map<string, StepReport>(
    steps.map((s) => [key(s.node, s.name), {node: s.node, step: s.name, status: 'waiting'}]),
  )
  const emit = (report: StepReport) =>
    ctx.onEvent?.({type: 'step', node: report.node, step: report.step, status: report.status, message: report.message})
  const sessions = new Map<string, Promise<SshSession>>()
  const session = (node: string): Promise<SshSession> => {
    let s = sessions.get(node)
    if (!s) {
      const record = records.get(node)
      s = record
        ? ctx.connect(record)
        : Promise.reject(new Error(`${node} does not exist at the provider: run nodeset create-node first`))
      sessions.set(node, s)
    }
    return s
  }
  for (const name of notHome) {
    const r = reports.get(key(name, BASE_STEP))!
    Object.assign(r, {
      status: 'failed',
      message: `${name} has not phoned home to the config server: run nodeset create-node, and see its /var/log/nodeset-agent.log`,
    })
    emit(r)
  }
  const limit = pLimit(Math.max(1, ctx.concurrency))
  const pending = new Set(steps.filter((s) => reports.get(key(s.node, s.name))!.status === 'waiting'))
  const running = new Map<string, Promise<void>>()
  try {
    for (;;) {
      for (const step of [...pending]) {
        const report = reports.get(key(step.node, step.name))!
        const failedDep = step.needs.find((n) => ['failed', 'blocked'].includes(reports.get(n)?.status ?? ''))
        if (failedDep) {
          pending.delete(step)
          Object.assign(report, {status: 'blocked', message: `blocked by ${failedDep}`})
          emit(report)
          continue
        }
        if (!step.needs.every((n) => ['done', 'skipped'].includes(reports.get(n)?.status ?? ''))) continue
        if (step.plan && missingFor(ctx, step, world).length > 0) continue
        pending.delete(step)
        const k = key(step.node, step.name)
        running.set(
          k,
          limit(() => runStep(ctx, step, world, list, report, session, emit)).finally(() => running.delete(k)),
        )
      }
      if (running.size === 0) break
      await Promise.race(running.values())
    }
  } finally {
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
  for (const step of pending) {
    const report = reports.get(key(step.node, step.name))!
    const missing = step.plan ? missingFor(ctx, step, world) : []
    Object.assign(report, {
      status: 'blocked',
      message: missing.length
        ? `waiting for ${missing.map((m) => `${m.kind} ${m.key} of ${m.node}${m.service ? `/${m.service}` : ''}`).join(', ')}, which nothing provided`
        : 'blocked',
    })
    emit(report)
  }
  return [...reports.values()]
}

function missingFor(ctx: SetupContext, step: Step, world: World) {
  const meta = ctx.catalog.get(step.plan!.service)
  const refs = [
    ...step.plan!.params.flatMap((p) => extractRefs(p.value)),
    ...(meta?.script ? extractRefs(meta.script) : []),
    ...Object.values(meta?.partials ?? {}).flatMap((t) => extractRefs(t)),
  ]
  return missingValues(refs, world)
}

function renderStep(ctx: SetupContext, step: Step, world: World, list: RoleMember[]): string {
  const self = world.nodes.find((n) => n.name === step.node)!
  const vars = {
    ...ctx.vars,
    ...self.facts,
    deployment: ctx.plan.deployment,
    name: self.name,
    role: self.role,
    index: self.index,
    n: self.index,
    facts: self.facts,
  }
  if (step.name === BASE_STEP) return renderTemplate(baseTemplate(), world, vars)
  if (step.name === WIRING_STEP) return wiringScript(ctx.plan.deployment, list, ctx.setEtcHosts)
  const params = Object.fromEntries(step.plan!.params.map((p) => [p.name, renderTemplate(p.value, world, vars)]))
  for (const p of step.plan!.params) if (p.secret && params[p.name]) ctx.secrets.push(params[p.name])
  const meta = ctx.catalog.get(step.plan!.service)!
  return renderTemplate(meta.script, world, {...vars, params}, meta.partials)
}

async function runStep(
  ctx: SetupContext,
  step: Step,
  world: World,
  list: RoleMember[],
  report: StepReport,
  session: (node: string) => Promise<SshSession>,
  emit: (r: StepReport) => void,
): Promise<void> {
  const started = Date.now()
  const logFile = ctx.logFile(step.node, step.name)
  report.logFile = logFile
  const service = step.plan?.service
  const finish = (status: StepStatus, message: string, tail?: string) => {
    Object.assign(report, {status, message, tail, durationMs: Date.now() - started})
    emit(report)
  }
  try {
    Object.assign(report, {status: 'running', message: 'starting'})
    emit(report)
    const ssh = await session(step.node)
    const script = renderStep(ctx, step, world, list)
    const hash = contentHash(script)
    const marker = `nodeset-unchanged-${randomBytes(8).toString('hex')}`
    const role = world.nodes.find((n) => n.name === step.node)!.role
    fs.mkdirSync(path.dirname(logFile), {recursive: true, mode: 0o700})
    const log = fs.createWriteStream(logFile, {mode: 0o600})
    let output = ''
    let running = false
    let runningReport: Promise<unknown> = Promise.resolve()
    const result = await ssh.exec(
      stepCommand(
        step.name,
        hash,
        {deployment: ctx.plan.deployment, node: step.node, role, service: step.name},
        {force: ctx.force, marker},
      ),
      {
        label: step.name,
        stdin: script,
        timeoutMs: ctx.stepTimeoutMs,
        onOutput: (chunk) => {
          if (!running && !output.startsWith(marker) && (output + chunk).length >= marker.length) {
            running = !(output + chunk).startsWith(marker)
            if (running) {
              Object.assign(report, {message: 'running'})
              emit(report)
              if (service)
                runningReport = ctx.server.reportService(step.node, service, {state: 'running'}).catch(() => undefined)
            }
          }
          output += chunk
          if (output.length > 65536 && running) output = output.slice(-32768)
          if (running) log.write(redact(chunk, ctx.secrets))
        },
      },
    )
    await new Promise((resolve) => log.end(resolve))
    await runningReport
    if (result.code === 0 && result.stdout.startsWith(`${marker}\n`)) {
      fs.rmSync(logFile, {force: true})
      if (service) await publish(ctx, step, parseOutputs(result.stdout.slice(marker.length + 1)), world, 0)
      return finish('skipped', 'unchanged')
    }
    if (!running) fs.writeFileSync(logFile, redact(result.stdout + result.stderr, ctx.secrets), {mode: 0o600})
    const tail = redact(
      (running ? output : result.stdout + result.stderr).trimEnd().split('\n').slice(-15).join('\n'),
      ctx.secrets,
    )
    if (result.code !== 0) {
      if (service)
        await ctx.server.reportService(step.node, service, {
          state: 'failed',
          exitCode: result.code,
          message: tail.slice(-2000),
        })
      return finish('failed', `exit code ${result.code} (log: ${logFile})`, tail)
    }
    const outputs = service ? parseOutputs((await ssh.exec(outputsCommand(step.name))).stdout) : {}
    if (service) await publish(ctx, step, outputs, world, 0)
    finish('done', `done in ${((Date.now() - started) / 1000).toFixed(1)}s`)
  } catch (error) {
    const message = redact((error as Error).message, ctx.secrets)
    if (service)
      await ctx.server
        .reportService(step.node, service, {state: 'failed', message: message.slice(0, 2000)})
        .catch(() => undefined)
    finish('failed', message)
  }
}

/** Report a service's success and outputs to the config server, and make them visible to the steps that wait for them. */
async function publish(
  ctx: SetupContext,
  step: Step,
  outputs: Record<string, string>,
  world: World,
  exitCode: number,
): Promise<void> {
  const declared = step.plan!.provides
  const kept = Object.fromEntries(Object.entries(outputs).filter(([k]) => declared.includes(k)))
  for (const [k, v] of Object.entries(kept)) if (isSecretName(k) && v) ctx.secrets.push(v)
  await ctx.server.reportService(step.node, step.plan!.service, {state: 'succeeded', exitCode, outputs: kept})
  const node = world.nodes.find((n) => n.name === step.node)!
  node.outputs[step.plan!.service] = {...node.outputs[step.plan!.service], ...kept}
}

/**
 * One step on its node, over a `Session`: a single round trip that either finds the step unchanged
 * (the node prints a marker and the outputs it recorded) or runs the script as root. Its output goes
 * to the step's log with every secret redacted; a service's state and declared outputs go to the
 * config server.
 */
import {randomBytes} from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import type {ServiceReport} from '../configserver/protocol.js'
import {redact} from '../core/redact.js'
import {isSecretName} from '../services/catalog.js'
import type {Session} from '../ssh/session.js'
import {contentHash, outputsCommand, parseOutputs, type RecordedStep, stepCommand, stepFileName} from './commands.js'

export interface StepJob {
  deployment: string
  node: string
  role: string
  /** `base`, `wiring` or the service's name. */
  step: string
  /** For a service step: its state and outputs are reported, and only the outputs it declares are kept. */
  service?: {name: string; provides: readonly string[]}
  /** The script; rendered once the node's session is open. */
  script(): string
  logFile: string
  /** Run even when unchanged. */
  force: boolean
  timeoutMs?: number
}

export interface StepDeps {
  session(): Promise<Session>
  /**
   * What the node recorded of its steps before this run (recordedStepsCommand, read once per node): an
   * unchanged step is then skipped without a round trip of its own. Without it, each step asks.
   */
  recorded?(): Promise<ReadonlyMap<string, RecordedStep>>
  reportService(node: string, service: string, report: ServiceReport): Promise<unknown>
  /** Values to redact from logs and messages; secret outputs are added as they arrive. */
  secrets: string[]
  /** The clock, in milliseconds, for durations. */
  now(): number
  /** The script has started to run on the node (the step was not unchanged). */
  onRunning?(): void
}

export interface StepOutcome {
  status: 'done' | 'skipped' | 'failed'
  message: string
  /** The last lines of the output, for a failure; redacted. */
  tail?: string
  durationMs: number
  /** The declared outputs that were published (a service step that is done or unchanged). */
  outputs: Record<string, string>
}

/** Lines of output kept for a failure's report. */
const TAIL_LINES = 15

export async function runStep(job: StepJob, deps: StepDeps): Promise<StepOutcome> {
  const started = deps.now()
  const service = job.service
  const outcome = (status: StepOutcome['status'], message: string, extra: Partial<StepOutcome> = {}) => ({
    status,
    message,
    outputs: {},
    ...extra,
    durationMs: deps.now() - started,
  })
  let log: fs.WriteStream | undefined
  try {
    const session = await deps.session()
    const script = job.script()
    const hash = contentHash(script)
    const before = job.force ? undefined : (await deps.recorded?.())?.get(stepFileName(job.step))
    if (before?.hash === hash) {
      fs.rmSync(job.logFile, {force: true})
      const outputs = service ? await publish(job, deps, parseOutputs(before.outputs)) : {}
      return outcome('skipped', 'unchanged', {outputs})
    }
    const marker = `nodeset-unchanged-${randomBytes(8).toString('hex')}`
    fs.mkdirSync(path.dirname(job.logFile), {recursive: true, mode: 0o700})
    const stream = (log = fs.createWriteStream(job.logFile, {mode: 0o600}))
    let output = ''
    let running = false
    let runningReport: Promise<unknown> = Promise.resolve()
    // The log gets whole lines, redacted, so a secret split across two chunks is still caught.
    let unlogged = ''
    const toLog = (text: string, all = false) => {
      unlogged += text
      const cut = all || unlogged.length > 65536 ? unlogged.length : unlogged.lastIndexOf('\n') + 1
      if (cut === 0) return
      stream.write(redact(unlogged.slice(0, cut), deps.secrets))
      unlogged = unlogged.slice(cut)
    }
    const env = {deployment: job.deployment, node: job.node, role: job.role, service: job.step}
    const result = await session.exec(stepCommand(job.step, hash, env, {force: job.force, marker}), {
      label: job.step,
      stdin: script,
      timeoutMs: job.timeoutMs,
      onOutput: (chunk) => {
        if (running) toLog(chunk)
        // Running, not unchanged, as soon as the output cannot be the marker.
        else if (!output.startsWith(marker) && (output + chunk).length >= marker.length) {
          running = !(output + chunk).startsWith(marker)
          if (running) {
            toLog(output + chunk)
            deps.onRunning?.()
            if (service)
              runningReport = deps.reportService(job.node, service.name, {state: 'running'}).catch(() => undefined)
          }
        }
        output += chunk
        if (output.length > 65536 && running) output = output.slice(-32768)
      },
    })
    toLog('', true)
    await new Promise((resolve) => stream.end(resolve))
    log = undefined
    await runningReport
    if (result.code === 0 && result.stdout.startsWith(`${marker}\n`)) {
      fs.rmSync(job.logFile, {force: true})
      const outputs = service ? await publish(job, deps, parseOutputs(result.stdout.slice(marker.length + 1))) : {}
      return outcome('skipped', 'unchanged', {outputs})
    }
    if (!running) fs.writeFileSync(job.logFile, redact(result.stdout + result.stderr, deps.secrets), {mode: 0o600})
    const text = running ? output : result.stdout + result.stderr
    const tail = redact(text.trimEnd().split('\n').slice(-TAIL_LINES).join('\n'), deps.secrets)
    if (result.code !== 0) {
      if (service)
        await deps.reportService(job.node, service.name, {
          state: 'failed',
          exitCode: result.code,
          message: tail.slice(-2000),
        })
      return outcome('failed', `exit code ${result.code} (log: ${job.logFile})`, {tail})
    }
    const outputs = service
      ? await publish(job, deps, parseOutputs((await session.exec(outputsCommand(job.step))).stdout))
      : {}
    return outcome('done', `done in ${((deps.now() - started) / 1000).toFixed(1)}s`, {outputs})
  } catch (error) {
    log?.end()
    const message = redact((error as Error).message, deps.secrets)
    if (service)
      await deps
        .reportService(job.node, service.name, {state: 'failed', message: message.slice(0, 2000)})
        .catch(() => undefined)
    return outcome('failed', message)
  }
}

/** Report a service's success with the outputs it declares; returns those outputs. */
async function publish(job: StepJob, deps: StepDeps, outputs: Record<string, string>): Promise<Record<string, string>> {
  const service = job.service!
  const kept = Object.fromEntries(Object.entries(outputs).filter(([k]) => service.provides.includes(k)))
  for (const [k, v] of Object.entries(kept)) if (isSecretName(k) && v) deps.secrets.push(v)
  await deps.reportService(job.node, service.name, {state: 'succeeded', exitCode: 0, outputs: kept})
  return kept
}

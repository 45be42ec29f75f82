/**
 * One step on its node, over a `Session`: a single round trip that either finds the step unchanged
 * (the node prints a marker and the outputs it recorded) or runs the script as root and prints the
 * outputs it wrote; the node's first step also reads what the node recorded of every step. Its output goes
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
import {chainCommand, contentHash, markerLine, parseOutputs, type RecordedStep, stepFileName} from './commands.js'
import {StepOutput} from './step-output.js'

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
  /**
   * Set for the node's first step: it reads what the node recorded in its own round trip (instead of
   * asking `recorded`) and hands it over here, for the node's other steps.
   */
  onRecorded?(recorded: ReadonlyMap<string, RecordedStep>): void
  reportService(node: string, service: string, report: ServiceReport): Promise<unknown>
  /** Values to redact from logs and messages; secret outputs are added as they arrive. */
  secrets: string[]
  /** The clock, in milliseconds, for durations. */
  now(): number
  /** This step's script has started to run on the node (the step was not unchanged). */
  onRunning?(job: StepJob): void
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
  const [outcome] = await runChain([job], deps)
  return outcome!
}

/**
 * Steps of one node that each need the one before, in one round trip (chainCommand): the first that
 * fails ends it, and the steps after it are not reached (undefined in the result: the caller decides
 * what becomes of them, told by `end`'s `last`). `onBegin` says when each step begins, `onEnd` what became of it, as it happens.
 */
export async function runChain(
  jobs: readonly StepJob[],
  deps: StepDeps,
  on: {
    begin?(index: number): void
    /** `last`: no step after this one runs in this chain. */
    end?(index: number, outcome: StepOutcome, last: boolean): void
  } = {},
): Promise<Array<StepOutcome | undefined>> {
  const outcomes: Array<StepOutcome | undefined> = jobs.map(() => undefined)
  const settle = (index: number, outcome: StepOutcome, last = true) => {
    outcomes[index] = outcome
    on.end?.(index, outcome, last)
    return outcomes
  }
  on.begin?.(0)
  const first = new StepRun(jobs[0], deps)
  let session: Session
  const scripts: string[] = []
  try {
    session = await deps.session()
    scripts.push(jobs[0].script())
  } catch (error) {
    return settle(0, await first.failed(error as Error))
  }
  // A script that cannot be rendered yet ends the chain before its step, which then runs on its own.
  for (const job of jobs.slice(1)) {
    try {
      scripts.push(job.script())
    } catch {
      break
    }
  }
  const chain = jobs.slice(0, scripts.length)
  const hashes = scripts.map(contentHash)
  // The node's first step reads what it recorded in its own round trip; the others ask the runner.
  const readRecorded = !chain[0].force && deps.onRecorded !== undefined
  if (!chain[0].force && !readRecorded && chain.length === 1) {
    const before = (await deps.recorded?.())?.get(stepFileName(chain[0].step))
    if (before?.hash === hashes[0]) return settle(0, await first.unchangedAsRecorded(before.outputs))
  }
  const marker = `nodeset-unchanged-${randomBytes(8).toString('hex')}`
  const runs: StepRun[] = [first]
  let current = 0
  const finishing: Array<Promise<unknown>> = []
  const advance = () => {
    const index = current
    finishing.push(runs[index].finish(0).then((outcome) => settle(index, outcome, false)))
    current++
    on.begin?.(current)
    runs.push(new StepRun(chain[current], deps))
    runs[current].start(marker, false)
  }
  first.start(marker, readRecorded)
  const next = markerLine(marker, 'next')
  const stdout = new MarkerSplit(next, (text) => runs[current].stdout(text), advance)
  const stderr = new MarkerSplit(
    next,
    (text) => runs[current].stderr(text),
    () => undefined,
  )
  const steps = chain.map((job, i) => ({
    step: job.step,
    hash: hashes[i],
    env: {deployment: job.deployment, node: job.node, role: job.role, service: job.step},
    bytes: Buffer.byteLength(scripts[i]),
  }))
  try {
    const result = await session.exec(chainCommand(steps, {force: chain[0].force, marker, readRecorded}), {
      label: chain.map((job) => job.step).join(', '),
      stdin: chain.length === 1 ? scripts[0] : scripts.join(''),
      timeoutMs: chain.length === 1 ? chain[0].timeoutMs : undefined,
      onOutput: (chunk, from) => (from === 'stdout' ? stdout : stderr).push(chunk),
    })
    stdout.end()
    stderr.end()
    await Promise.all(finishing)
    return settle(current, await runs[current].finish(result.code))
  } catch (error) {
    await Promise.all(finishing)
    return settle(current, await runs[current].failed(error as Error))
  }
}

/** Splits a stream at a line, handing on the text between. */
class MarkerSplit {
  private pending = ''

  constructor(
    private readonly line: string,
    private readonly text: (text: string) => void,
    private readonly split: () => void,
  ) {}

  push(chunk: string): void {
    this.pending += chunk
    for (let at = this.pending.indexOf(this.line); at >= 0; at = this.pending.indexOf(this.line)) {
      if (at > 0) this.text(this.pending.slice(0, at))
      this.pending = this.pending.slice(at + this.line.length)
      this.split()
    }
    // Keep back what may be the start of the line.
    let keep = Math.min(this.line.length - 1, this.pending.length)
    while (keep > 0 && !this.line.startsWith(this.pending.slice(-keep))) keep--
    if (this.pending.length > keep) {
      this.text(this.pending.slice(0, this.pending.length - keep))
      this.pending = this.pending.slice(this.pending.length - keep)
    }
  }

  end(): void {
    if (this.pending) this.text(this.pending)
    this.pending = ''
  }
}

/**
 * One step while it runs: its log (whole lines, redacted, so a secret split across two chunks is
 * still caught), the running report of its service, and its outcome from what the node printed.
 */
class StepRun {
  private readonly started: number
  private log?: fs.WriteStream
  private output = ''
  private unlogged = ''
  // What the command says on stderr before the script runs, logged only if it does, or if it fails.
  private stderrBefore = ''
  private runningReport: Promise<unknown> = Promise.resolve()
  private parsed?: StepOutput

  constructor(
    private readonly job: StepJob,
    private readonly deps: StepDeps,
  ) {
    this.started = deps.now()
  }

  start(marker: string, readRecorded: boolean): void {
    const {job, deps} = this
    fs.mkdirSync(path.dirname(job.logFile), {recursive: true, mode: 0o700})
    this.log = fs.createWriteStream(job.logFile, {mode: 0o600})
    this.parsed = new StepOutput(marker, readRecorded, {
      recorded: (recorded) => deps.onRecorded?.(recorded),
      running: () => {
        this.toLog(this.stderrBefore)
        this.keep(this.stderrBefore)
        deps.onRunning?.(job)
        if (job.service)
          this.runningReport = deps.reportService(job.node, job.service.name, {state: 'running'}).catch(() => undefined)
      },
      script: (text) => {
        this.toLog(text)
        this.keep(text)
      },
    })
  }

  stdout(text: string): void {
    this.parsed!.push(text)
  }

  stderr(text: string): void {
    if (this.parsed!.running) {
      this.toLog(text)
      this.keep(text)
    } else this.stderrBefore += text
  }

  /** The node said the step is unchanged, in the listing its first step read. */
  async unchangedAsRecorded(outputs: string): Promise<StepOutcome> {
    fs.rmSync(this.job.logFile, {force: true})
    return this.outcome('skipped', 'unchanged', {outputs: await this.publishFrom(outputs)})
  }

  /** What became of the step, once its part of the command ended with `code`. */
  async finish(code: number): Promise<StepOutcome> {
    const {job, deps} = this
    const parsed = this.parsed!
    parsed.end()
    await this.closeLog()
    await this.runningReport
    if (code === 0 && parsed.unchanged) {
      fs.rmSync(job.logFile, {force: true})
      return this.outcome('skipped', 'unchanged', {outputs: await this.publishFrom(parsed.outputs ?? '')})
    }
    if (!parsed.running) fs.writeFileSync(job.logFile, redact(this.stderrBefore, deps.secrets), {mode: 0o600})
    const text = parsed.running ? this.output : this.stderrBefore
    const tail = redact(text.trimEnd().split('\n').slice(-TAIL_LINES).join('\n'), deps.secrets)
    if (code !== 0) {
      if (job.service)
        await deps.reportService(job.node, job.service.name, {
          state: 'failed',
          exitCode: code,
          message: tail.slice(-2000),
        })
      return this.outcome('failed', `exit code ${code} (log: ${job.logFile})`, {tail})
    }
    const outputs = await this.publishFrom(parsed.outputs ?? '')
    return this.outcome('done', `done in ${((deps.now() - this.started) / 1000).toFixed(1)}s`, {outputs})
  }

  async failed(error: Error): Promise<StepOutcome> {
    const {job, deps} = this
    this.log?.end()
    const message = redact(error.message, deps.secrets)
    if (job.service)
      await deps
        .reportService(job.node, job.service.name, {state: 'failed', message: message.slice(0, 2000)})
        .catch(() => undefined)
    return this.outcome('failed', message)
  }

  private outcome(status: StepOutcome['status'], message: string, extra: Partial<StepOutcome> = {}): StepOutcome {
    return {status, message, outputs: {}, ...extra, durationMs: this.deps.now() - this.started}
  }

  private publishFrom(text: string): Promise<Record<string, string>> {
    return this.job.service ? publish(this.job, this.deps, parseOutputs(text)) : Promise.resolve({})
  }

  private keep(text: string): void {
    this.output += text
    if (this.output.length > 65536) this.output = this.output.slice(-32768)
  }

  private toLog(text: string, all = false): void {
    this.unlogged += text
    const cut = all || this.unlogged.length > 65536 ? this.unlogged.length : this.unlogged.lastIndexOf('\n') + 1
    if (cut === 0) return
    this.log?.write(redact(this.unlogged.slice(0, cut), this.deps.secrets))
    this.unlogged = this.unlogged.slice(cut)
  }

  private async closeLog(): Promise<void> {
    this.toLog('', true)
    const log = this.log
    this.log = undefined
    if (log) await new Promise((resolve) => log.end(resolve))
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

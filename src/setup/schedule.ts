/**
 * The setup scheduler, a pure function: given the steps, the state of each and what values each
 * still waits for, which steps start now and which are blocked, and by what. setupNodes applies the
 * decisions, runs the steps it started and asks again whenever one of them ends.
 */
import {stepKey, type StepStatus} from './steps.js'

export interface SchedulableStep {
  node: string
  name: string
  /** `node/step` keys of the steps that must be done (or unchanged) first. */
  needs: readonly string[]
}

export interface ScheduleInput<S extends SchedulableStep> {
  steps: readonly S[]
  /** Each step's state by `node/step`; a step not in it is waiting. */
  status: ReadonlyMap<string, StepStatus>
  /** The values a waiting step refers to that are not known yet, e.g. `output password of db.x/mysql`. */
  missing(step: S): readonly string[]
  /** How many steps may run at once (at least one). */
  concurrency: number
}

export interface Decisions<S> {
  /** Steps to start now, in the order of `steps`. */
  start: S[]
  /** Steps that will never run, with why: `blocked by node/step`, or the values that nothing provided. */
  blocked: Array<{step: S; message: string}>
  /** Nothing runs and nothing can start: once `blocked` is applied, every step has its final state. */
  settled: boolean
}

const FINISHED = new Set<StepStatus>(['done', 'skipped'])
const FAILED = new Set<StepStatus>(['failed', 'blocked'])

export function schedule<S extends SchedulableStep>(input: ScheduleInput<S>): Decisions<S> {
  const status = new Map(input.status)
  const state = (key: string): StepStatus => status.get(key) ?? 'waiting'
  const waiting = (): S[] => input.steps.filter((s) => state(stepKey(s.node, s.name)) === 'waiting')
  const blocked: Decisions<S>['blocked'] = []
  const block = (step: S, message: string) => {
    status.set(stepKey(step.node, step.name), 'blocked')
    blocked.push({step, message})
  }

  // What needs a failed or blocked step is blocked by it, and so on down the line.
  for (let changed = true; changed;) {
    changed = false
    for (const step of waiting()) {
      const by = step.needs.find((need) => FAILED.has(state(need)))
      if (by) {
        block(step, `blocked by ${by}`)
        changed = true
      }
    }
  }

  const running = input.steps.filter((s) => state(stepKey(s.node, s.name)) === 'running').length
  const ready = waiting().filter(
    (step) => step.needs.every((need) => FINISHED.has(state(need))) && input.missing(step).length === 0,
  )
  const start = ready.slice(0, Math.max(0, Math.max(1, input.concurrency) - running))
  if (running > 0 || start.length > 0) return {start, blocked, settled: false}

  // Nothing runs and nothing can start: what still waits never will.
  for (const step of waiting()) {
    const missing = input.missing(step)
    const unmet = step.needs.find((need) => !FINISHED.has(state(need)))
    block(
      step,
      missing.length
        ? `waiting for ${missing.join(', ')}, which nothing provided`
        : unmet
          ? `blocked by ${unmet}`
          : 'blocked',
    )
  }
  return {start, blocked, settled: true}
}

/** The node × step view of a run: one line per node with every step and its state. */
import type {StepStatus} from './steps.js'

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

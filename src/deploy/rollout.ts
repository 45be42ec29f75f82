/**
 * Staged activation: the first appserver alone (it runs the migration hook), then the others a
 * batch at a time; each one out of the balancer's rotation while it switches, and back in only once
 * healthy. When any step fails, every appserver that switched goes back to the release it ran
 * before, the same careful way. The order and the steps are plain data (`rolloutBatches`,
 * `activationSteps`, `revertSteps`); `rollout` carries them out over SSH.
 */
import type {HookStep} from './appini.js'
import {balancerCommand, deactivateScript, healthScript, hookScript, switchScript} from './scripts.js'
import type {SshSession} from '../ssh/ssh.js'
import type {DeployNode, DeployTargets} from './targets.js'

export type ActivationStep = 'drain' | 'switch' | 'health' | 'hook' | 'restore'
export type RevertStep = 'drain' | 'switch-back' | 'deactivate' | 'health' | 'restore'

/** The first node alone, then the rest in batches of `batchSize`. */
export function rolloutBatches<T>(nodes: readonly T[], batchSize: number): T[][] {
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error('batch size must be a whole number, 1 or more')
  if (nodes.length === 0) return []
  const [first, ...rest] = nodes
  const batches: T[][] = [[first]]
  for (let i = 0; i < rest.length; i += batchSize) batches.push(rest.slice(i, i + batchSize))
  return batches
}

/** What activating a release on one node takes. Behind a balancer, it is out of rotation from drain to restore. */
export function activationSteps(opts: {balanced: boolean; hook: boolean}): ActivationStep[] {
  return [
    ...(opts.balanced ? (['drain'] as const) : []),
    'switch',
    'health',
    ...(opts.hook ? (['hook'] as const) : []),
    ...(opts.balanced ? (['restore'] as const) : []),
  ]
}

/**
 * Taking one node back to the release it ran before (`to`). With none before, the app stops there
 * and the node stays out of rotation: it has nothing healthy to serve.
 */
export function revertSteps(opts: {balanced: boolean; drained: boolean; to?: string}): RevertStep[] {
  const drain: RevertStep[] = opts.balanced && !opts.drained ? ['drain'] : []
  if (!opts.to) return [...drain, 'deactivate']
  return [...drain, 'switch-back', 'health', ...(opts.balanced ? (['restore'] as const) : [])]
}

export interface RolloutContext {
  app: string
  targets: DeployTargets
  session(node: DeployNode): Promise<SshSession>
  /** The health-check path of a release (each release keeps its own). */
  healthCheck(release: string): string
  healthTimeoutSec: number
  hook: HookStep[]
  hookTimeoutSec: number
  batchSize: number
  onProgress?(node: string, text: string): void
}

export interface RolloutPlan {
  /** The release each appserver goes to. */
  target: Map<string, string>
  /** The release each appserver runs now (none on a node the app never ran on). */
  before: Map<string, string | undefined>
  direction: 'forward' | 'back'
  /** Run the app's update_fetch on the first node (updates; never rollbacks). */
  runHook: boolean
}

export type NodeOutcome = 'activated' | 'unchanged' | 'not switched' | 'reverted' | 'deactivated' | 'revert failed'

export interface NodeResult {
  node: string
  before?: string
  target: string
  /** What it runs now. */
  release?: string
  outcome: NodeOutcome
  inRotation: boolean
  error?: string
}

export interface RolloutReport {
  ok: boolean
  /** The first failure: what failed and where. */
  failure?: {node: string; step: ActivationStep; message: string}
  nodes: NodeResult[]
}

interface NodeState {
  node: DeployNode
  switched: boolean
  drained: boolean
  result: NodeResult
}

/** One balancer reload at a time: drains and restores of a batch queue up. */
class BalancerQueue {
  private tail: Promise<unknown> = Promise.resolve()
  constructor(private readonly ctx: RolloutContext) {}

  run(action: 'drain' | 'restore', node: DeployNode): Promise<void> {
    const balancer = this.ctx.targets.balancer!
    const next = this.tail.then(async () => {
      const session = await this.ctx.session(balancer)
      await session.run(balancerCommand(action, {ip: node.ip, port: this.ctx.targets.port}), {
        label: `${action === 'drain' ? 'taking' : 'putting'} ${node.name} ${action === 'drain' ? 'out of' : 'back in'} rotation at the balancer`,
        timeoutMs: 60_000,
      })
    })
    this.tail = next.catch(() => undefined)
    return next
  }
}

export async function rollout(ctx: RolloutContext, plan: RolloutPlan): Promise<RolloutReport> {
  const balanced = ctx.targets.balancer !== undefined
  const balancer = new BalancerQueue(ctx)
  const states = ctx.targets.appservers.map((node): NodeState => ({
    node,
    switched: false,
    drained: false,
    result: {
      node: node.name,
      before: plan.before.get(node.name),
      target: plan.target.get(node.name)!,
      release: plan.before.get(node.name),
      outcome: 'not switched',
      inRotation: true,
    },
  }))
  let failure: RolloutReport['failure']
  const progress = (node: DeployNode, text: string) => ctx.onProgress?.(node.name, text)

  const activate = async (state: NodeState, hook: boolean): Promise<void> => {
    const {node} = state
    const target = state.result.target
    let step: ActivationStep = 'drain'
    try {
      for (step of activationSteps({balanced, hook})) {
        if (step === 'drain') {
          progress(node, 'out of rotation')
          await balancer.run('drain', node)
          state.drained = true
          state.result.inRotation = false
        } else if (step === 'switch') {
          progress(node, `switching to ${target}`)
          state.switched = true
          await runScript(ctx, node, switchScript(ctx.app, target, plan.direction), `switch to ${target}`, 120_000)
          state.result.release = target
        } else if (step === 'health') {
          progress(node, `health check ${ctx.healthCheck(target)}`)
          await checkHealth(ctx, node, target)
        } else if (step === 'hook') {
          progress(node, 'running update_fetch')
          await runScript(
            ctx,
            node,
            hookScript({app: ctx.app, port: ctx.targets.port, steps: ctx.hook, requestTimeoutSec: ctx.hookTimeoutSec}),
            'update_fetch hook',
            ctx.hookTimeoutSec * 1000,
          )
        } else {
          await balancer.run('restore', node)
          state.drained = false
          state.result.inRotation = true
        }
      }
      state.result.outcome = 'activated'
      progress(node, `running ${target}`)
    } catch (error) {
      const message = (error as Error).message
      state.result.error = message
      failure ??= {node: node.name, step, message}
      throw error
    }
  }

  const batches = rolloutBatches(states, ctx.batchSize)
  for (const [i, batch] of batches.entries()) {
    const results = await Promise.allSettled(
      batch.map((state) => activate(state, plan.runHook && i === 0 && ctx.hook.length > 0)),
    )
    if (results.some((r) => r.status === 'rejected')) break
  }
  if (!failure) return {ok: true, nodes: states.map((s) => s.result)}

  // Undo: the most recently switched first, a batch at a time.
  const switched = states.filter((s) => s.switched || s.drained).reverse()
  for (const batch of rolloutBatches(switched, ctx.batchSize)) {
    await Promise.allSettled(batch.map((state) => revert(ctx, state, balanced, balancer)))
  }
  return {ok: false, failure, nodes: states.map((s) => s.result)}
}

async function revert(
  ctx: RolloutContext,
  state: NodeState,
  balanced: boolean,
  balancer: BalancerQueue,
): Promise<void> {
  const {node, result} = state
  const to = result.before
  if (!state.switched) {
    // Drained, never switched: it still runs what it ran.
    if (!state.drained) return
    try {
      await balancer.run('restore', node)
      state.drained = false
      result.inRotation = true
    } catch (error) {
      result.error = `${result.error ? `${result.error}\n` : ''}putting it back in rotation failed: ${(error as Error).message}`
    }
    return
  }
  try {
    for (const step of revertSteps({balanced, drained: state.drained, to})) {
      if (step === 'drain') {
        ctx.onProgress?.(node.name, 'out of rotation, to go back')
        await balancer.run('drain', node)
        state.drained = true
        result.inRotation = false
      } else if (step === 'switch-back') {
        ctx.onProgress?.(node.name, `going back to ${to}`)
        await runScript(ctx, node, switchScript(ctx.app, to!, 'back'), `switch back to ${to}`, 120_000)
        result.release = to
      } else if (step === 'deactivate') {
        ctx.onProgress?.(node.name, 'stopping: no release ran here before')
        await runScript(ctx, node, deactivateScript(ctx.app, result.target), 'stop', 60_000)
        result.release = undefined
      } else if (step === 'health') {
        await checkHealth(ctx, node, to!)
      } else {
        await balancer.run('restore', node)
        state.drained = false
        result.inRotation = true
      }
    }
    result.outcome = to ? 'reverted' : 'deactivated'
    ctx.onProgress?.(node.name, to ? `back on ${to}` : 'stopped')
  } catch (error) {
    result.outcome = 'revert failed'
    result.error = `${result.error ? `${result.error}\n` : ''}going back failed: ${(error as Error).message}`
    ctx.onProgress?.(node.name, 'going back failed; left out of rotation')
  }
}

function checkHealth(ctx: RolloutContext, node: DeployNode, release: string): Promise<string> {
  const script = healthScript({
    app: ctx.app,
    port: ctx.targets.port,
    path: ctx.healthCheck(release),
    timeoutSec: ctx.healthTimeoutSec,
  })
  return runScript(ctx, node, script, 'health check', (ctx.healthTimeoutSec + 30) * 1000)
}

export async function runScript(
  ctx: {session(node: DeployNode): Promise<SshSession>},
  node: DeployNode,
  script: string,
  label: string,
  timeoutMs: number,
): Promise<string> {
  const session = await ctx.session(node)
  const {stdout} = await session.run('/bin/sh -s', {stdin: script, label, timeoutMs})
  return stdout
}

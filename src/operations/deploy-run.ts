/**
 * Running a deploy operation for a command: the app's context, the deploy lock, live progress (one
 * line for the app's phases, one per node) and the result as a table or JSON.
 */
import {progressView} from '../cli/progress.js'
import {table} from '../plan/render.js'
import type {AppConfig} from '../deploy/appini.js'
import {appContext, lockApp, type OpenedDeployment} from './deploy-context.js'
import {type DeployContext, type DeployEvent, type DeployResult} from '../deploy/update.js'

export interface RunInput {
  file: string
  app: string
  services: AppConfig['services']
  json: boolean
  secrets: string[]
  /** Take the app's deploy lock (update, rollback). */
  lock: boolean
  /** Show live progress (default true). */
  progress?: boolean
}

export async function withAppContext<T>(
  opened: OpenedDeployment,
  input: RunInput,
  work: (ctx: DeployContext) => Promise<T>,
  done?: (result: T) => Map<string, {ok: boolean; text: string}>,
): Promise<T> {
  const unlock = input.lock ? lockApp(opened.deployment.workspace.dir, input.app) : () => undefined
  let progress: ReturnType<typeof progressView> | undefined
  const onEvent = (event: DeployEvent): void => {
    progress?.event({...event})
    if (event.type === 'phase') progress?.update(input.app, event.text)
    else progress?.update(event.node, event.text)
  }
  try {
    const {ctx, close} = await appContext(opened, {
      file: input.file,
      app: input.app,
      services: input.services,
      secrets: input.secrets,
      onEvent,
    })
    const serviceNodes = Object.values(ctx.targets.services).flatMap((nodes) => nodes.map((n) => n.name))
    const items = [...new Set([input.app, ...ctx.targets.appservers.map((n) => n.name), ...serviceNodes])]
    if (input.progress !== false) progress = progressView(items, {json: input.json, secrets: input.secrets})
    try {
      const result = await work(ctx)
      const outcomes = done?.(result) ?? new Map()
      for (const item of items) {
        const outcome = outcomes.get(item)
        progress?.done(item, outcome?.ok ?? true, outcome?.text ?? 'done')
      }
      return result
    } catch (error) {
      for (const item of items)
        progress?.done(item, false, item === input.app ? (error as Error).message.split('\n')[0] : 'stopped')
      throw error
    } finally {
      await progress?.finish()
      await close()
    }
  } finally {
    unlock()
  }
}

/** Per progress item: how the deploy ended there. */
export function deployOutcomes(result: DeployResult): Map<string, {ok: boolean; text: string}> {
  const outcomes = new Map<string, {ok: boolean; text: string}>()
  outcomes.set(result.app, {
    ok: result.ok,
    text: result.ok
      ? `${result.release} is active`
      : `${result.release} failed at ${result.failure?.step} on ${result.failure?.node}`,
  })
  for (const n of result.nodes) {
    const ok = n.outcome === 'activated' || (!result.ok && (n.outcome === 'reverted' || n.outcome === 'not switched'))
    outcomes.set(n.node, {
      ok,
      text: `${n.outcome}: runs ${n.release ?? 'nothing'}${n.inRotation ? '' : ', out of rotation'}`,
    })
  }
  return outcomes
}

export function deployTable(result: DeployResult): string {
  return table(
    ['APPSERVER', 'BEFORE', 'NOW', 'RESULT', 'IN ROTATION'],
    result.nodes.map((n) => [n.node, n.before ?? '-', n.release ?? '-', n.outcome, n.inRotation ? 'yes' : 'no']),
  )
}

/**
 * update, rollback and releases of one app: its targets (from the config server's state), one SSH
 * session per node with the provider's host-key policy, the deploy lock, and live progress (one line
 * for the app's phases, one per node).
 */
import fs from 'node:fs'
import path from 'node:path'
import {UserError} from '../core/errors.js'
import {readAppConfig, type AppConfig} from '../deploy/appini.js'
import {releaseTime} from '../deploy/release.js'
import {previousRelease, type NodeReleases} from '../deploy/scripts.js'
import {nodesetOffer, resolveTargets} from '../deploy/targets.js'
import {
  listReleases,
  rollbackApp,
  updateApp,
  type DeployContext,
  type DeployEvent,
  type DeployResult,
  type RolloutOptions,
} from '../deploy/update.js'
import type {OpenedDeployment} from './opened.js'
import type {ProgressSink} from './ui.js'

export type DeployOptions = Partial<RolloutOptions>

const DEFAULTS: RolloutOptions = {batchSize: 1, healthTimeoutSec: 30, hookTimeoutSec: 600}

/** The app.ini of an app directory, checked against the nodeset (exit code 2 when refused). */
export function appConfig(dep: OpenedDeployment, appDir: string): AppConfig {
  return readAppConfig(appDir, nodesetOffer(dep.nodeset, dep.plan))
}

export function update(dep: OpenedDeployment, appDir: string, config: AppConfig, opts: DeployOptions = {}) {
  const app = {name: config.appName, services: config.services.map((s) => s.name)}
  return withApp(dep, app, {lock: true, progress: true}, (ctx) =>
    updateApp(ctx, appDir, config, {...DEFAULTS, ...opts}),
  )
}

/** Go back to `to`, or to the release before the current one; the migration hook does not run. */
export function rollback(dep: OpenedDeployment, appName: string, to: string | undefined, opts: DeployOptions = {}) {
  const app = {name: appName, services: []}
  const options = {...DEFAULTS, hookTimeoutSec: 60, ...opts}
  return withApp(dep, app, {lock: true, progress: true}, (ctx) => rollbackApp(ctx, to, options))
}

export interface ReleaseRow {
  id: string
  createdAt?: string
  current: boolean
  previous: boolean
}

export interface AppserverReleases {
  node: string
  current: string | null
  previous: string | null
  /** Whether the current release's process runs. */
  running: boolean
  /** Newest first. */
  releases: ReleaseRow[]
}

export async function releases(dep: OpenedDeployment, appName: string): Promise<AppserverReleases[]> {
  const app = {name: appName, services: []}
  const listings = await withApp(dep, app, {lock: false, progress: false}, listReleases)
  return [...listings].map(([node, listing]) => ({
    node,
    current: listing.current ?? null,
    previous: previousRelease(listing) ?? null,
    running: listing.running,
    releases: releaseRows(listing),
  }))
}

/** One appserver's releases, newest first, with which is current and which came before it. */
export function releaseRows(listing: NodeReleases): ReleaseRow[] {
  const previous = previousRelease(listing)
  return [...listing.releases].reverse().map((r) => ({
    id: r.id,
    createdAt: r.createdAt ?? releaseTime(r.id)?.toISOString(),
    current: r.id === listing.current,
    previous: r.id === previous,
  }))
}

interface AppRun {
  lock: boolean
  progress: boolean
}

async function withApp<T>(
  dep: OpenedDeployment,
  app: {name: string; services: string[]},
  run: AppRun,
  work: (ctx: DeployContext) => Promise<T>,
): Promise<T> {
  const unlock = run.lock ? lockApp(dep.workspace.dir, app.name) : () => undefined
  let progress: ProgressSink | undefined
  try {
    const ctx = await appContext(dep, app, (event) => {
      progress?.event({...event})
      progress?.update(event.type === 'phase' ? app.name : event.node, event.text)
    })
    const serviceNodes = Object.values(ctx.targets.services).flatMap((nodes) => nodes.map((n) => n.name))
    const items = [...new Set([app.name, ...ctx.targets.appservers.map((n) => n.name), ...serviceNodes])]
    if (run.progress) progress = dep.ui.progress(items)
    try {
      const result = await work(ctx)
      const outcomes = isDeployResult(result) ? deployOutcomes(result) : new Map<string, Outcome>()
      for (const item of items) progress?.done(item, outcomes.get(item)?.ok ?? true, outcomes.get(item)?.text ?? 'done')
      return result
    } catch (error) {
      const first = (error as Error).message.split('\n')[0]
      for (const item of items) progress?.done(item, false, item === app.name ? first : 'stopped')
      throw error
    } finally {
      await progress?.finish()
    }
  } finally {
    unlock()
  }
}

async function appContext(
  dep: OpenedDeployment,
  app: {name: string; services: string[]},
  onEvent: (event: DeployEvent) => void,
): Promise<DeployContext> {
  const {nodeset, result} = dep
  const records = await dep.provider.list()
  const state = await (await dep.configServer({readOnly: true})).client.state()
  const targets = resolveTargets({
    ...{nodeset, plan: result.plan, loadBalancing: result.loadBalancing, records, state},
    ...{app: app.name, services: app.services, file: dep.file},
  })
  return {file: dep.file, targets, session: (node) => dep.session(node.record), secrets: dep.secrets, onEvent}
}

type Outcome = {ok: boolean; text: string}

function isDeployResult(value: unknown): value is DeployResult {
  return typeof value === 'object' && value !== null && 'nodes' in value && 'release' in value
}

/** Per progress item: how the deploy ended there. */
function deployOutcomes(result: DeployResult): Map<string, Outcome> {
  const outcomes = new Map<string, Outcome>()
  const failedAt = `${result.release} failed at ${result.failure?.step} on ${result.failure?.node}`
  const active = result.unchanged ? `${result.release} is active, unchanged` : `${result.release} is active`
  outcomes.set(result.app, {ok: result.ok, text: result.ok ? active : failedAt})
  for (const n of result.nodes) {
    const ok =
      n.outcome === 'activated' ||
      n.outcome === 'unchanged' ||
      (!result.ok && (n.outcome === 'reverted' || n.outcome === 'not switched'))
    outcomes.set(n.node, {
      ok,
      text: `${n.outcome}: runs ${n.release ?? 'nothing'}${n.inRotation ? '' : ', out of rotation'}`,
    })
  }
  return outcomes
}

/**
 * Hold `deploy-APP.lock` in the workspace while deploying: a second update or rollback of the same
 * app is refused while the first runs; a lock left by a process that is gone is taken over.
 */
export function lockApp(workspaceDir: string, app: string): () => void {
  const file = path.join(workspaceDir, `deploy-${app}.lock`)
  for (let attempt = 0; ; attempt++) {
    try {
      fs.writeFileSync(file, `${process.pid}\n`, {flag: 'wx', mode: 0o600})
      return () => fs.rmSync(file, {force: true})
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw error
      const pid = Number(fs.readFileSync(file, 'utf8').trim())
      if (pid && pid !== process.pid && processExists(pid)) {
        throw new UserError(
          `another nodeset command (pid ${pid}) is deploying ${app} with this nodeset file; wait for it to finish (or remove ${file} if it is gone)`,
        )
      }
      fs.rmSync(file, {force: true})
    }
  }
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

// Over 300 lines: update, rollback and releases share one app's staging, listing and rollout steps.
/**
 * `update`, `rollback` and `releases` over the appservers of one app:
 *   1. prepare the services the app needs (its database and user) and its settings;
 *   2. stage the release on every appserver (uploaded, sha256 checked, unpacked, not active);
 *   3. activate it: the first appserver alone (and the migration hook there, once), then the rest in
 *      batches, each out of the balancer's rotation while it switches; on any failure every switched
 *      appserver goes back to what it ran;
 *   4. delete releases beyond keep_releases (never the current one or the one before it).
 */
import pLimit from 'p-limit'
import {UserError} from '../core/errors.js'
import type {SshSession} from '../ssh/ssh.js'
import type {AppConfig} from './appini.js'
import {packRelease, type ReleaseArchive} from './release.js'
import {rollout, runScript, type NodeResult, type RolloutReport} from './rollout.js'
import {
  baseEnv,
  incomingArchive,
  listScript,
  parseListing,
  previousRelease,
  pruneScript,
  releasesToPrune,
  stageScript,
  type NodeReleases,
} from './scripts.js'
import {prepareServices} from './services.js'
import type {DeployNode, DeployTargets} from './targets.js'

export type DeployPhase = 'services' | 'stage' | 'activate' | 'prune'

export type DeployEvent = {type: 'phase'; phase: DeployPhase; text: string} | {type: 'node'; node: string; text: string}

export interface DeployContext {
  file: string
  targets: DeployTargets
  session(node: DeployNode): Promise<SshSession>
  /** Grows with the secrets met on the way (database passwords): never print them. */
  secrets: string[]
  onEvent?(event: DeployEvent): void
}

export interface RolloutOptions {
  /** update only: deploy even when the app's content equals the current release everywhere. */
  force?: boolean
  batchSize: number
  healthTimeoutSec: number
  hookTimeoutSec: number
}

export interface DeployResult {
  app: string
  /** The release the command set out to activate. */
  release: string
  ok: boolean
  failure?: RolloutReport['failure']
  nodes: NodeResult[]
  /** Releases deleted, per node. */
  pruned: Record<string, string[]>
  /** Nothing was done: every appserver already runs a release with this content. */
  unchanged?: boolean
}

const STAGE_CONCURRENCY = 8

function emitter(ctx: DeployContext) {
  return {
    phase: (phase: DeployPhase, text: string) => ctx.onEvent?.({type: 'phase', phase, text}),
    node: (node: string, text: string) => ctx.onEvent?.({type: 'node', node, text}),
  }
}

/** Each appserver's releases, in parallel. */
export async function listReleases(ctx: DeployContext): Promise<Map<string, NodeReleases>> {
  const limit = pLimit(STAGE_CONCURRENCY)
  const entries = await Promise.all(
    ctx.targets.appservers.map((node) =>
      limit(
        async () =>
          [
            node.name,
            parseListing(await runScript(ctx, node, listScript(ctx.targets.app), 'listing releases', 60_000)),
          ] as const,
      ),
    ),
  )
  return new Map(entries)
}

export async function updateApp(
  ctx: DeployContext,
  appDir: string,
  config: AppConfig,
  opts: RolloutOptions,
): Promise<DeployResult> {
  const emit = emitter(ctx)
  const {targets} = ctx
  const app = config.appName
  if (!opts.force) {
    const current = await currentWithSameContent(ctx, appDir)
    if (current) {
      emit.phase(
        'activate',
        `${current} already has this content on every appserver: nothing to do (--force redeploys)`,
      )
      const nodes = targets.appservers.map((n) => unchangedNode(n.name, current))
      return {app, release: current, ok: true, nodes, pruned: {}, unchanged: true}
    }
  }
  let staged: {release: ReleaseArchive; before: Map<string, NodeReleases>}
  try {
    staged = await prepareAndStage(ctx, appDir, config)
  } catch (error) {
    if (error instanceof UserError) throw error
    throw new UserError(`update of ${app} stopped before anything was activated: ${(error as Error).message}`)
  }
  const {release, before} = staged

  emit.phase(
    'activate',
    targets.balancer
      ? `activating ${release.id}: ${targets.appservers[0].name} first, then the rest ${opts.batchSize} at a time, each out of rotation while it switches`
      : `activating ${release.id} in place`,
  )
  const report = await rollout(
    {
      app,
      targets,
      session: ctx.session,
      healthCheck: healthChecks(before, {release: release.id, path: config.healthCheck}),
      healthTimeoutSec: opts.healthTimeoutSec,
      hook: config.updateFetch,
      hookTimeoutSec: opts.hookTimeoutSec,
      batchSize: opts.batchSize,
      onProgress: emit.node,
    },
    {
      target: new Map(targets.appservers.map((n) => [n.name, release.id])),
      before: new Map(targets.appservers.map((n) => [n.name, before.get(n.name)?.current])),
      direction: 'forward',
      runHook: true,
    },
  )
  const pruned = report.ok ? await prune(ctx, app, config.keepReleases) : {}
  return {app, release: release.id, ok: report.ok, failure: report.failure, nodes: report.nodes, pruned}
}

const unchangedNode = (node: string, release: string): NodeResult => ({
  ...{node, before: release, target: release, release},
  ...{outcome: 'unchanged', inRotation: true},
})

/** The current release when every appserver runs one whose archive has the content APP_DIR packs to. */
async function currentWithSameContent(ctx: DeployContext, appDir: string): Promise<string | undefined> {
  const {sha256} = await packRelease(appDir)
  const listings = [...(await listReleases(ctx)).values()]
  const currents = listings.map((l) => l.running && l.releases.find((r) => r.id === l.current))
  const same = currents.every((r) => r && r.sha256 === sha256)
  const ids = new Set(currents.map((r) => (r ? r.id : '')))
  return same && ids.size === 1 && listings.length > 0 ? [...ids][0] : undefined
}

/** Phases 1 and 2: the app's services and settings, then the release on every appserver, not active. */
async function prepareAndStage(
  ctx: DeployContext,
  appDir: string,
  config: AppConfig,
): Promise<{release: ReleaseArchive; before: Map<string, NodeReleases>}> {
  const emit = emitter(ctx)
  const {targets} = ctx
  const app = config.appName
  emit.phase(
    'services',
    config.services.length ? `preparing ${config.services.map((s) => s.name).join(', ')}` : 'no services to prepare',
  )
  const settings = await prepareServices(config, {targets, session: ctx.session, file: ctx.file, onProgress: emit.node})
  ctx.secrets.push(...settings.secrets)

  const release = await packRelease(appDir)
  emit.phase(
    'stage',
    `staging ${release.id} (${formatSize(release.archive.length)}) on ${targets.appservers.length} appserver${targets.appservers.length === 1 ? '' : 's'}`,
  )
  const limit = pLimit(STAGE_CONCURRENCY)
  const before = new Map<string, NodeReleases>()
  await Promise.all(
    targets.appservers.map((node) =>
      limit(async () => {
        emit.node(node.name, `uploading ${release.id}`)
        const session = await ctx.session(node)
        await session.upload(incomingArchive(app, release.id), release.archive, 0o600)
        const env = {...baseEnv({app, node: node.name, release: release.id, port: targets.port}), ...settings.env}
        await runScript(
          ctx,
          node,
          stageScript({
            app,
            id: release.id,
            sha256: release.sha256,
            createdAt: release.createdAt,
            command: config.command,
            healthCheck: config.healthCheck,
            env,
          }),
          `staging ${release.id}`,
          300_000,
        )
        before.set(node.name, parseListing(await runScript(ctx, node, listScript(app), 'listing releases', 60_000)))
        emit.node(node.name, `staged ${release.id}`)
      }),
    ),
  )
  return {release, before}
}

/** Each release's own health-check path: as staged on the nodes, and the new one's from its app.ini. */
function healthChecks(
  listings: Map<string, NodeReleases>,
  fresh?: {release: string; path: string},
): (release: string) => string {
  const paths = new Map<string, string>()
  for (const listing of listings.values()) for (const r of listing.releases) paths.set(r.id, r.healthCheck)
  if (fresh) paths.set(fresh.release, fresh.path)
  return (release) => paths.get(release) ?? '/'
}

/** Old releases go; a node where that fails keeps them (reported, not fatal: the update is done). */
async function prune(ctx: DeployContext, app: string, keep: number): Promise<Record<string, string[]>> {
  const emit = emitter(ctx)
  emit.phase('prune', `keeping ${keep} releases`)
  const pruned: Record<string, string[]> = {}
  for (const node of ctx.targets.appservers) {
    try {
      const ids = releasesToPrune(
        parseListing(await runScript(ctx, node, listScript(app), 'listing releases', 60_000)),
        keep,
      )
      if (ids.length === 0) continue
      await runScript(ctx, node, pruneScript(app, ids), 'deleting old releases', 120_000)
      pruned[node.name] = ids
      emit.node(node.name, `deleted ${ids.length} old release${ids.length === 1 ? '' : 's'}`)
    } catch (error) {
      emit.node(node.name, `old releases kept: ${(error as Error).message}`)
    }
  }
  return pruned
}

/**
 * The release `rollback` goes to: --to (on every appserver), or the one each appserver ran before
 * its current one, which must be the same everywhere.
 */
export function rollbackTarget(listings: Map<string, NodeReleases>, to?: string): string {
  if (to) {
    const missing = [...listings].filter(([, l]) => !l.releases.some((r) => r.id === to)).map(([node]) => node)
    if (missing.length)
      throw new UserError(
        `release ${to} is not on ${missing.join(', ')}: pick one that \`nodeset releases\` lists on every appserver`,
      )
    return to
  }
  const previous = new Map([...listings].map(([node, l]) => [node, previousRelease(l)]))
  const known = [...new Set([...previous.values()].filter((p): p is string => p !== undefined))]
  const without = [...previous].filter(([, p]) => p === undefined).map(([node]) => node)
  if (known.length === 0)
    throw new UserError(
      'there is no earlier release to go back to: every appserver runs the first release it was given (see nodeset releases)',
    )
  if (known.length > 1 || without.length > 0) {
    const lines = [...previous].map(([node, p]) => `${node}: ${p ?? 'none'}`).join(', ')
    throw new UserError(
      `the appservers do not agree on the release before the current one (${lines}): choose one with --to ID`,
    )
  }
  return known[0]
}

export async function rollbackApp(
  ctx: DeployContext,
  to: string | undefined,
  opts: RolloutOptions,
): Promise<DeployResult> {
  const emit = emitter(ctx)
  const {targets} = ctx
  const listings = await listReleases(ctx)
  const target = rollbackTarget(listings, to)
  const missing = [...listings].filter(([, l]) => !l.releases.some((r) => r.id === target)).map(([node]) => node)
  if (missing.length)
    throw new UserError(`release ${target} is no longer on ${missing.join(', ')}: deploy it again with nodeset update`)
  emit.phase(
    'activate',
    `going back to ${target}${targets.balancer ? `, ${targets.appservers[0].name} first, each out of rotation while it switches` : ' in place'}`,
  )
  const report = await rollout(
    {
      app: targets.app,
      targets,
      session: ctx.session,
      healthCheck: healthChecks(listings),
      healthTimeoutSec: opts.healthTimeoutSec,
      hook: [],
      hookTimeoutSec: opts.hookTimeoutSec,
      batchSize: opts.batchSize,
      onProgress: emit.node,
    },
    {
      target: new Map(targets.appservers.map((n) => [n.name, target])),
      before: new Map(targets.appservers.map((n) => [n.name, listings.get(n.name)?.current])),
      direction: 'back',
      runHook: false,
    },
  )
  return {app: targets.app, release: target, ok: report.ok, failure: report.failure, nodes: report.nodes, pruned: {}}
}

/** What failed and where, and where every appserver was left. */
export function failureSummary(result: DeployResult, verb: 'update' | 'rollback'): string {
  const f = result.failure
  const head = f
    ? `${verb} of ${result.app} to ${result.release} failed at ${f.step} on ${f.node}: ${f.message}`
    : `${verb} of ${result.app} failed`
  const where = result.nodes.map((n) => {
    const runs = n.release ? `runs ${n.release}` : 'runs nothing'
    const rotation = n.inRotation ? '' : ', out of rotation'
    return `  ${n.node}: ${n.outcome}, ${runs}${rotation}`
  })
  return [head, 'appservers now:', ...where].join('\n')
}

function formatSize(bytes: number): string {
  return bytes < 1024 * 1024 ? `${Math.ceil(bytes / 1024)} KiB` : `${(bytes / 1024 / 1024).toFixed(1)} MiB`
}

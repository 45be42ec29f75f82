/**
 * `nodeset up`: create-node, setup-node and update of each app, in one go, over one config server.
 * Each phase is the same operation its own command runs; a phase that fails stops the rest.
 */
import type {DeploymentState} from '../configserver/protocol.js'
import {UserError} from '../core/errors.js'
import {appLocation} from '../deploy/targets.js'
import {failureSummary, type DeployResult} from '../deploy/update.js'
import {create} from './create.js'
import {collectInputs, type InputOptions} from './inputs.js'
import {appConfig, update, type DeployOptions} from './deploy.js'
import type {OpenedDeployment} from './opened.js'
import {failedSteps, setup} from './setup.js'

export interface UpResult {
  apps: DeployResult[]
  /** Where to open the apps. */
  urls: string[]
  /** No node created, no step run, every app's release already current. */
  nothingChanged: boolean
}

export async function up(
  dep: OpenedDeployment,
  appDirs: string[],
  opts: DeployOptions & InputOptions = {},
): Promise<UpResult> {
  // Every app.ini is checked before anything is created.
  const apps = appDirs.map((dir) => ({dir, config: appConfig(dep, dir)}))
  const names = apps.map((a) => a.config.appName)
  const twice = names.find((n, i) => names.indexOf(n) !== i)
  if (twice) throw new UserError(`two of the app directories are app ${twice}: give each app once`, 2)

  // Asked once, for both phases, before anything is created.
  const inputs = await collectInputs(dep, {...opts, ask: dep.ui.ask?.bind(dep.ui)})
  dep.ui.heading('== create-node')
  const rows = await create(dep, {inputs})
  dep.ui.heading('== setup-node')
  const reports = await setup(dep, {inputs})
  const failed = failedSteps(reports).filter((r) => r.status === 'failed')
  if (failed.length) {
    const detail = failed.map((r) => `${r.node} ${r.step}: ${r.message ?? 'failed'}${r.tail ? `\n${r.tail}` : ''}`)
    throw new UserError(
      `setup did not complete, so no app was deployed:\n${detail.join('\n')}\nfix the cause and run nodeset up again (finished steps are skipped)`,
    )
  }
  const results: DeployResult[] = []
  for (const {dir, config} of apps) {
    dep.ui.heading(`== update ${config.appName} (${dir})`)
    const result = await update(dep, dir, config, opts)
    results.push(result)
    if (!result.ok) throw new UserError(failureSummary(result, 'update'))
  }
  const ports = names.map((n) => appLocation(dep.nodeset, n)?.port).filter((p) => p !== undefined)
  const urls = entryUrls(await (await dep.configServer()).client.state(), ports)
  const nothingChanged =
    rows.every((r) => !r.createdNow) &&
    reports.every((r) => r.status === 'skipped') &&
    results.every((r) => r.unchanged)
  return {apps: results, urls, nothingChanged}
}

/** Where to open the app: the balancer's URL, or each appserver's address and port without one. */
export function entryUrls(state: DeploymentState, ports: number[]): string[] {
  const balancer = state.instances.find((i) => i.outputs.balancer?.url)
  if (balancer) return [balancer.outputs.balancer.url]
  return state.instances
    .filter((i) => i.role === 'appserver' && typeof i.facts.ip === 'string')
    .flatMap((i) => ports.map((port) => `http://${i.facts.ip as string}:${port}/`))
}

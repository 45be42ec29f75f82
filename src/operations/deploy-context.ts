/**
 * Wiring for the deploy commands: the nodeset's deployment, its config server (node addresses and
 * service outputs), one SSH session per node with pinned host keys, and a lock so two commands never
 * deploy the same app at once from this workspace.
 */
import fs from 'node:fs'
import path from 'node:path'
import {UserError} from '../core/errors.js'
import {openConfigServer, type ConfigServerHandle} from './connect.js'
import type {Deployment} from './deployment.js'
import {SessionPool} from '../ssh/ssh.js'
import type {AppConfig} from '../deploy/appini.js'
import {resolveTargets} from '../deploy/targets.js'
import type {DeployContext, DeployEvent} from '../deploy/update.js'

export interface OpenedDeployment {
  deployment: Deployment
  server: ConfigServerHandle
  close(): Promise<void>
}

/** Make the deployment's network ready and reach its config server. */
export async function connectDeployment(deployment: Deployment, secrets: string[]): Promise<OpenedDeployment> {
  secrets.push(...deployment.nodeset.secrets)
  const {operatorAddress} = await deployment.prepare()
  const server = await openConfigServer(deployment.nodeset, deployment.workspace, operatorAddress)
  secrets.push(server.adminToken)
  return {deployment, server, close: () => server.close()}
}

export interface AppContextInput {
  file: string
  app: string
  /** The services the app needs (app.ini service.NAME lines). */
  services: AppConfig['services']
  secrets: string[]
  onEvent?(event: DeployEvent): void
}

/** Everything `update`, `rollback` and `releases` act on for one app; close() ends the SSH sessions. */
export async function appContext(
  opened: OpenedDeployment,
  input: AppContextInput,
): Promise<{ctx: DeployContext; close(): Promise<void>}> {
  const {deployment, server} = opened
  const {plan, loadBalancing} = deployment.result
  const records = await deployment.provider.list(plan.deployment)
  const state = await server.client.state()
  const targets = resolveTargets({
    nodeset: deployment.nodeset,
    plan,
    loadBalancing,
    records,
    state,
    app: input.app,
    services: input.services.map((s) => s.name),
    file: input.file,
  })
  const pool = new SessionPool({hostKeys: {mode: 'pinned', store: deployment.hostKeys}, retryForMs: 30_000})
  const ctx: DeployContext = {
    file: input.file,
    targets,
    session: (node) => pool.get(deployment.sshTarget(node.record)),
    secrets: input.secrets,
    onEvent: input.onEvent,
  }
  return {ctx, close: () => pool.closeAll()}
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

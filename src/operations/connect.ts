/**
 * Reaching the config server from the CLI: the embedded one (started in-process on the address
 * nodes reach the operator at, its state in the workspace) or a standalone one named by
 * `[general] config_server = URL`, whose admin token comes from $NODESET_ADMIN_TOKEN or the
 * workspace's `admin-token` file. A deployment with sites opens one per site, the same way.
 */
import fs from 'node:fs'
import path from 'node:path'
import {UserError} from '../core/errors.js'
import {ConfigServerClient} from '../configserver/client.js'
import type {Nodeset} from '../nodeset/types.js'
import type {Workspace} from './workspace.js'

/** What the operations ask of a deployment's config server (or, with sites, of its servers together). */
export type DeploymentClient = Pick<
  ConfigServerClient,
  'register' | 'status' | 'state' | 'reportService' | 'forgetInstance' | 'deleteDeployment'
>

/** A site as its config server is opened for it. */
export interface ServerSite {
  name: string
  /** `embedded` or the URL of a standalone server. */
  configServer: string
  /** amqp(s):// URL (a secret) the embedded server federates through. */
  broker?: string
}

export interface ConfigServerHandle {
  client: ConfigServerClient
  /** The URL nodes use to phone home. */
  nodeUrl: string
  /** The URL a node uses: with sites, its own site's server's. */
  nodeUrlOf(node: string): string
  /** The admin token (a secret: never print it). */
  adminToken: string
  embedded: boolean
  close(): Promise<void>
}

/**
 * Open the deployment's config server, or with `site` that site's: its state in `.nodeset/<deployment>/<site>/`,
 * started with the site's name and broker; a standalone site server's admin token in that folder's `admin-token`.
 */
/** The deployment's config server as the operations use it: with sites, every site's server asked as one. */
export type DeploymentServerHandle = Omit<ConfigServerHandle, 'client'> & {client: DeploymentClient}

export async function openConfigServer(
  nodeset: Nodeset,
  workspace: Workspace,
  operatorAddress?: string,
  site?: ServerSite,
): Promise<ConfigServerHandle> {
  const deployment = nodeset.general.name
  const configServer = site?.configServer ?? nodeset.general.configServer
  if (configServer !== 'embedded') {
    const url = configServer
    const tokenFile = path.join(site ? workspace.siteDir(site.name) : workspace.dir, 'admin-token')
    const adminToken =
      process.env.NODESET_ADMIN_TOKEN ?? (fs.existsSync(tokenFile) ? fs.readFileSync(tokenFile, 'utf8').trim() : '')
    if (!adminToken)
      throw new UserError(
        `the config server at ${url} needs its admin token: set NODESET_ADMIN_TOKEN, or put it in ${tokenFile} (mode 0600)`,
      )
    const client = new ConfigServerClient({url, deployment, token: adminToken})
    const nodeUrlOf = () => url
    return {client, nodeUrl: url, nodeUrlOf, adminToken, embedded: false, close: async () => client.close()}
  }
  if (!operatorAddress) {
    throw new UserError(
      site
        ? `the provider of site ${site.name} cannot reach a config server embedded in this command: run one where its nodes reach it (nodeset config-server --site ${site.name} --broker …) and set config_server = URL in [site:${site.name}]`
        : `provider ${nodeset.provider.kind} cannot reach a config server embedded in this command: run one where the nodes reach it (nodeset config-server) and set [general] config_server = URL`,
    )
  }
  workspace.ensure()
  const settings = workspace.readSettings()
  const portKey = site ? `configServerPort.${site.name}` : 'configServerPort'
  const saved = typeof settings[portKey] === 'number' ? settings[portKey] : 0
  const federation = site ? {site: site.name, ...(site.broker ? {broker: {url: site.broker}} : {})} : {}
  // The server (fastify, SQLite, the broker client) is loaded only by commands that start one.
  const {startConfigServer} = await import('../configserver/server.js')
  const listen = async (port: number) =>
    startConfigServer({
      listen: {host: operatorAddress, port},
      stateDir: workspace.configServerDirOf(site?.name),
      logger: false,
      ...federation,
    })
  let server
  try {
    server = await listen(saved)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE' || saved === 0) throw error
    server = await listen(0)
  }
  // The port is saved for the nodes' user data. When another command of this deployment holds it (an
  // `up` running, its server answering the nodes from the same state), this one listens elsewhere for
  // itself and the saved port stays; when something else took it, the nodes are told the new one.
  const beside =
    server.port !== saved &&
    saved !== 0 &&
    (await servesSameState(operatorAddress, saved, deployment, server.adminToken))
  if (server.port !== saved && !beside) workspace.writeSettings({...workspace.readSettings(), [portKey]: server.port})
  const nodeUrl = beside ? withPort(server.url, saved) : server.url
  const client = new ConfigServerClient({url: server.url, deployment, token: server.adminToken})
  return {
    client,
    nodeUrl,
    nodeUrlOf: () => nodeUrl,
    adminToken: server.adminToken,
    embedded: true,
    close: async () => {
      client.close()
      await server.close()
    },
  }
}

/** Whether a config server on this port answers with this state's admin token (a concurrent command's). */
async function servesSameState(host: string, port: number, deployment: string, adminToken: string): Promise<boolean> {
  const at = host.includes(':') ? `[${host}]` : host
  try {
    const response = await fetch(`http://${at}:${port}/v1/deployments/${encodeURIComponent(deployment)}/status`, {
      headers: {authorization: `Bearer ${adminToken}`},
      signal: AbortSignal.timeout(2000),
    })
    if (!response.ok) {
      await response.body?.cancel()
      return false
    }
    return ((await response.json()) as {deployment?: unknown}).deployment === deployment
  } catch {
    return false
  }
}

function withPort(url: string, port: number): string {
  const u = new URL(url)
  u.port = String(port)
  return u.toString().replace(/\/$/, '')
}

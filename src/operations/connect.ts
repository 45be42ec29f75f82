/**
 * Reaching the config server from the CLI: the embedded one (started in-process on the address
 * nodes reach the operator at, its state in the workspace) or a standalone one named by
 * `[general] config_server = URL`, whose admin token comes from $NODESET_ADMIN_TOKEN or the
 * workspace's `admin-token` file.
 */
import fs from 'node:fs'
import path from 'node:path'
import {UserError} from '../core/errors.js'
import {ConfigServerClient} from '../configserver/client.js'
import {startConfigServer} from '../configserver/server.js'
import type {Nodeset} from '../nodeset/types.js'
import type {Workspace} from './workspace.js'

export interface ConfigServerHandle {
  client: ConfigServerClient
  /** The URL nodes use to phone home. */
  nodeUrl: string
  /** The admin token (a secret: never print it). */
  adminToken: string
  embedded: boolean
  close(): Promise<void>
}

export async function openConfigServer(
  nodeset: Nodeset,
  workspace: Workspace,
  operatorAddress?: string,
): Promise<ConfigServerHandle> {
  const deployment = nodeset.general.name
  if (nodeset.general.configServer !== 'embedded') {
    const url = nodeset.general.configServer
    const tokenFile = path.join(workspace.dir, 'admin-token')
    const adminToken =
      process.env.NODESET_ADMIN_TOKEN ?? (fs.existsSync(tokenFile) ? fs.readFileSync(tokenFile, 'utf8').trim() : '')
    if (!adminToken)
      throw new UserError(
        `the config server at ${url} needs its admin token: set NODESET_ADMIN_TOKEN, or put it in ${tokenFile} (mode 0600)`,
      )
    const client = new ConfigServerClient({url, deployment, token: adminToken})
    return {client, nodeUrl: url, adminToken, embedded: false, close: async () => client.close()}
  }
  if (!operatorAddress) {
    throw new UserError(
      `provider ${nodeset.provider.kind} cannot reach a config server embedded in this command: run one where the nodes reach it (nodeset config-server) and set [general] config_server = URL`,
    )
  }
  workspace.ensure()
  const settings = workspace.readSettings()
  const saved = typeof settings.configServerPort === 'number' ? settings.configServerPort : 0
  const listen = async (port: number) =>
    startConfigServer({listen: {host: operatorAddress, port}, stateDir: workspace.configServerDir, logger: false})
  let server
  try {
    server = await listen(saved)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE' || saved === 0) throw error
    server = await listen(0)
  }
  if (server.port !== saved) workspace.writeSettings({...settings, configServerPort: server.port})
  const client = new ConfigServerClient({url: server.url, deployment, token: server.adminToken})
  return {
    client,
    nodeUrl: server.url,
    adminToken: server.adminToken,
    embedded: true,
    close: async () => {
      client.close()
      await server.close()
    },
  }
}

/**
 * Phase 1 of an update: prepare the services an app needs and work out the settings it gets as
 * CONFIG_* environment variables. For mysql: a database and a user named after the app, on the
 * mysql node, with a password kept there; any other service: its node's host and port.
 */
import {randomBytes} from 'node:crypto'
import {UserError} from '../core/errors.js'
import type {SshSession} from '../ssh/ssh.js'
import type {AppConfig} from './appini.js'
import {mysqlPrepareScript} from './scripts.js'
import type {DeployNode, DeployTargets} from './targets.js'

export interface ServiceSettings {
  env: Record<string, string>
  /** Values of env that must never be printed. */
  secrets: string[]
}

export interface ServiceContext {
  targets: DeployTargets
  session(node: DeployNode): Promise<SshSession>
  file: string
  onProgress?(node: string, text: string): void
}

/** A password of letters and digits, safe in SQL and in a shell without quoting. */
export function generatePassword(length = 32): string {
  let out = ''
  while (out.length < length)
    out += randomBytes(48)
      .toString('base64')
      .replace(/[^A-Za-z0-9]/g, '')
  return out.slice(0, length)
}

const envName = (service: string): string => service.toUpperCase().replace(/[^A-Z0-9]/g, '_')

export async function prepareServices(config: AppConfig, ctx: ServiceContext): Promise<ServiceSettings> {
  const settings: ServiceSettings = {env: {}, secrets: []}
  for (const {name} of config.services) {
    const node = ctx.targets.services[name]?.[0]
    if (!node) throw new UserError(`the app needs service ${name} and no node of ${ctx.file} runs it`, 2)
    const host = ctx.targets.namesResolve ? node.name : node.ip
    if (name === 'mysql') {
      ctx.onProgress?.(node.name, `creating database and user ${config.appName}`)
      Object.assign(settings.env, await prepareMysql(config.appName, node, host, ctx, settings.secrets))
      ctx.onProgress?.(node.name, `database ${config.appName} ready`)
      continue
    }
    const prefix = `CONFIG_${envName(name)}`
    settings.env[`${prefix}_HOST`] = host
    const port = node.outputs[name]?.port
    if (port) settings.env[`${prefix}_PORT`] = port
  }
  return settings
}

async function prepareMysql(
  app: string,
  node: DeployNode,
  host: string,
  ctx: ServiceContext,
  secrets: string[],
): Promise<Record<string, string>> {
  const outputs = node.outputs.mysql ?? {}
  const {port, admin_user: adminUser, admin_password: adminPassword} = outputs
  if (!port || !adminUser || !adminPassword) {
    throw new UserError(
      `mysql on ${node.name} has not reported its port and admin user: run nodeset setup-node ${ctx.file} until its mysql step is done`,
    )
  }
  secrets.push(adminPassword)
  const newPassword = generatePassword()
  secrets.push(newPassword)
  const session = await ctx.session(node)
  const {stdout} = await session.run('/bin/sh -s', {
    stdin: mysqlPrepareScript({app, newPassword, port, adminUser, adminPassword}),
    label: `creating the database of ${app}`,
    timeoutMs: 120_000,
  })
  const password = /^password=(\S+)$/m.exec(stdout)?.[1]
  if (!password) throw new Error(`preparing the database of ${app} on ${node.name} did not report its password`)
  secrets.push(password)
  return {
    CONFIG_MYSQL_HOST: host,
    CONFIG_MYSQL_PORT: port,
    CONFIG_MYSQL_DBNAME: app,
    CONFIG_MYSQL_USER: app,
    CONFIG_MYSQL_PASSWORD: password,
  }
}

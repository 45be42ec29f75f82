/**
 * An app's `app.ini`: what it is called, how it starts, the services it needs, its migration hook,
 * its health check and how many releases to keep. Read with the nodeset file's line-keeping INI
 * reader, so every problem is reported with its file:line and a hint, all at once.
 */
import fs from 'node:fs'
import path from 'node:path'
import {type Diagnostic, DiagnosticsError, didYouMean} from '../core/diagnostics.js'
import {parseIni, type RawEntry} from '../nodeset/ini.js'
import type {Source} from '../core/source.js'

/** One line of `update_fetch`: a command run in the release directory, or a path requested from the app. */
export type HookStep = {kind: 'command'; command: string} | {kind: 'request'; path: string}

export interface AppConfig {
  file: string
  appName: string
  appNameSource: Source
  command: string
  services: Array<{name: string; source: Source}>
  updateFetch: HookStep[]
  healthCheck: string
  keepReleases: number
}

/** What the nodeset offers an app: the app names its locations list, and the services its nodes run. */
export interface NodesetOffer {
  nodesetFile: string
  apps: string[]
  services: string[]
}

export const APP_INI = 'app.ini'
export const APP_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$/
export const DEFAULT_HEALTH_CHECK = '/'
export const DEFAULT_KEEP_RELEASES = 5
const SERVICE_KEY = /^service\.([A-Za-z0-9_-]+)$/
const KEYS = ['app_name', 'command', 'update_fetch', 'health_check', 'keep_releases']
/** silverlining keys someone may bring along, and what to do instead. */
const SILVERLINING_KEYS: Record<string, string> = {
  runner: 'nodeset starts any process: set "command" to what starts the app (it gets $PORT)',
  platform: 'nodeset starts any process: set "command" to what starts the app (it gets $PORT)',
  php_root: 'nodeset starts any process: set "command" to what starts the app (it gets $PORT)',
  default_location: 'the nodeset file says where an app goes: its [appserver] locations name it',
  packages: 'install system packages in a service of the appserver role instead',
  version: 'not used; remove it',
}

/** Parse and check one app.ini on its own (keys, values), without the nodeset. */
export function parseAppIni(text: string, file: string): {config?: AppConfig; problems: Diagnostic[]} {
  const raw = parseIni(text, file)
  const problems = [...raw.problems]
  for (const section of raw.sections) {
    if (section.name === 'production') continue
    problems.push({
      message: `section [${section.name}] is not read`,
      source: {file, line: section.line},
      hint: didYouMean(section.name, ['production'])
        ? 'did you mean [production]?'
        : "put the app's settings under [production]",
    })
  }
  const production = raw.sections.filter((s) => s.name === 'production')
  if (production.length === 0) {
    problems.push({
      message: 'there is no [production] section',
      source: {file, line: 1},
      hint: 'start the file with [production], then app_name = … and command = …',
    })
    return {problems}
  }
  const entries = new Map<string, RawEntry>()
  const services: AppConfig['services'] = []
  for (const entry of production.flatMap((s) => s.entries)) {
    const source = {file, line: entry.line}
    if (entry.op !== '=') {
      problems.push({
        message: `"${entry.key} ${entry.op}" is for nodeset files; app.ini only sets values`,
        source,
        hint: `write "${entry.key} = …"`,
      })
      continue
    }
    const service = SERVICE_KEY.exec(entry.key)
    if (service) {
      if (services.some((s) => s.name === service[1]))
        problems.push({
          message: `service ${service[1]} is listed twice`,
          source,
          hint: 'keep one service.NAME line per service',
        })
      else services.push({name: service[1], source})
      continue
    }
    if (!KEYS.includes(entry.key)) {
      problems.push(unknownKey(entry.key, source))
      continue
    }
    const earlier = entries.get(entry.key)
    if (earlier)
      problems.push({
        message: `${entry.key} is set twice (first at line ${earlier.line})`,
        source,
        hint: 'keep one of them',
      })
    else entries.set(entry.key, entry)
  }

  const at = (key: string): Source => ({file, line: entries.get(key)?.line ?? production[0].line})
  const value = (key: string): string | undefined => entries.get(key)?.value.trim()

  const appName = value('app_name')
  if (!appName)
    problems.push({
      message: 'app_name is missing',
      source: at('app_name'),
      hint: "name the app as the nodeset file's locations do: app_name = blog",
    })
  else if (!APP_NAME_PATTERN.test(appName)) {
    problems.push({
      message: `app_name "${appName}" is not a valid app name`,
      source: at('app_name'),
      hint: 'use 1-32 letters, digits, "_" and "-", starting with a letter or digit (it names the database and the directories)',
    })
  }

  const command = value('command')
  if (!command)
    problems.push({
      message: 'command is missing',
      source: at('command'),
      hint: 'say how to start the app, e.g. command = node server.js (it must listen on $PORT)',
    })
  else if (command.includes('\n'))
    problems.push({
      message: 'command must be one line',
      source: at('command'),
      hint: 'put a longer start-up in a script of the app and run that: command = sh start.sh',
    })

  const updateFetch = hookSteps(value('update_fetch') ?? '', at('update_fetch'), problems)

  const healthCheck = value('health_check') || DEFAULT_HEALTH_CHECK
  if (!/^\/\S*$/.test(healthCheck))
    problems.push({
      message: `health_check "${healthCheck}" is not a URL path`,
      source: at('health_check'),
      hint: 'give the path the app answers 2xx on when it is ready, e.g. health_check = /health',
    })

  let keepReleases = DEFAULT_KEEP_RELEASES
  const keep = value('keep_releases')
  if (keep !== undefined) {
    keepReleases = Number(keep)
    if (!/^\d+$/.test(keep) || keepReleases < 2 || keepReleases > 1000) {
      problems.push({
        message: `keep_releases "${keep}" is not a whole number from 2 to 1000`,
        source: at('keep_releases'),
        hint: 'the current release and the one before it are always kept; keep_releases = 5 keeps three more',
      })
    }
  }

  if (problems.length > 0 || !appName || !command) return {problems}
  return {
    config: {file, appName, appNameSource: at('app_name'), command, services, updateFetch, healthCheck, keepReleases},
    problems,
  }
}

function unknownKey(key: string, source: Source): Diagnostic {
  const silverlining = SILVERLINING_KEYS[key]
  if (silverlining)
    return {message: `${key} is a silverlining setting nodeset does not use`, source, hint: silverlining}
  const guess = didYouMean(key, [...KEYS, 'service.mysql'])
  return {
    message: `unknown key "${key}"`,
    source,
    hint: guess ? `did you mean "${guess}"?` : `app.ini [production] takes ${KEYS.join(', ')} and service.NAME`,
  }
}

/** `update_fetch` lines: `/path` is requested from the app; anything else (or `script:CMD`) is a command. */
function hookSteps(text: string, source: Source, problems: Diagnostic[]): HookStep[] {
  const steps: HookStep[] = []
  for (const line of text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)) {
    if (line.startsWith('/')) {
      if (/\s/.test(line))
        problems.push({
          message: `update_fetch path "${line}" has spaces`,
          source,
          hint: 'a line starting with "/" is a URL path; escape spaces as %20, or run a command instead',
        })
      else steps.push({kind: 'request', path: line})
    } else if (/^https?:\/\//.test(line)) {
      problems.push({
        message: `update_fetch "${line}" is a full URL`,
        source,
        hint: 'give only the path (e.g. /setup-stuff): it is requested from the app on the node it was just activated on',
      })
    } else {
      steps.push({kind: 'command', command: line.replace(/^script:\s*/, '')})
    }
  }
  return steps
}

/** What the nodeset must offer this app: a location that names it, and a node for every service it needs. */
export function checkAppAgainstNodeset(config: AppConfig, offer: NodesetOffer): Diagnostic[] {
  const problems: Diagnostic[] = []
  if (!offer.apps.includes(config.appName)) {
    const guess = didYouMean(config.appName, offer.apps)
    problems.push({
      message: `app "${config.appName}" is not in the locations of ${offer.nodesetFile}`,
      source: config.appNameSource,
      hint: guess
        ? `did you mean "${guess}"?`
        : `add a line "http://HOST/ ${config.appName}" to locations in [appserver]${offer.apps.length ? ` (it names ${offer.apps.join(', ')})` : ''}`,
    })
  }
  for (const service of config.services) {
    if (offer.services.includes(service.name)) continue
    const guess = didYouMean(service.name, offer.services)
    problems.push({
      message: `the app needs service ${service.name}, and no node of ${offer.nodesetFile} runs it`,
      source: service.source,
      hint: guess
        ? `did you mean service.${guess}?`
        : `add a [service:${service.name}] section to ${offer.nodesetFile} and run create-node and setup-node, or remove the line`,
    })
  }
  return problems
}

/** Read APP_DIR/app.ini and check it against the nodeset; throws DiagnosticsError (exit 2) listing every problem. */
export function readAppConfig(appDir: string, offer: NodesetOffer): AppConfig {
  const file = path.join(path.resolve(appDir), APP_INI)
  if (!fs.existsSync(appDir) || !fs.statSync(appDir).isDirectory()) {
    throw new DiagnosticsError([
      {message: `${appDir} is not a directory`, hint: 'give the directory of the app, the one holding app.ini'},
    ])
  }
  if (!fs.existsSync(file)) {
    throw new DiagnosticsError([
      {
        message: `${file} does not exist`,
        hint: 'an app directory holds app.ini with [production], app_name = … and command = … (see docs/deploy.md)',
      },
    ])
  }
  const {config, problems} = parseAppIni(fs.readFileSync(file, 'utf8'), file)
  if (!config) throw new DiagnosticsError(problems)
  const more = checkAppAgainstNodeset(config, offer)
  if (more.length > 0) throw new DiagnosticsError(more)
  return config
}

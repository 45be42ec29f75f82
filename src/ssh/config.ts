/**
 * OpenSSH's client configuration, as OpenSSH itself evaluates it: `ssh -G` reads ~/.ssh/config and
 * /etc/ssh/ssh_config (Host and Match blocks, Include, tokens, the first value of a keyword wins) and
 * prints the options that apply to one host, which is all nodeset parses. nodeset never interprets
 * the configuration files itself, so what applies is what `ssh HOST` would use.
 */
import {execFile} from 'node:child_process'
import {existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {homedir, hostname as localHostName, tmpdir, userInfo} from 'node:os'
import {join} from 'node:path'
import {shellJoin, shellQuote} from './shell.js'

/** The options OpenSSH settles on for one host (the ones nodeset uses). */
export interface HostOptions {
  /** The name asked for (`%n`): a node's name, or a jump host as written in ProxyJump. */
  alias: string
  /** What is connected to: HostName, else the name asked for. */
  hostName: string
  port: number
  /** Undefined when nothing set it (OpenSSH would then log in as the local user). */
  user?: string
  /** As written, `~` and `%` tokens not expanded (see `expandSshPath`); only those the configuration gives. */
  identityFiles: string[]
  certificateFiles: string[]
  identitiesOnly: boolean
  /** UserKnownHostsFile, expanded by OpenSSH; undefined when nothing set it. */
  userKnownHostsFiles?: string[]
  /** GlobalKnownHostsFile, likewise. */
  globalKnownHostsFiles?: string[]
  hostKeyAlias?: string
  /** `[user@]host[:port]` hops, comma-separated, as written. */
  proxyJump?: string
  /** Tokens (`%h`, `%p`, `%r`, `%n`) not expanded yet. */
  proxyCommand?: string
}

export interface HostQuery {
  /** The name looked up: `Host` patterns match it. */
  host: string
  /** An address to connect to instead (as `ssh -o HostName=…`): `Match host` sees it, HostName in the files does not apply. */
  hostName?: string
  /** As `ssh -l`: wins over User in the files. */
  user?: string
  /** As `ssh -p`: wins over Port in the files. */
  port?: number
  /** As `ssh -J`: wins over ProxyJump and ProxyCommand in the files. */
  proxyJump?: string
}

export interface SshConfigSource {
  /** The user's configuration file; `null` reads none (and no system file either). */
  path: string | null
  /** Also /etc/ssh/ssh_config, after the user's file, as OpenSSH does unless `ssh -F` names a file. */
  system: boolean
  /** The ssh binary. Default `ssh` on $PATH. */
  ssh?: string
}

export class SshConfigError extends Error {
  override name = 'SshConfigError'
}

export const SYSTEM_SSH_CONFIG = '/etc/ssh/ssh_config'
export const defaultSshConfigPath = (home = homedir()): string => `${home}/.ssh/config`

// Appended after everything else: first value wins, so they show only what nothing else set.
const NO_USER = 'nodeset-no-user-given'
const NO_IDENTITY = '/nonexistent/nodeset-no-identity-file'
const NO_KNOWN_HOSTS = '/nonexistent/nodeset-no-known-hosts-file'

/** The configuration `ssh -G` reads: the user's file, the system's, then the markers of unset values. */
export function wrapperConfig(source: SshConfigSource): string {
  const quote = (path: string) => `"${path}"`
  return [
    ...(source.path ? [`Include ${quote(source.path)}`] : []),
    ...(source.system ? [`Include ${SYSTEM_SSH_CONFIG}`] : []),
    'Host *',
    `  User ${NO_USER}`,
    `  IdentityFile ${NO_IDENTITY}`,
    `  UserKnownHostsFile ${NO_KNOWN_HOSTS}`,
    `  GlobalKnownHostsFile ${NO_KNOWN_HOSTS}`,
    '',
  ].join('\n')
}

/** `ssh -G` output: keyword → its values, in order (repeated keywords such as identityfile add up). */
export function parseSshG(text: string): Map<string, string[]> {
  const options = new Map<string, string[]>()
  for (const line of text.split('\n')) {
    const match = /^([a-z0-9]+) (.*)$/.exec(line.replace(/\r$/, ''))
    if (!match) continue
    const values = options.get(match[1]) ?? []
    values.push(match[2])
    options.set(match[1], values)
  }
  return options
}

/** The options nodeset uses, from `ssh -G` output for `alias` made with `wrapperConfig`. */
export function hostOptions(alias: string, text: string): HostOptions {
  const options = parseSshG(text)
  const one = (key: string): string | undefined => options.get(key)?.[0]
  const list = (key: string): string[] => (options.get(key) ?? []).flatMap((v) => v.split(' ')).filter(Boolean)
  const user = one('user')
  const port = Number(one('port') ?? 22)
  const knownHosts = (paths: string[]) =>
    paths.length === 0 || paths.includes(NO_KNOWN_HOSTS) ? undefined : paths.filter((p) => p !== 'none')
  const noneToUndefined = (value: string | undefined) => (value === undefined || value === 'none' ? undefined : value)
  return {
    alias,
    hostName: one('hostname') ?? alias,
    port: Number.isInteger(port) && port > 0 ? port : 22,
    user: user === NO_USER ? undefined : user,
    identityFiles: (options.get('identityfile') ?? []).filter((path) => path !== NO_IDENTITY),
    certificateFiles: options.get('certificatefile') ?? [],
    identitiesOnly: one('identitiesonly') === 'yes',
    userKnownHostsFiles: knownHosts(list('userknownhostsfile')),
    globalKnownHostsFiles: knownHosts(list('globalknownhostsfile')),
    hostKeyAlias: noneToUndefined(one('hostkeyalias')),
    proxyJump: noneToUndefined(one('proxyjump')),
    proxyCommand: noneToUndefined(one('proxycommand')),
  }
}

/** What a host gets when no configuration is read: OpenSSH's defaults. */
export function defaultHostOptions(query: HostQuery): HostOptions {
  return {
    alias: query.host,
    hostName: query.hostName ?? query.host,
    port: query.port ?? 22,
    user: query.user,
    identityFiles: [],
    certificateFiles: [],
    identitiesOnly: false,
    proxyJump: query.proxyJump === 'none' ? undefined : query.proxyJump,
  }
}

/** Whether there is any configuration to read (else OpenSSH's defaults apply and no ssh is needed). */
export function hasSshConfig(source: SshConfigSource): boolean {
  return (source.path !== null && existsSync(source.path)) || (source.system && existsSync(SYSTEM_SSH_CONFIG))
}

/** The `ssh -G` argument vector for a query, with the configuration (`wrapperConfig`) in `configFile`. */
export function sshGArgs(query: HostQuery, configFile: string): string[] {
  return [
    '-G',
    '-F',
    configFile,
    ...(query.user ? ['-l', query.user] : []),
    ...(query.port ? ['-p', String(query.port)] : []),
    ...(query.hostName ? ['-o', `HostName=${query.hostName}`] : []),
    ...(query.proxyJump ? ['-J', query.proxyJump] : []),
    '--',
    query.host,
  ]
}

/** Ask OpenSSH which options apply to a host. */
export function lookupHost(query: HostQuery, source: SshConfigSource): Promise<HostOptions> {
  if (!hasSshConfig(source)) return Promise.resolve(defaultHostOptions(query))
  return new Promise((resolve, reject) => {
    const key = JSON.stringify([source.path, source.system, source.ssh])
    let batch = pending.get(key)
    if (!batch) {
      const fresh: Pending[] = (batch = [])
      pending.set(key, fresh)
      // Every node of a run asks at once: one shell asks OpenSSH for all of them.
      setImmediate(() => {
        pending.delete(key)
        void askOpenSsh(fresh, source)
      })
    }
    batch.push({query, resolve, reject})
  })
}

interface Pending {
  query: HostQuery
  resolve(options: HostOptions): void
  reject(error: Error): void
}

const pending = new Map<string, Pending[]>()

/** What `ssh -G` said for one query. */
interface SshGAnswer {
  code: number
  stdout: string
  stderr: string
}

async function askOpenSsh(batch: Pending[], source: SshConfigSource): Promise<void> {
  const ssh = source.ssh ?? 'ssh'
  const dir = mkdtempSync(join(tmpdir(), 'nodeset-ssh-'))
  try {
    const configFile = join(dir, 'config')
    writeFileSync(configFile, wrapperConfig(source), {mode: 0o600})
    const answers = await runSshG(
      ssh,
      batch.map((p) => sshGArgs(p.query, configFile)),
      dir,
    )
    batch.forEach((p, i) => {
      const answer = answers[i]
      if (answer.code === 0) return p.resolve(hostOptions(p.query.host, answer.stdout))
      p.reject(sshGError(answer, p.query, source, ssh))
    })
  } catch (error) {
    for (const p of batch) p.reject(error as Error)
  } finally {
    rmSync(dir, {recursive: true, force: true})
  }
}

/** `ssh -G` for each argument vector, all at once in one shell; the answers in the same order. */
async function runSshG(ssh: string, argvs: string[][], dir: string): Promise<SshGAnswer[]> {
  const file = (i: number, what: string) => shellQuote(join(dir, `${i}.${what}`))
  const script =
    argvs
      .map(
        (args, i) =>
          `{ ${shellJoin([ssh, ...args])} >${file(i, 'out')} 2>${file(i, 'err')}; echo $? >${file(i, 'rc')}; } &`,
      )
      .join('\n') + '\nwait\n'
  await new Promise<void>((resolve, reject) => {
    execFile('/bin/sh', ['-c', script], {timeout: 10_000 + 100 * argvs.length}, (error) =>
      error
        ? reject(new SshConfigError(`OpenSSH did not answer for the SSH configuration: ${error.message}`))
        : resolve(),
    )
  })
  const read = (path: string) => (existsSync(path) ? readFileSync(path, 'utf8') : '')
  return argvs.map((_, i) => ({
    code: Number(read(join(dir, `${i}.rc`)).trim() || 255),
    stdout: read(join(dir, `${i}.out`)),
    stderr: read(join(dir, `${i}.err`)),
  }))
}

function sshGError(answer: SshGAnswer, query: HostQuery, source: SshConfigSource, ssh: string): SshConfigError {
  // The shell's "not found" (127) or "cannot execute" (126): as execFile's ENOENT.
  if (answer.code === 127 || answer.code === 126)
    return new SshConfigError(
      `${source.path ?? SYSTEM_SSH_CONFIG} is read by OpenSSH itself (ssh -G), but ${ssh} is not installed: install openssh-client`,
    )
  const why = answer.stderr
    .split('\n')
    .filter(
      (line) =>
        line.trim() && !/^Pseudo-terminal will not be allocated|: terminating, \d+ bad configuration/.test(line),
    )
    .join('; ')
  return new SshConfigError(
    `OpenSSH refused the SSH configuration for ${query.host}: ${why || `ssh -G exited with ${answer.code}`}`,
  )
}

export interface PathTokens {
  home?: string
  /** The host name connected to (`%h`). */
  host: string
  /** The name the host was asked for (`%n`). */
  alias: string
  /** The remote user (`%r`). */
  remoteUser: string
  /** `%p`. */
  port?: number
}

/** Expand `~` and the `%` tokens OpenSSH allows in IdentityFile, CertificateFile and ProxyCommand. */
export function expandSshPath(path: string, tokens: PathTokens): string {
  const home = tokens.home ?? homedir()
  const withHome = path === '~' ? home : path.startsWith('~/') ? home + path.slice(1) : path
  return expandTokens(withHome, tokens, home)
}

function expandTokens(text: string, tokens: PathTokens, home: string): string {
  return text.replace(/%([%dhilLnpru])/g, (_, token: string) => {
    switch (token) {
      case '%':
        return '%'
      case 'd':
        return home
      case 'h':
        return tokens.host
      case 'i':
        return String(process.getuid?.() ?? '')
      case 'l':
        return localHostName()
      case 'L':
        return localHostName().split('.')[0]
      case 'n':
        return tokens.alias
      case 'p':
        return String(tokens.port ?? 22)
      case 'r':
        return tokens.remoteUser
      default:
        return userInfo().username
    }
  })
}

/** A ProxyCommand with its tokens expanded (no `~`: the shell sees it as written). */
export function expandProxyCommand(command: string, tokens: PathTokens): string {
  return expandTokens(command, tokens, tokens.home ?? homedir())
}

export interface JumpSpec {
  user?: string
  host: string
  port?: number
}

/** One ProxyJump hop: `[user@]host[:port]`, `ssh://[user@]host[:port]`, IPv6 in brackets. */
export function parseJump(spec: string): JumpSpec {
  const text = spec.trim().replace(/^ssh:\/\//, '')
  const at = text.lastIndexOf('@')
  const user = at >= 0 ? text.slice(0, at) : undefined
  const rest = at >= 0 ? text.slice(at + 1) : text
  let host = rest
  let port: number | undefined
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(rest)
  const withPort = /^([^:]+):(\d+)$/.exec(rest)
  if (bracketed) [host, port] = [bracketed[1], bracketed[2] ? Number(bracketed[2]) : undefined]
  else if (withPort) [host, port] = [withPort[1], Number(withPort[2])]
  if (!host || (user !== undefined && !user) || (port !== undefined && !(port >= 1 && port <= 65535)))
    throw new SshConfigError(`ProxyJump hop "${spec}" is not [user@]host[:port]`)
  return {user, host, port}
}

/** Pattern matching of OpenSSH (known_hosts host fields): `*` any run, `?` one character, case-insensitive. */
export function globMatches(pattern: string, name: string): boolean {
  const source = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.')
  return new RegExp(`^${source}$`, 'i').test(name)
}

/** A pattern list matches when one pattern matches and no negated (`!pattern`) one does. */
export function matchesPatternList(patterns: string[], name: string): boolean {
  let matched = false
  for (const pattern of patterns) {
    if (pattern.startsWith('!')) {
      if (globMatches(pattern.slice(1), name)) return false
    } else if (globMatches(pattern, name)) matched = true
  }
  return matched
}

/**
 * The part of OpenSSH's client configuration (`~/.ssh/config`) that nodeset honours: `Host` blocks
 * with `HostName`, `Port`, `User`, `IdentityFile` and `IdentitiesOnly`. As in OpenSSH, the first
 * value found for a keyword wins and `IdentityFile` accumulates. `Match` blocks and `Include` are
 * not evaluated (their options are ignored), which errs on the side of fewer options, never wrong ones.
 */
import {readFileSync} from 'node:fs'
import {homedir, userInfo} from 'node:os'

export interface SshConfigBlock {
  /** `Host` patterns; `null` for a `Match` block, which is never applied. */
  patterns: string[] | null
  options: Array<{keyword: string; value: string; line: number}>
}

export interface SshHostConfig {
  hostName?: string
  port?: number
  user?: string
  /** Raw paths, tokens (`~`, `%d`, `%h`, `%r`, `%u`, `%n`) not yet expanded: see `expandSshPath`. */
  identityFiles: string[]
  identitiesOnly?: boolean
}

/** One line into keyword and value: `Key value`, `Key=value`, `Key "quoted value"`. */
function splitLine(line: string): {keyword: string; value: string} | undefined {
  const match = /^\s*([A-Za-z]+)\s*(?:=\s*|\s+)(.*?)\s*$/.exec(line)
  if (!match) return undefined
  let value = match[2]
  if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) value = value.slice(1, -1)
  return {keyword: match[1].toLowerCase(), value}
}

export function parseSshConfig(text: string): SshConfigBlock[] {
  // Options before the first Host line apply to every host.
  const blocks: SshConfigBlock[] = [{patterns: ['*'], options: []}]
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) return
    const parsed = splitLine(line)
    if (!parsed) return
    if (parsed.keyword === 'host') blocks.push({patterns: parsed.value.split(/\s+/).filter(Boolean), options: []})
    else if (parsed.keyword === 'match') blocks.push({patterns: null, options: []})
    else blocks[blocks.length - 1].options.push({keyword: parsed.keyword, value: parsed.value, line: i + 1})
  })
  return blocks
}

/** A missing file is an empty configuration. */
export function readSshConfig(path: string): SshConfigBlock[] {
  try {
    return parseSshConfig(readFileSync(path, 'utf8'))
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw error
  }
}

/** OpenSSH wildcards: `*` any run of characters, `?` exactly one; case-insensitive like host names. */
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

/** The options that apply to a host known by any of `names` (the node's name, its address). */
export function resolveSshConfig(blocks: SshConfigBlock[], names: string[]): SshHostConfig {
  const resolved: SshHostConfig = {identityFiles: []}
  for (const block of blocks) {
    if (!block.patterns || !names.some((name) => matchesPatternList(block.patterns!, name))) continue
    for (const {keyword, value, line} of block.options) {
      switch (keyword) {
        case 'hostname':
          resolved.hostName ??= value
          break
        case 'port': {
          const port = Number(value)
          if (!Number.isInteger(port) || port < 1 || port > 65535) {
            throw new Error(`ssh config line ${line}: Port ${value} is not a port number (1-65535); fix or remove it`)
          }
          resolved.port ??= port
          break
        }
        case 'user':
          resolved.user ??= value
          break
        case 'identityfile':
          if (value.toLowerCase() !== 'none') resolved.identityFiles.push(value)
          break
        case 'identitiesonly':
          resolved.identitiesOnly ??= value.toLowerCase() === 'yes'
          break
      }
    }
  }
  return resolved
}

export interface PathTokens {
  home?: string
  /** The host name connected to (`%h`). */
  host: string
  /** The name the host was asked for (`%n`): the node's name. */
  alias: string
  /** The remote user (`%r`). */
  remoteUser: string
}

/** Expand `~` and the `%` tokens OpenSSH allows in IdentityFile. */
export function expandSshPath(path: string, tokens: PathTokens): string {
  const home = tokens.home ?? homedir()
  const withHome = path === '~' ? home : path.startsWith('~/') ? home + path.slice(1) : path
  return withHome.replace(/%([%dhnru])/g, (_, token: string) => {
    switch (token) {
      case '%':
        return '%'
      case 'd':
        return home
      case 'h':
        return tokens.host
      case 'n':
        return tokens.alias
      case 'r':
        return tokens.remoteUser
      default:
        return userInfo().username
    }
  })
}

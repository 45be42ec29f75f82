/**
 * Who logs in where: a node's SSH target after OpenSSH's configuration (config.ts), the route to it
 * (jump hosts, a proxy command), and the keys to offer each host, in the order docs/ssh.md gives
 * ("Which key logs in"). Key material never appears in an error.
 */
import {existsSync, readFileSync} from 'node:fs'
import {homedir, userInfo} from 'node:os'
import {join} from 'node:path'
import ssh2 from 'ssh2'
import type {AgentAuthMethod, PublicKeyAuthMethod} from 'ssh2'
import {
  expandProxyCommand,
  expandSshPath,
  lookupHost,
  parseJump,
  SshConfigError,
  type HostOptions,
  type SshConfigSource,
} from './config.js'
import {certificateKey} from './certificate.js'
import {SshKeyError} from './errors.js'
import {defaultKnownHostsPaths} from './knownhosts.js'
import {describeTarget, type ResolvedTarget} from './session.js'

const {utils} = ssh2

export interface SshTarget {
  /** The address to connect to. */
  host: string
  port?: number
  user?: string
  /** The user when neither \`user\` nor ~/.ssh/config's User says one (EC2's image user). Default root. */
  defaultUser?: string
  /** The node's name: the key of its pinned host key and the name looked up in ~/.ssh/config. */
  nodeName: string
  privateKeyPath?: string
}

export {SshKeyError} from './errors.js'

/** Jump hosts in a row, at most (a ProxyJump that leads back to itself is refused past this). */
export const MAX_JUMPS = 8

export interface ResolveOptions {
  config: SshConfigSource
  /** For `~` and `%d` in IdentityFile and CertificateFile. Default the user's home. */
  homeDir?: string
}

/**
 * A node's target after the configuration. nodeset's values win (as `ssh -l USER -p PORT -o
 * HostName=ADDRESS NODE` would); the configuration fills the rest: `Host` patterns match the node's
 * name, `Match host` its address, and its HostName applies only to a node whose address is its name
 * (a static host listed without an address).
 */
export async function resolveTarget(target: SshTarget, opts: ResolveOptions): Promise<ResolvedTarget> {
  const options = await lookupHost(
    {
      host: target.nodeName,
      hostName: target.host === target.nodeName ? undefined : target.host,
      user: target.user,
      port: target.port,
    },
    opts.config,
  )
  const user = target.user ?? options.user ?? target.defaultUser ?? 'root'
  return fromOptions(options, 'node', user, target.privateKeyPath, opts, 0)
}

async function fromOptions(
  options: HostOptions,
  kind: ResolvedTarget['kind'],
  user: string,
  explicitKey: string | undefined,
  opts: ResolveOptions,
  depth: number,
): Promise<ResolvedTarget> {
  const home = opts.homeDir ?? homedir()
  const tokens = {home, host: options.hostName, alias: options.alias, remoteUser: user, port: options.port}
  const expand = (path: string) => expandSshPath(path, tokens)
  const identityFiles = [...(explicitKey ? [explicitKey] : []), ...options.identityFiles].map(expand)
  const resolved: ResolvedTarget = {
    kind,
    nodeName: options.alias,
    host: options.hostName,
    port: options.port,
    user,
    identityFiles: [...new Set(identityFiles)],
    identitiesOnly: options.identitiesOnly,
    certificateFiles: [...new Set(options.certificateFiles.map(expand))],
    // Unless the configuration names them: ~/.ssh/known_hosts (of homeDir) and /etc/ssh/ssh_known_hosts.
    knownHostsFiles: [
      ...(options.userKnownHostsFiles ?? [defaultKnownHostsPaths(home)[0]]),
      ...(options.globalKnownHostsFiles ?? defaultKnownHostsPaths(home).slice(1)),
    ],
    hostKeyAlias: options.hostKeyAlias,
  }
  if (options.proxyJump) resolved.via = {jump: await jumpHost(options, opts, depth + 1)}
  else if (options.proxyCommand) resolved.via = {command: expandProxyCommand(options.proxyCommand, tokens)}
  return resolved
}

/**
 * The last hop of a ProxyJump list, reached through the hops before it (as `ssh -J` does: the hops
 * before are given to it as its own ProxyJump, the first hop goes by its own configuration).
 */
async function jumpHost(options: HostOptions, opts: ResolveOptions, depth: number): Promise<ResolvedTarget> {
  if (depth > MAX_JUMPS)
    throw new SshConfigError(
      `the ProxyJump route to ${options.alias} has more than ${MAX_JUMPS} jump hosts: check ~/.ssh/config for a ProxyJump that leads back to itself`,
    )
  const hops = options.proxyJump!.split(',')
  const last = parseJump(hops[hops.length - 1])
  const before = hops.slice(0, -1).join(',')
  const jump = await lookupHost(
    {host: last.host, user: last.user, port: last.port, proxyJump: before || undefined},
    opts.config,
  )
  // A jump host is OpenSSH's business alone: with no User, the local user logs in, as ssh does.
  return fromOptions(jump, 'jump host', last.user ?? jump.user ?? userInfo().username, undefined, opts, depth)
}

type AuthMethod = PublicKeyAuthMethod | AgentAuthMethod

export interface AuthPlan {
  methods: AuthMethod[]
  /** What is tried, for the error that says what to fix: paths and "ssh-agent", never key material. */
  tried: string[]
  skipped: string[]
  /** Some methods are certificates (sent as certificate.ts does). */
  certificates: boolean
}

/**
 * The keys to offer: each certificate (CertificateFile, with its private key), the explicit key, then
 * IdentityFile keys (each with its `-cert.pub` beside it first, as OpenSSH does), then the agent,
 * then the default keys.
 */
export function planAuth(
  target: ResolvedTarget,
  explicitKey: string | undefined,
  agentSocket: string | null,
  homeDir: string,
): AuthPlan {
  const plan: AuthPlan = {methods: [], tried: [], skipped: [], certificates: false}
  const keys: Array<{path: string; key: ReturnType<typeof utils.parseKey> & object}> = []
  const addKeyFile = (path: string, required: boolean): void => {
    if (!existsSync(path)) {
      if (required)
        throw new SshKeyError(
          `SSH key ${path} for ${describeTarget(target)} does not exist: fix ssh_key in the nodeset file`,
        )
      return
    }
    const parsed = utils.parseKey(readFileSync(path))
    if (parsed instanceof Error) {
      const why = /encrypted/i.test(parsed.message)
        ? 'is protected by a passphrase'
        : `cannot be read (${parsed.message})`
      if (required)
        throw new SshKeyError(
          `SSH key ${path} ${why}: load it into ssh-agent (ssh-add ${path}) and leave ssh_key unset, or use a key without a passphrase`,
        )
      plan.skipped.push(`${path} (${why})`)
      return
    }
    const key = Array.isArray(parsed) ? parsed[0] : parsed
    addCertificates(`${path}-cert.pub`, key, false)
    keys.push({path, key})
    plan.methods.push({type: 'publickey', username: target.user, key})
    plan.tried.push(path)
  }
  // A certificate is offered with the private key it certifies: one of the keys above.
  const addCertificates = (path: string, key: object | undefined, required: boolean): void => {
    if (!existsSync(path)) {
      if (required) plan.skipped.push(`${path} (does not exist)`)
      return
    }
    const text = readFileSync(path, 'utf8')
    const candidates = key ? [key] : keys.map((k) => k.key)
    for (const candidate of candidates) {
      const certified = certificateKey(text, candidate)
      if (certified instanceof Error) continue
      plan.methods.push({type: 'publickey', username: target.user, key: certified as never})
      plan.tried.push(`${path} (certificate)`)
      plan.certificates = true
      return
    }
    if (required) plan.skipped.push(`${path} (no private key offered for it, or not an OpenSSH certificate)`)
  }
  const explicit = explicitKey ? target.identityFiles[0] : undefined
  for (const path of target.identityFiles) addKeyFile(path, path === explicit)
  if (target.identityFiles.length === 0 && target.certificateFiles.length > 0)
    for (const name of ['id_ed25519', 'id_ecdsa', 'id_rsa']) addKeyFile(join(homeDir, '.ssh', name), false)
  // CertificateFile certificates go first, as OpenSSH offers them before plain keys.
  const plain = plan.methods.splice(0)
  const plainTried = plan.tried.splice(0)
  for (const path of target.certificateFiles) addCertificates(path, undefined, true)
  plan.methods.push(...plain)
  plan.tried.push(...plainTried)
  if (agentSocket && !(target.identitiesOnly && plan.methods.length > 0)) {
    if (existsSync(agentSocket)) {
      plan.methods.push({type: 'agent', username: target.user, agent: agentSocket})
      plan.tried.push('ssh-agent')
    } else plan.skipped.push(`ssh-agent (${agentSocket} does not exist)`)
  }
  if (target.identityFiles.length === 0 && target.certificateFiles.length === 0) {
    for (const name of ['id_ed25519', 'id_ecdsa', 'id_rsa']) addKeyFile(join(homeDir, '.ssh', name), false)
  }
  if (plan.methods.length === 0) {
    throw new SshKeyError(
      `No SSH key to log in to ${describeTarget(target)}${plan.skipped.length ? ` (skipped: ${plan.skipped.join(', ')})` : ''}: ` +
        'set ssh_key in the nodeset file, add an IdentityFile for it to ~/.ssh/config, or start ssh-agent and ssh-add a key',
    )
  }
  return plan
}

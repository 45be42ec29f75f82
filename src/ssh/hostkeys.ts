/**
 * Which host keys a node is trusted with: the pinned keys of a deployment's nodes
 * (`.nodeset/known_hosts`), and the policy that decides whether a key a server offers is trusted.
 * Nothing here ever accepts a key it cannot vouch for. Keys and known_hosts files are knownhosts.ts.
 */
import {chmodSync, mkdirSync, renameSync, writeFileSync} from 'node:fs'
import {dirname, join} from 'node:path'
import {
  defaultKnownHostsPaths,
  fingerprint,
  formatHostKey,
  keysFor,
  knownHostName,
  parseHostKey,
  readKnownHosts,
  sameKey,
  type HostKey,
  type KnownKeys,
} from './knownhosts.js'

export * from './knownhosts.js'

// ---------------------------------------------------------------------------------------------
// The deployment's pinned keys

/** Node names and addresses become known_hosts patterns, so they must not carry pattern syntax. */
const HOST_NAME_PATTERN = /^[A-Za-z0-9_:][A-Za-z0-9._:-]{0,252}$/

export interface PinnedHost {
  nodeName: string
  /** The names the entry is written for: the node's name and its address (`[…]:port` off port 22). */
  names: string[]
  keys: HostKey[]
}

interface StoreLine {
  names: string[]
  key: HostKey
}

/** `[host]:port` → host. */
function bareName(name: string): string {
  const match = /^\[(.*)\]:\d+$/.exec(name)
  return match ? match[1] : name
}

/**
 * The deployment's pinned host keys, in `.nodeset/known_hosts` (mode 0600). The file is in OpenSSH
 * format, one line per key, host field `node-name,address`, so `ssh -o UserKnownHostsFile=…` verifies
 * against it too. A node's keys are the ones it reported over its authenticated phone-home, or, for a
 * static server, the ones found in the user's known_hosts or accepted on first use when asked to.
 */
export class HostKeyStore {
  constructor(readonly path: string) {}

  static inStateDir(stateDir: string): HostKeyStore {
    return new HostKeyStore(join(stateDir, 'known_hosts'))
  }

  /** Pin a node's keys, replacing what it had; the address stops naming any other node. */
  pin(nodeName: string, address: string, keys: string[], port = 22): void {
    for (const [what, value] of [
      ['node name', nodeName],
      ['address', address],
    ]) {
      if (!HOST_NAME_PATTERN.test(value))
        throw new Error(`cannot pin host keys: ${what} "${value}" is not a host name or IP address`)
    }
    if (keys.length === 0) throw new Error(`cannot pin host keys of ${nodeName}: it reported none`)
    const parsed = keys.map(parseHostKey)
    const addressName = knownHostName(address, port)
    const names = [...new Set([knownHostName(nodeName, port), addressName])]
    const others = this.readLines()
      .filter((line) => bareName(line.names[0]) !== nodeName)
      .map((line) => ({...line, names: line.names.filter((name, i) => i === 0 || name !== addressName)}))
    this.writeLines([...others, ...parsed.map((key) => ({names, key}))])
  }

  lookup(nodeName: string): PinnedHost | undefined {
    const lines = this.readLines().filter((line) => bareName(line.names[0]) === nodeName)
    if (lines.length === 0) return undefined
    return {nodeName, names: lines[0].names, keys: lines.map((line) => line.key)}
  }

  /** The SSH port a node's keys are pinned for (the one it reported), when any are pinned. */
  pinnedPort(nodeName: string): number | undefined {
    const names = this.lookup(nodeName)?.names
    if (!names) return undefined
    const match = /^\[.*\]:(\d+)$/.exec(names[0])
    return match ? Number(match[1]) : 22
  }

  /** Drop a node's keys; true when it had some. */
  forget(nodeName: string): boolean {
    const lines = this.readLines()
    const kept = lines.filter((line) => bareName(line.names[0]) !== nodeName)
    if (kept.length === lines.length) return false
    this.writeLines(kept)
    return true
  }

  list(): PinnedHost[] {
    const byNode = new Map<string, PinnedHost>()
    for (const line of this.readLines()) {
      const nodeName = bareName(line.names[0])
      const host = byNode.get(nodeName) ?? {nodeName, names: line.names, keys: []}
      host.keys.push(line.key)
      byNode.set(nodeName, host)
    }
    return [...byNode.values()]
  }

  private readLines(): StoreLine[] {
    return readKnownHosts(this.path)
      .filter((entry) => !entry.marker && !entry.hosts.startsWith('|'))
      .map((entry) => ({names: entry.hosts.split(','), key: entry.key}))
  }

  private writeLines(lines: StoreLine[]): void {
    mkdirSync(dirname(this.path), {recursive: true, mode: 0o700})
    const text = lines.map((line) => `${line.names.join(',')} ${formatHostKey(line.key)}\n`).join('')
    const temporary = `${this.path}.${process.pid}.tmp`
    writeFileSync(temporary, text, {mode: 0o600})
    chmodSync(temporary, 0o600)
    renameSync(temporary, this.path)
  }
}

// ---------------------------------------------------------------------------------------------
// Policy

/**
 * How a node's host key is verified.
 * - `pinned` (EC2 and local nodes): the key must be one the node reported when it phoned home.
 * - `static` (servers you already have): the key must be pinned or in the user's known_hosts files;
 *   an unknown key is pinned on first use only when `trustOnFirstUse` is set explicitly.
 */
export type HostKeyPolicy =
  | {mode: 'pinned'; store: HostKeyStore}
  | {mode: 'static'; store: HostKeyStore; knownHostsPaths?: string[]; trustOnFirstUse?: boolean}

/**
 * How a host's key is checked: a node's by its provider's policy; a jump host's (ProxyJump) by the
 * user's known_hosts files alone, as OpenSSH checks it, never pinned and never trusted on first use.
 */
export type HostKeyCheck = HostKeyPolicy | {mode: 'known-hosts'}

export interface HostIdentity {
  /** The node's name, or a jump host's as written in ProxyJump. */
  nodeName: string
  /** The address connected to. */
  address: string
  port: number
  /** HostKeyAlias: the one name known_hosts is searched for instead of the address (port and all). */
  hostKeyAlias?: string
  /** UserKnownHostsFile and GlobalKnownHostsFile from OpenSSH's configuration for the host, if any. */
  knownHostsFiles?: string[]
}

export function trustedKeysFor(policy: HostKeyCheck, host: HostIdentity): KnownKeys {
  const pinned = policy.mode === 'known-hosts' ? undefined : policy.store.lookup(host.nodeName)
  const result: KnownKeys = {
    trusted: (pinned?.keys ?? []).map((key) => ({key, source: (policy as {store: HostKeyStore}).store.path})),
    revoked: [],
  }
  if (policy.mode === 'pinned') return result
  const paths =
    (policy.mode === 'static' ? policy.knownHostsPaths : undefined) ?? host.knownHostsFiles ?? defaultKnownHostsPaths()
  // OpenSSH looks a host up by its HostKeyAlias alone, else by the address it connects to; nodeset
  // also knows a static server by its node name.
  const [names, port] = host.hostKeyAlias
    ? [[host.hostKeyAlias], 22]
    : [policy.mode === 'static' ? [...new Set([host.nodeName, host.address])] : [host.address], host.port]
  for (const path of paths) {
    const found = keysFor(readKnownHosts(path), names, port, path)
    result.trusted.push(...found.trusted)
    result.revoked.push(...found.revoked)
  }
  return result
}

export type HostKeyVerdict =
  | {accept: true; key: HostKey; source: string}
  | {accept: true; key: HostKey; source: 'trust-on-first-use'}
  | {accept: false; key: HostKey; reason: 'mismatch' | 'unknown' | 'revoked'}

/** The decision on an offered key, given what is known: pure, so every branch is tested as data. */
export function judgeHostKey(offered: HostKey, known: KnownKeys, trustOnFirstUse: boolean): HostKeyVerdict {
  if (known.revoked.some((key) => sameKey(key, offered))) return {accept: false, key: offered, reason: 'revoked'}
  const match = known.trusted.find(({key}) => sameKey(key, offered))
  if (match) return {accept: true, key: offered, source: match.source}
  if (known.trusted.length > 0) return {accept: false, key: offered, reason: 'mismatch'}
  if (trustOnFirstUse) return {accept: true, key: offered, source: 'trust-on-first-use'}
  return {accept: false, key: offered, reason: 'unknown'}
}

// ---------------------------------------------------------------------------------------------
// Errors

function describeExpected(known: KnownKeys): string[] {
  return known.trusted.map(({key, source}) => `${fingerprint(key)} (${key.type}, from ${source})`)
}

/** A refused host key; the connection was closed before anything was sent to the server. */
export class HostKeyError extends Error {
  readonly nodeName: string
  readonly address: string
  readonly offered: string
  readonly expected: string[]

  constructor(host: HostIdentity, offered: HostKey, known: KnownKeys, message: string) {
    super(message)
    this.nodeName = host.nodeName
    this.address = knownHostName(host.address, host.port)
    this.offered = fingerprint(offered)
    this.expected = known.trusted.map(({key}) => fingerprint(key))
  }
}

const kindOf = (policy: HostKeyCheck): string => (policy.mode === 'known-hosts' ? 'jump host' : 'node')

/** The server offered a key other than the one pinned or known for it (or a revoked one). */
export class HostKeyMismatchError extends HostKeyError {
  constructor(host: HostIdentity, offered: HostKey, known: KnownKeys, policy: HostKeyCheck, revoked = false) {
    const where = knownHostName(host.address, host.port)
    const advice =
      policy.mode === 'pinned'
        ? `Its pinned key came from its own phone-home. If the node was re-created, let it phone home again so its new key is pinned; otherwise do not connect: someone may be intercepting the connection.`
        : policy.mode === 'known-hosts'
          ? `It is a jump host (ProxyJump) on the way to a node; its key comes from your known_hosts. If it was rebuilt, remove its old key (ssh-keygen -R ${host.hostKeyAlias ?? where}) and verify the new one; otherwise do not connect: someone may be intercepting the connection.`
          : `If you reinstalled this server, remove its old key (ssh-keygen -R ${where}, or its lines in ${policy.store.path}) and verify the new one; otherwise do not connect: someone may be intercepting the connection.`
    super(
      host,
      offered,
      known,
      [
        revoked
          ? `Host key of ${kindOf(policy)} ${host.nodeName} at ${where} is marked @revoked in known_hosts.`
          : `Host key of ${kindOf(policy)} ${host.nodeName} at ${where} does not match.`,
        `  offered:  ${fingerprint(offered)} (${offered.type})`,
        ...describeExpected(known).map((line, i) => `  ${i === 0 ? 'expected:' : '          '} ${line}`),
        advice,
      ].join('\n'),
    )
    this.name = 'HostKeyMismatchError'
  }
}

/** Nothing vouches for the server's key: no pin, no known_hosts entry, no trust-on-first-use. */
export class UnknownHostKeyError extends HostKeyError {
  constructor(host: HostIdentity, offered: HostKey, known: KnownKeys, policy: HostKeyCheck) {
    const where = knownHostName(host.address, host.port)
    const advice =
      policy.mode === 'pinned'
        ? `Its key is pinned when it phones home to the config server; wait until it has, or check that its agent runs.`
        : policy.mode === 'known-hosts'
          ? `It is a jump host (ProxyJump) on the way to a node, and nodeset trusts a jump host only by your known_hosts (${(host.knownHostsFiles?.length ? host.knownHostsFiles : defaultKnownHostsPaths()).join(', ')}): check its fingerprint on the host (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), then add it (ssh-keyscan -p ${host.port} ${host.address} >> ~/.ssh/known_hosts).`
          : `Check the fingerprint on the server (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), then either add it to ~/.ssh/known_hosts (ssh-keyscan -p ${host.port} ${host.address}) or run again with --trust-on-first-use to pin it in ${policy.store.path}.`
    super(
      host,
      offered,
      known,
      [
        `Host key of ${kindOf(policy)} ${host.nodeName} at ${where} is unknown: ${fingerprint(offered)} (${offered.type}); refusing to connect.`,
        advice,
      ].join('\n'),
    )
    this.name = 'UnknownHostKeyError'
  }
}

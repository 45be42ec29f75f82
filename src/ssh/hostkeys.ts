/**
 * SSH host keys: parsing, fingerprints, OpenSSH known_hosts files (plain and hashed entries), the
 * pinned keys of a deployment's nodes (`.nodeset/known_hosts`), and the policy that decides whether
 * a key a server offers is trusted. Nothing here ever accepts a key it cannot vouch for.
 */
import {createHash, createHmac} from 'node:crypto'
import {chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync} from 'node:fs'
import {homedir} from 'node:os'
import {dirname, join} from 'node:path'
import {matchesPatternList} from './config.js'

/** Key types a server can offer and ssh2 can verify, with the signature algorithms that use each. */
const KEY_TYPE_ALGORITHMS: Record<string, string[]> = {
  'ssh-ed25519': ['ssh-ed25519'],
  'ecdsa-sha2-nistp256': ['ecdsa-sha2-nistp256'],
  'ecdsa-sha2-nistp384': ['ecdsa-sha2-nistp384'],
  'ecdsa-sha2-nistp521': ['ecdsa-sha2-nistp521'],
  'ssh-rsa': ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'],
}

export interface HostKey {
  type: string
  /** The key in SSH wire format, as the server sends it. */
  blob: Buffer
}

export class InvalidHostKeyError extends Error {}

/** The type name a wire-format key starts with. */
function blobType(blob: Buffer): string | undefined {
  if (blob.length < 4) return undefined
  const length = blob.readUInt32BE(0)
  if (length === 0 || length > 64 || blob.length < 4 + length) return undefined
  return blob.subarray(4, 4 + length).toString('latin1')
}

export function hostKeyFromBlob(blob: Buffer): HostKey {
  const type = blobType(blob)
  if (!type) throw new InvalidHostKeyError('the server offered a malformed host key')
  return {type, blob}
}

/** `ssh-ed25519 AAAA… [comment]`, as in a `.pub` file or as a node reports its keys when it phones home. */
export function parseHostKey(line: string): HostKey {
  const [type, base64] = line.trim().split(/\s+/)
  const fail = (why: string): never => {
    throw new InvalidHostKeyError(
      `host key "${line.trim().slice(0, 40)}…" ${why}; expected "TYPE BASE64" as in /etc/ssh/ssh_host_ed25519_key.pub`,
    )
  }
  if (!type || !base64) return fail('has no key data')
  if (!(type in KEY_TYPE_ALGORITHMS))
    return fail(`has an unsupported type (${Object.keys(KEY_TYPE_ALGORITHMS).join(', ')})`)
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(base64)) return fail('is not base64')
  const blob = Buffer.from(base64, 'base64')
  if (blobType(blob) !== type) return fail(`does not encode a ${type} key`)
  return {type, blob}
}

export function formatHostKey(key: HostKey): string {
  return `${key.type} ${key.blob.toString('base64')}`
}

/** `SHA256:…`, the form `ssh-keygen -lf` and OpenSSH's warnings print. */
export function fingerprint(key: HostKey): string {
  return 'SHA256:' + createHash('sha256').update(key.blob).digest('base64').replace(/=+$/, '')
}

export function sameKey(a: HostKey, b: HostKey): boolean {
  return a.blob.equals(b.blob)
}

/** Host key algorithms to offer first so the server presents a key of a type we hold. */
export function preferredHostKeyAlgorithms(keys: HostKey[]): string[] {
  return [...new Set(keys.flatMap((key) => KEY_TYPE_ALGORITHMS[key.type] ?? []))]
}

/** The name known_hosts stores for a host: `host`, or `[host]:port` when the port is not 22. */
export function knownHostName(host: string, port = 22): string {
  return port === 22 ? host : `[${host}]:${port}`
}

// ---------------------------------------------------------------------------------------------
// OpenSSH known_hosts files

export interface KnownHostsEntry {
  marker?: 'revoked' | 'cert-authority'
  /** The host field as written: a pattern list, or one hashed `|1|salt|hash` name. */
  hosts: string
  key: HostKey
  line: number
}

/** Every well-formed line; others are ignored, as OpenSSH ignores them. */
export function parseKnownHosts(text: string): KnownHostsEntry[] {
  const entries: KnownHostsEntry[] = []
  text.split(/\r?\n/).forEach((raw, i) => {
    const fields = raw.trim().split(/\s+/)
    if (fields[0] === '' || fields[0].startsWith('#')) return
    let marker: KnownHostsEntry['marker']
    if (fields[0] === '@revoked' || fields[0] === '@cert-authority')
      marker = fields.shift()!.slice(1) as KnownHostsEntry['marker']
    if (fields.length < 3) return
    try {
      entries.push({marker, hosts: fields[0], key: parseHostKey(`${fields[1]} ${fields[2]}`), line: i + 1})
    } catch (error) {
      if (!(error instanceof InvalidHostKeyError)) throw error
    }
  })
  return entries
}

/** Whether a host field names `name`: hashed (`|1|salt|hmac-sha1`) or a pattern list. */
export function hostFieldMatches(hosts: string, name: string): boolean {
  if (hosts.startsWith('|1|')) {
    const [, , salt, hash] = hosts.split('|')
    if (!salt || !hash) return false
    const digest = createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest('base64')
    return digest === hash
  }
  return matchesPatternList(hosts.split(','), name)
}

/** A known_hosts line whose host field is hashed, as `ssh-keygen -H` writes it. */
export function hashedKnownHostsLine(name: string, key: HostKey, salt: Buffer): string {
  const hash = createHmac('sha1', salt).update(name).digest('base64')
  return `|1|${salt.toString('base64')}|${hash} ${formatHostKey(key)}`
}

export interface KnownKeys {
  trusted: Array<{key: HostKey; source: string}>
  revoked: HostKey[]
}

/** The keys known_hosts entries hold for a host known by any of `names` on `port`. */
export function keysFor(entries: KnownHostsEntry[], names: string[], port: number, source: string): KnownKeys {
  // OpenSSH lowercases a host name before looking it up (and before hashing it).
  const lookupNames = names.map((name) => knownHostName(name.toLowerCase(), port))
  const result: KnownKeys = {trusted: [], revoked: []}
  for (const entry of entries) {
    if (entry.marker === 'cert-authority') continue
    if (!lookupNames.some((name) => hostFieldMatches(entry.hosts, name))) continue
    if (entry.marker === 'revoked') result.revoked.push(entry.key)
    else result.trusted.push({key: entry.key, source: `${source}:${entry.line}`})
  }
  return result
}

function readIfExists(path: string): string {
  try {
    return readFileSync(path, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return ''
    throw error
  }
}

export function readKnownHosts(path: string): KnownHostsEntry[] {
  return parseKnownHosts(readIfExists(path))
}

/** Where OpenSSH keeps the keys of hosts the user already trusts. */
export function defaultKnownHostsPaths(home = homedir()): string[] {
  return [join(home, '.ssh', 'known_hosts'), '/etc/ssh/ssh_known_hosts']
}

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

export interface HostIdentity {
  nodeName: string
  /** The address connected to. */
  address: string
  port: number
}

export function trustedKeysFor(policy: HostKeyPolicy, host: HostIdentity): KnownKeys {
  const pinned = policy.store.lookup(host.nodeName)
  const result: KnownKeys = {
    trusted: (pinned?.keys ?? []).map((key) => ({key, source: policy.store.path})),
    revoked: [],
  }
  if (policy.mode === 'static') {
    const names = [...new Set([host.nodeName, host.address])]
    for (const path of policy.knownHostsPaths ?? defaultKnownHostsPaths()) {
      const found = keysFor(readKnownHosts(path), names, host.port, path)
      result.trusted.push(...found.trusted)
      result.revoked.push(...found.revoked)
    }
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

/** The server offered a key other than the one pinned or known for it (or a revoked one). */
export class HostKeyMismatchError extends HostKeyError {
  constructor(host: HostIdentity, offered: HostKey, known: KnownKeys, policy: HostKeyPolicy, revoked = false) {
    const where = knownHostName(host.address, host.port)
    const advice =
      policy.mode === 'pinned'
        ? `Its pinned key came from its own phone-home. If the node was re-created, let it phone home again so its new key is pinned; otherwise do not connect: someone may be intercepting the connection.`
        : `If you reinstalled this server, remove its old key (ssh-keygen -R ${where}, or its lines in ${policy.store.path}) and verify the new one; otherwise do not connect: someone may be intercepting the connection.`
    super(
      host,
      offered,
      known,
      [
        revoked
          ? `Host key of node ${host.nodeName} at ${where} is marked @revoked in known_hosts.`
          : `Host key of node ${host.nodeName} at ${where} does not match.`,
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
  constructor(host: HostIdentity, offered: HostKey, known: KnownKeys, policy: HostKeyPolicy) {
    const where = knownHostName(host.address, host.port)
    const advice =
      policy.mode === 'pinned'
        ? `Its key is pinned when it phones home to the config server; wait until it has, or check that its agent runs.`
        : `Check the fingerprint on the server (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), then either add it to ~/.ssh/known_hosts (ssh-keyscan -p ${host.port} ${host.address}) or run again with --trust-on-first-use to pin it in ${policy.store.path}.`
    super(
      host,
      offered,
      known,
      [
        `Host key of node ${host.nodeName} at ${where} is unknown: ${fingerprint(offered)} (${offered.type}); refusing to connect.`,
        advice,
      ].join('\n'),
    )
    this.name = 'UnknownHostKeyError'
  }
}

/**
 * SSH host keys and OpenSSH known_hosts files: parsing keys, fingerprints as `ssh-keygen -lf` prints
 * them, plain and hashed (`|1|`) entries, patterns and `[host]:port`, and the keys a file holds for a
 * host. hostkeys.ts decides with them which keys a node is trusted with.
 */
import {createHash, createHmac} from 'node:crypto'
import {readFileSync} from 'node:fs'
import {homedir} from 'node:os'
import {join} from 'node:path'
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

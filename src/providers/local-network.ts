/**
 * Pure parts of the local provider: IPv4 subnet arithmetic and the names of the namespaces, links and
 * bridges it makes. Linux limits interface names to 15 characters, so long names end in a hash.
 */
import {createHash} from 'node:crypto'

/** The local provider's network unless the file names one. */
export const DEFAULT_SUBNET = '10.77.0.0/24'

export interface Subnet {
  /** The network address as a 32-bit unsigned integer. */
  base: number
  prefix: number
  cidr: string
}

export function parseIpv4(text: string): number | undefined {
  const parts = text.split('.')
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) return undefined
  return parts.reduce((acc, p) => acc * 256 + Number(p), 0)
}

export function formatIpv4(value: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join('.')
}

/** `10.77.0.0/24`; refuses host bits, prefixes outside /8../29 and anything that is not IPv4. */
export function parseSubnet(cidr: string): Subnet {
  const match = /^(\d+\.\d+\.\d+\.\d+)\/(\d{1,2})$/.exec(cidr.trim())
  const base = match ? parseIpv4(match[1]) : undefined
  const prefix = match ? Number(match[2]) : NaN
  if (base === undefined || !(prefix >= 8 && prefix <= 29)) {
    throw new Error(`subnet ${JSON.stringify(cidr)} is not an IPv4 network from /8 to /29, like 10.77.0.0/24`)
  }
  const size = 2 ** (32 - prefix)
  if (base % size !== 0) {
    throw new Error(`subnet ${cidr} has host bits set: did you mean ${formatIpv4(base - (base % size))}/${prefix}?`)
  }
  return {base, prefix, cidr: `${formatIpv4(base)}/${prefix}`}
}

/** The bridge's (host's) address: the subnet's first address. */
export function hostAddress(subnet: Subnet): string {
  return formatIpv4(subnet.base + 1)
}

/** Addresses nodes may take: after the host's, before the broadcast address. */
export function nodeAddressRange(subnet: Subnet): {first: number; last: number} {
  return {first: subnet.base + 2, last: subnet.base + 2 ** (32 - subnet.prefix) - 2}
}

export function subnetsOverlap(a: Subnet, b: Subnet): boolean {
  const aEnd = a.base + 2 ** (32 - a.prefix)
  const bEnd = b.base + 2 ** (32 - b.prefix)
  return a.base < bEnd && b.base < aEnd
}

/** The network an interface address belongs to (`10.77.0.1/24` → 10.77.0.0/24). */
export function networkOf(address: string, prefix: number): Subnet | undefined {
  const value = parseIpv4(address)
  if (value === undefined || prefix < 0 || prefix > 32) return undefined
  const size = 2 ** (32 - prefix)
  const base = value - (value % size)
  return {base, prefix, cidr: `${formatIpv4(base)}/${prefix}`}
}

/** The lowest address of the subnet's node range not in `taken`. */
export function allocateAddress(subnet: Subnet, taken: Iterable<string>): string {
  const used = new Set<number>()
  for (const address of taken) {
    const value = parseIpv4(address)
    if (value !== undefined) used.add(value)
  }
  const {first, last} = nodeAddressRange(subnet)
  for (let candidate = first; candidate <= last; candidate++) {
    if (!used.has(candidate)) return formatIpv4(candidate)
  }
  throw new Error(
    `subnet ${subnet.cidr} has no free address left for another node: give the deployment a larger subnet`,
  )
}

/**
 * The MAC address of the interface that has this IPv4 address: locally administered, made of the
 * address itself (as Docker does). A node that gets an address another node had also gets its MAC,
 * so the neighbour caches of the host and of the other nodes stay right.
 */
export function macForAddress(address: string): string {
  const value = parseIpv4(address)
  if (value === undefined) throw new Error(`${address} is not an IPv4 address`)
  return [
    '02',
    '4e',
    ...formatIpv4(value)
      .split('.')
      .map((b) => Number(b).toString(16).padStart(2, '0')),
  ].join(':')
}

function shortHash(text: string, length: number): string {
  return createHash('sha256').update(text).digest('hex').slice(0, length)
}

function slug(text: string): string {
  return text
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
}

/** Why a bridge name the user gave cannot be one (Linux: at most 15 characters), or undefined. */
export function bridgeNameProblem(name: string): string | undefined {
  return /^[A-Za-z0-9_.-]{1,15}$/.test(name)
    ? undefined
    : `bridge name ${JSON.stringify(name)} must be 1-15 letters, digits, _ . or -`
}

/** A bridge per deployment, e.g. `nsb-foobar-1a2b` (at most 15 characters). */
export function bridgeName(deployment: string): string {
  return `nsb-${slug(deployment).slice(0, 6).replace(/-+$/, '')}-${shortHash(deployment, 4)}`.replace('--', '-')
}

/** The host end of a node's veth pair, e.g. `nsv1a2b3c4d5e` (the node end is `eth0` inside the namespace). */
export function hostVethName(deployment: string, node: string): string {
  return `nsv${shortHash(`${deployment}\0${node}`, 10)}`
}

/** The network namespace (and /etc/netns/ directory) of a node: readable, unique by its hash. */
export function namespaceName(deployment: string, node: string): string {
  const readable = slug(`${deployment}-${node}`).slice(0, 40).replace(/-+$/, '')
  return `nodeset-${readable}-${shortHash(`${deployment}\0${node}`, 6)}`
}

/**
 * The client's address. Without a trusted proxy it is the TCP peer. Behind proxies (`trustProxy`),
 * it is the right-most address of the chain `X-Forwarded-For…, peer` that is not a trusted proxy:
 * each proxy appends the address it saw, so everything left of the last untrusted hop was written by
 * the client and proves nothing. Only a literal IP counts; anything else in that place is refused.
 */
import net from 'node:net'

/**
 * Which proxies are trusted: `true` one (the peer: a proxy you run in front), a number that many
 * hops, or the proxies' addresses and CIDR ranges.
 */
export type TrustProxy = boolean | number | string | string[]

export type AddressRule = {kind: 'peer'} | {kind: 'hops'; hops: number} | {kind: 'list'; list: net.BlockList}

/** `::ffff:10.0.0.1` is written 10.0.0.1. */
export const normalizeAddress = (address: string): string => address.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/, '$1')

function family(address: string): 'ipv4' | 'ipv6' | undefined {
  const version = net.isIP(address)
  return version === 4 ? 'ipv4' : version === 6 ? 'ipv6' : undefined
}

/** Read a trustProxy option: true, a hop count, or addresses/CIDRs (an array, or a comma-separated string). */
export function addressRule(trust: TrustProxy | undefined): AddressRule {
  if (trust === undefined || trust === false || trust === 0) return {kind: 'peer'}
  if (trust === true) return {kind: 'hops', hops: 1}
  if (typeof trust === 'number') {
    if (!Number.isInteger(trust) || trust < 0 || trust > 64)
      throw new Error(`trustProxy must be true, a number of hops (1-64) or proxy addresses, not ${trust}`)
    return {kind: 'hops', hops: trust}
  }
  const entries = (Array.isArray(trust) ? trust : trust.split(',')).map((e) => e.trim()).filter(Boolean)
  if (entries.length === 1 && /^\d+$/.test(entries[0])) return addressRule(Number(entries[0]))
  const list = new net.BlockList()
  for (const entry of entries) {
    const [address, bits, extra] = entry.split('/')
    const type = family(address)
    const prefix = Number(bits)
    const max = type === 'ipv4' ? 32 : 128
    if (!type || extra !== undefined || (bits !== undefined && !(/^\d+$/.test(bits) && prefix <= max)))
      throw new Error(`trustProxy: "${entry}" is not an IP address or CIDR range (e.g. 10.0.0.1, 10.0.0.0/8, fd00::/8)`)
    if (bits === undefined) list.addAddress(address, type)
    else list.addSubnet(address, prefix, type)
  }
  return {kind: 'list', list}
}

/** The client's address, or why the forwarded header cannot say it (the request is then refused where the address matters). */
export function clientAddress(
  peer: string,
  forwarded: string | string[] | undefined,
  rule: AddressRule,
): {address: string; problem?: string} {
  const from = normalizeAddress(peer)
  if (rule.kind === 'peer') return {address: from}
  const header = Array.isArray(forwarded) ? forwarded.join(',') : (forwarded ?? '')
  const hops = header === '' ? [] : header.split(',').map((entry) => entry.trim())
  const chain = [...hops, from]
  const trusted = (address: string, index: number): boolean => {
    if (rule.kind === 'hops') return chain.length - 1 - index < rule.hops
    const type = family(address)
    return type !== undefined && rule.list.check(address, type)
  }
  for (let i = chain.length - 1; i >= 0; i--) {
    const entry = normalizeAddress(chain[i])
    if (!family(entry))
      return {
        address: from,
        problem: `X-Forwarded-For holds "${entry.slice(0, 64)}" where the client's address should be: not an IP address; check what the proxy in front adds`,
      }
    if (!trusted(entry, i) || i === 0) return {address: entry}
  }
  return {address: from}
}

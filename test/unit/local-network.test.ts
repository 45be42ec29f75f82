import fc from 'fast-check'
import {describe, expect, it} from 'vitest'
import {
  allocateAddress,
  bridgeName,
  formatIpv4,
  hostAddress,
  hostVethName,
  macForAddress,
  namespaceName,
  networkOf,
  parseIpv4,
  parseSubnet,
  subnetsOverlap,
} from '../../src/providers/local-network.js'

describe('subnets', () => {
  it('parses a network, gives the host its first address and nodes the rest', () => {
    const subnet = parseSubnet('10.77.0.0/24')
    expect(hostAddress(subnet)).toBe('10.77.0.1')
    expect(allocateAddress(subnet, [])).toBe('10.77.0.2')
    expect(allocateAddress(subnet, ['10.77.0.2', '10.77.0.4'])).toBe('10.77.0.3')
  })

  it('refuses what is not an IPv4 network, with what to write instead', () => {
    expect(() => parseSubnet('10.77.0.5/24')).toThrow(/has host bits set: did you mean 10\.77\.0\.0\/24\?/)
    expect(() => parseSubnet('10.77.0.0')).toThrow(/not an IPv4 network from \/8 to \/29, like 10\.77\.0\.0\/24/)
    expect(() => parseSubnet('10.77.0.0/30')).toThrow(/from \/8 to \/29/)
    expect(() => parseSubnet('300.1.1.0/24')).toThrow(/not an IPv4 network/)
  })

  it('runs out of addresses with a clear error, never reusing one', () => {
    const subnet = parseSubnet('10.1.2.0/29') // .1 host, .2-.6 nodes, .7 broadcast
    const taken: string[] = []
    for (let i = 0; i < 5; i++) taken.push(allocateAddress(subnet, taken))
    expect(taken).toEqual(['10.1.2.2', '10.1.2.3', '10.1.2.4', '10.1.2.5', '10.1.2.6'])
    expect(() => allocateAddress(subnet, taken)).toThrow(/no free address left/)
  })

  it('formats what it parses', () => {
    fc.assert(
      fc.property(fc.integer({min: 0, max: 2 ** 32 - 1}), (n) => {
        expect(parseIpv4(formatIpv4(n))).toBe(n)
      }),
    )
  })

  it('sees overlaps the way ranges do', () => {
    const a = parseSubnet('10.77.0.0/24')
    expect(subnetsOverlap(a, parseSubnet('10.77.0.128/25'))).toBe(true)
    expect(subnetsOverlap(a, parseSubnet('10.0.0.0/8'))).toBe(true)
    expect(subnetsOverlap(a, parseSubnet('10.77.1.0/24'))).toBe(false)
    expect(networkOf('10.77.0.1', 24)?.cidr).toBe('10.77.0.0/24')
    fc.assert(
      fc.property(
        fc.integer({min: 0, max: 2 ** 32 - 1}),
        fc.integer({min: 8, max: 29}),
        fc.integer({min: 0, max: 2 ** 32 - 1}),
        fc.integer({min: 8, max: 29}),
        (x, p, y, q) => {
          const s = networkOf(formatIpv4(x), p)!
          const t = networkOf(formatIpv4(y), q)!
          const contains = (n: typeof s, v: number): boolean => v >= n.base && v < n.base + 2 ** (32 - n.prefix)
          expect(subnetsOverlap(s, t)).toBe(contains(s, t.base) || contains(t, s.base))
        },
      ),
    )
  })
})

describe('MAC addresses', () => {
  it('are made of the IPv4 address, locally administered, one per address', () => {
    expect(macForAddress('10.77.0.2')).toBe('02:4e:0a:4d:00:02')
    expect(macForAddress('192.168.255.1')).toBe('02:4e:c0:a8:ff:01')
    fc.assert(
      fc.property(fc.integer({min: 0, max: 2 ** 32 - 1}), fc.integer({min: 0, max: 2 ** 32 - 1}), (x, y) => {
        expect(macForAddress(formatIpv4(x))).toMatch(/^02:4e(:[0-9a-f]{2}){4}$/)
        expect(macForAddress(formatIpv4(x)) === macForAddress(formatIpv4(y))).toBe(x === y)
      }),
    )
  })
})

describe('names', () => {
  it('keeps interface names within the 15 characters Linux allows, and apart for different inputs', () => {
    fc.assert(
      fc.property(
        fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,60}$/),
        fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,60}$/),
        (dep, node) => {
          expect(bridgeName(dep)).toMatch(/^[a-z0-9-]{1,15}$/)
          expect(hostVethName(dep, node)).toMatch(/^[a-z0-9]{1,15}$/)
          expect(namespaceName(dep, node)).toMatch(/^nodeset-[a-z0-9-]+-[0-9a-f]{6}$/)
        },
      ),
    )
    expect(bridgeName('foobar.com')).toMatch(/^nsb-foobar-[0-9a-f]{4}$/)
    expect(namespaceName('a-b', 'c')).not.toBe(namespaceName('a', 'b-c'))
    expect(hostVethName('a-b', 'c')).not.toBe(hostVethName('a', 'b-c'))
  })
})

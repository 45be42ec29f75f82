import {randomBytes} from 'node:crypto'
import {mkdtempSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import fc from 'fast-check'
import {afterEach, describe, expect, test} from 'vitest'
import {
  fingerprint,
  formatHostKey,
  hashedKnownHostsLine,
  hostFieldMatches,
  HostKeyMismatchError,
  HostKeyStore,
  judgeHostKey,
  keysFor,
  parseHostKey,
  parseKnownHosts,
  preferredHostKeyAlgorithms,
  trustedKeysFor,
  UnknownHostKeyError,
  type HostKey,
  type KnownKeys,
} from '../../src/ssh/hostkeys.js'

// Vectors made with OpenSSH: ssh-keygen -t …, ssh-keygen -lf, ssh-keygen -H.
const ED25519 = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMyK0mxgIKFBMZJskxCst6zd0jT2c4CqxAj1s+3hWINj vec'
const ED25519_FINGERPRINT = 'SHA256:IYVasSD9Xdnco1WlYrT96fmv7RSYWWeV2h9j3ovuE8I'
const ECDSA =
  'ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBBYyihN6N7inhDhePHDQcHKDk4v1fFEfqsIT1aXe29oc6Ce/sETL/wPQa6bfNL7ZIcjqbc88dayN9vty2bJ5qDc= vec2'
const ECDSA_FINGERPRINT = 'SHA256:d8Tp/1bE9v9k9XhRSRO5kkygCmogDJtVfO/GODdHYl8'
// `db1.example.com` and `[10.0.0.5]:2222`, hashed by ssh-keygen -H.
const HASHED = [
  '|1|by3FeGR3aAtfAdeg2gSCiwNF/AE=|nbZIcvtQ/vOLqrQ6bdsWdA4HeKg= ' + ED25519.split(' ').slice(0, 2).join(' '),
  '|1|/CUvM+Ec4GQzTOyphzm+xSTUTLI=|LFDsIvIU82ej8lIAjNFeE3sWmaQ= ' + ECDSA.split(' ').slice(0, 2).join(' '),
].join('\n')

/** A syntactically valid ed25519 key with random key bytes. */
function randomEd25519(): string {
  const type = Buffer.from('ssh-ed25519')
  const blob = Buffer.concat([Buffer.from([0, 0, 0, type.length]), type, Buffer.from([0, 0, 0, 32]), randomBytes(32)])
  return `ssh-ed25519 ${blob.toString('base64')}`
}

const dirs: string[] = []
function tempStore(): HostKeyStore {
  const dir = mkdtempSync(join(tmpdir(), 'nodeset-hostkeys-'))
  dirs.push(dir)
  return HostKeyStore.inStateDir(join(dir, '.nodeset'))
}
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, {recursive: true, force: true})
})

describe('host keys', () => {
  test('fingerprints are the ones ssh-keygen -lf prints', () => {
    expect(fingerprint(parseHostKey(ED25519))).toBe(ED25519_FINGERPRINT)
    expect(fingerprint(parseHostKey(ECDSA))).toBe(ECDSA_FINGERPRINT)
  })

  test('a key line drops its comment and keeps type and data', () => {
    expect(formatHostKey(parseHostKey(ED25519))).toBe(ED25519.split(' ').slice(0, 2).join(' '))
  })

  test.each([
    ['', /no key data/],
    ['ssh-ed25519', /no key data/],
    ['ssh-foo AAAA', /unsupported type/],
    ['ssh-ed25519 not*base64', /not base64/],
    [`ssh-rsa ${ED25519.split(' ')[1]}`, /does not encode a ssh-rsa key/],
  ])('a malformed key is refused with what to give instead: %j', (line, why) => {
    expect(() => parseHostKey(line)).toThrow(why)
    expect(() => parseHostKey(line)).toThrow(/expected "TYPE BASE64"/)
  })

  test('the offered algorithms put the held key types first', () => {
    expect(preferredHostKeyAlgorithms([parseHostKey(ECDSA)])).toEqual(['ecdsa-sha2-nistp256'])
    const rsaBlob = Buffer.concat([Buffer.from([0, 0, 0, 7]), Buffer.from('ssh-rsa'), randomBytes(20)])
    expect(preferredHostKeyAlgorithms([{type: 'ssh-rsa', blob: rsaBlob}, parseHostKey(ED25519)])).toEqual([
      'rsa-sha2-512',
      'rsa-sha2-256',
      'ssh-rsa',
      'ssh-ed25519',
    ])
  })
})

describe('known_hosts files', () => {
  test('hashed entries match the names they were made from, and only those', () => {
    const entries = parseKnownHosts(HASHED)
    expect(entries).toHaveLength(2)
    expect(hostFieldMatches(entries[0].hosts, 'db1.example.com')).toBe(true)
    expect(hostFieldMatches(entries[0].hosts, 'db2.example.com')).toBe(false)
    expect(hostFieldMatches(entries[1].hosts, '[10.0.0.5]:2222')).toBe(true)
    expect(hostFieldMatches(entries[1].hosts, '10.0.0.5')).toBe(false)
  })

  test('hashing here and matching agree for any name', () => {
    const key = parseHostKey(ED25519)
    fc.assert(
      fc.property(fc.domain(), fc.uint8Array({minLength: 20, maxLength: 20}), (name, salt) => {
        const [entry] = parseKnownHosts(hashedKnownHostsLine(name, key, Buffer.from(salt)))
        return hostFieldMatches(entry.hosts, name) && !hostFieldMatches(entry.hosts, name + 'x')
      }),
    )
  })

  test('plain entries: lists, wildcards, negation and ports', () => {
    expect(hostFieldMatches('db1,10.0.0.5', '10.0.0.5')).toBe(true)
    expect(hostFieldMatches('*.example.com,!bad.example.com', 'good.example.com')).toBe(true)
    expect(hostFieldMatches('*.example.com,!bad.example.com', 'bad.example.com')).toBe(false)
    expect(hostFieldMatches('10.0.0.?', '10.0.0.7')).toBe(true)
    expect(hostFieldMatches('[10.0.0.5]:2222', '[10.0.0.5]:2222')).toBe(true)
    expect(hostFieldMatches('10.0.0.5', '[10.0.0.5]:2222')).toBe(false)
    expect(hostFieldMatches('DB1.Example.com', 'db1.example.com')).toBe(true)
  })

  test('lookups use [host]:port off port 22; revoked keys are kept apart; CA lines and junk are skipped', () => {
    const text = [
      '# comment',
      `db1.example.com ${ED25519}`,
      `[db1.example.com]:2222 ${ECDSA}`,
      `@revoked * ${ECDSA}`,
      `@cert-authority *.example.com ${ED25519}`,
      'garbage line',
      `db1.example.com ssh-ed25519 !!!`,
    ].join('\n')
    const entries = parseKnownHosts(text)
    const on22 = keysFor(entries, ['db1.example.com'], 22, 'kh')
    expect(on22.trusted.map((t) => fingerprint(t.key))).toEqual([ED25519_FINGERPRINT])
    expect(on22.trusted[0].source).toBe('kh:2')
    expect(on22.revoked.map(fingerprint)).toEqual([ECDSA_FINGERPRINT])
    expect(
      keysFor(parseKnownHosts(HASHED), ['DB1.Example.COM'], 22, 'kh').trusted.map((t) => fingerprint(t.key)),
    ).toEqual([ED25519_FINGERPRINT])
    const on2222 = keysFor(entries, ['10.9.9.9', 'db1.example.com'], 2222, 'kh')
    expect(on2222.trusted.map((t) => fingerprint(t.key))).toEqual([ECDSA_FINGERPRINT])
  })
})

describe('judging an offered key', () => {
  const ed = parseHostKey(ED25519)
  const ec = parseHostKey(ECDSA)
  const known = (keys: HostKey[], revoked: HostKey[] = []): KnownKeys => ({
    trusted: keys.map((key) => ({key, source: 'test'})),
    revoked,
  })

  test('a known key is accepted, with where it is known from', () => {
    expect(judgeHostKey(ed, known([ec, ed]), false)).toEqual({accept: true, key: ed, source: 'test'})
  })
  test('another key than the known ones is a mismatch, even with trust-on-first-use', () => {
    expect(judgeHostKey(ec, known([ed]), true)).toMatchObject({accept: false, reason: 'mismatch'})
  })
  test('nothing known: refused, unless trust-on-first-use was asked for', () => {
    expect(judgeHostKey(ed, known([]), false)).toMatchObject({accept: false, reason: 'unknown'})
    expect(judgeHostKey(ed, known([]), true)).toMatchObject({accept: true, source: 'trust-on-first-use'})
  })
  test('a revoked key is refused even when it is also listed as trusted', () => {
    expect(judgeHostKey(ed, known([ed], [ed]), true)).toMatchObject({accept: false, reason: 'revoked'})
  })
})

describe('the pinned keys file', () => {
  test('pin, lookup and forget; the file is OpenSSH format with mode 0600', () => {
    const store = tempStore()
    store.pin('app1.foobar.com', '10.4.3.2', [ED25519, ECDSA])
    store.pin('db.foobar.com', '10.4.3.3', [randomEd25519()], 2222)
    const app = store.lookup('app1.foobar.com')!
    expect(app.keys.map(fingerprint)).toEqual([ED25519_FINGERPRINT, ECDSA_FINGERPRINT])
    expect(app.names).toEqual(['app1.foobar.com', '10.4.3.2'])
    expect(store.lookup('db.foobar.com')!.names).toEqual(['[db.foobar.com]:2222', '[10.4.3.3]:2222'])
    expect(statSync(store.path).mode & 0o777).toBe(0o600)
    const lines = readFileSync(store.path, 'utf8').trim().split('\n')
    expect(lines[0]).toBe(`app1.foobar.com,10.4.3.2 ${ED25519.split(' ').slice(0, 2).join(' ')}`)
    expect(keysFor(parseKnownHosts(readFileSync(store.path, 'utf8')), ['10.4.3.2'], 22, 'x').trusted).toHaveLength(2)

    expect(store.forget('app1.foobar.com')).toBe(true)
    expect(store.forget('app1.foobar.com')).toBe(false)
    expect(store.lookup('app1.foobar.com')).toBeUndefined()
    expect(store.list().map((h) => h.nodeName)).toEqual(['db.foobar.com'])
  })

  test('pinning again replaces the keys; an address taken over stops naming the old node', () => {
    const store = tempStore()
    store.pin('old.foobar.com', '10.4.3.2', [ED25519])
    store.pin('old.foobar.com', '10.4.3.2', [ECDSA])
    expect(store.lookup('old.foobar.com')!.keys.map(fingerprint)).toEqual([ECDSA_FINGERPRINT])
    store.pin('new.foobar.com', '10.4.3.2', [ED25519])
    expect(store.lookup('old.foobar.com')!.names).toEqual(['old.foobar.com'])
    const byAddress = keysFor(parseKnownHosts(readFileSync(store.path, 'utf8')), ['10.4.3.2'], 22, 'x')
    expect(byAddress.trusted.map((t) => fingerprint(t.key))).toEqual([ED25519_FINGERPRINT])
  })

  test('bad input is refused before anything is written', () => {
    const store = tempStore()
    expect(() => store.pin('a b', '10.0.0.1', [ED25519])).toThrow(/node name "a b" is not a host name/)
    expect(() => store.pin('ok', '10.0.0.1,*', [ED25519])).toThrow(/address .* is not a host name/)
    expect(() => store.pin('ok', '10.0.0.1', [])).toThrow(/reported none/)
    expect(() => store.pin('ok', '10.0.0.1', ['ssh-ed25519 AAAA'])).toThrow(/does not encode/)
    expect(store.list()).toEqual([])
  })

  test('any set of nodes round-trips through the file', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(
          fc.record({
            name: fc.domain(),
            last: fc.integer({min: 1, max: 254}),
            keys: fc.integer({min: 1, max: 3}),
            port: fc.constantFrom(22, 2222),
          }),
          {
            selector: (n) => n.name.toLowerCase(),
            maxLength: 6,
          },
        ),
        (nodes) => {
          const store = tempStore()
          const pinned = nodes.map((n, i) => ({
            ...n,
            address: `10.${i}.0.${n.last}`,
            lines: Array.from({length: n.keys}, randomEd25519),
          }))
          for (const n of pinned) store.pin(n.name, n.address, n.lines, n.port)
          for (const n of pinned) expect(store.lookup(n.name)!.keys.map(formatHostKey)).toEqual(n.lines)
          expect(store.list()).toHaveLength(pinned.length)
        },
      ),
      {numRuns: 30},
    )
  })
})

describe('policy and errors', () => {
  test('static nodes trust the user known_hosts (hashed too) and the pinned file; pinned nodes only the pinned file', () => {
    const store = tempStore()
    const knownHosts = join(dirs[0], 'known_hosts')
    writeFileSync(knownHosts, HASHED + '\n')
    const host = {nodeName: 'db1.example.com', address: '10.0.0.9', port: 22}
    const fromStatic = trustedKeysFor({mode: 'static', store, knownHostsPaths: [knownHosts]}, host)
    expect(fromStatic.trusted.map((t) => [fingerprint(t.key), t.source])).toEqual([
      [ED25519_FINGERPRINT, `${knownHosts}:1`],
    ])
    expect(trustedKeysFor({mode: 'pinned', store}, host).trusted).toEqual([])
    store.pin('db1.example.com', '10.0.0.9', [ECDSA])
    expect(trustedKeysFor({mode: 'pinned', store}, host).trusted.map((t) => fingerprint(t.key))).toEqual([
      ECDSA_FINGERPRINT,
    ])
  })

  test('a mismatch names the node, the address, both fingerprints and what to do', () => {
    const store = tempStore()
    const error = new HostKeyMismatchError(
      {nodeName: 'db1.example.com', address: '10.0.0.9', port: 2222},
      parseHostKey(ECDSA),
      {trusted: [{key: parseHostKey(ED25519), source: '/home/me/.ssh/known_hosts:4'}], revoked: []},
      {mode: 'static', store},
    )
    expect(error.message).toContain('db1.example.com')
    expect(error.message).toContain('[10.0.0.9]:2222')
    expect(error.message).toContain(`offered:  ${ECDSA_FINGERPRINT}`)
    expect(error.message).toContain(`expected: ${ED25519_FINGERPRINT} (ssh-ed25519, from /home/me/.ssh/known_hosts:4)`)
    expect(error.message).toContain('ssh-keygen -R [10.0.0.9]:2222')
    expect(error).toMatchObject({
      nodeName: 'db1.example.com',
      offered: ECDSA_FINGERPRINT,
      expected: [ED25519_FINGERPRINT],
    })
  })

  test('an unknown key on a static node points at known_hosts and --trust-on-first-use', () => {
    const store = tempStore()
    const error = new UnknownHostKeyError(
      {nodeName: 'db1', address: '10.0.0.9', port: 22},
      parseHostKey(ED25519),
      {trusted: [], revoked: []},
      {mode: 'static', store},
    )
    expect(error.message).toMatch(/db1 at 10\.0\.0\.9 is unknown: SHA256:IYVas/)
    expect(error.message).toContain('--trust-on-first-use')
    const pinned = new UnknownHostKeyError(
      {nodeName: 'db1', address: '10.0.0.9', port: 22},
      parseHostKey(ED25519),
      {trusted: [], revoked: []},
      {mode: 'pinned', store},
    )
    expect(pinned.message).toMatch(/phones home/)
    expect(pinned.message).not.toContain('--trust-on-first-use')
  })

  test('a jump host is trusted by its known_hosts files alone: under its address, or its HostKeyAlias only', () => {
    const store = tempStore()
    const userFile = join(dirs[0], 'fleet_known_hosts')
    writeFileSync(userFile, `bastion ${ED25519}\n[203.0.113.7]:2201 ${ECDSA}\n`)
    // Pinned under the same name, and trusted for a static node: never for a jump host.
    store.pin('bastion', '203.0.113.7', [randomEd25519()], 2201)
    const jump = {nodeName: 'bastion', address: '203.0.113.7', port: 2201, knownHostsFiles: [userFile]}
    const byAddress = trustedKeysFor({mode: 'known-hosts'}, jump)
    expect(byAddress.trusted.map((t) => [fingerprint(t.key), t.source])).toEqual([[ECDSA_FINGERPRINT, `${userFile}:2`]])
    const byAlias = trustedKeysFor({mode: 'known-hosts'}, {...jump, hostKeyAlias: 'bastion'})
    expect(byAlias.trusted.map((t) => fingerprint(t.key))).toEqual([ED25519_FINGERPRINT])
    // A static node takes the files its configuration names unless the provider names its own.
    const node = {nodeName: 'db1', address: '203.0.113.7', port: 2201, knownHostsFiles: [userFile]}
    expect(trustedKeysFor({mode: 'static', store}, node).trusted.map((t) => t.source)).toEqual([`${userFile}:2`])
    expect(trustedKeysFor({mode: 'static', store, knownHostsPaths: []}, node).trusted).toEqual([])

    const unknown = new UnknownHostKeyError(
      jump,
      parseHostKey(ED25519),
      {trusted: [], revoked: []},
      {mode: 'known-hosts'},
    )
    expect(unknown.message).toMatch(/^Host key of jump host bastion at \[203\.0\.113\.7\]:2201 is unknown/)
    expect(unknown.message).toContain(`only by your known_hosts (${userFile})`)
    expect(unknown.message).not.toContain('--trust-on-first-use')
    const changed = new HostKeyMismatchError(jump, parseHostKey(ED25519), byAddress, {mode: 'known-hosts'})
    expect(changed.message).toMatch(/^Host key of jump host bastion at \[203\.0\.113\.7\]:2201 does not match\./)
    expect(changed.message).toContain('ssh-keygen -R [203.0.113.7]:2201')
  })
})

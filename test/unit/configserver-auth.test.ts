/**
 * The config server's authentication without a network: the token index, caller resolution, the
 * failure limiter and the client address as pure functions, and the auth plugin through fastify's
 * `inject` over a real SQLite state in a temp dir.
 */
import {createHash} from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import fc from 'fast-check'
import {afterEach, describe, expect, it} from 'vitest'
import {addressRule, clientAddress} from '../../src/configserver/address.js'
import {buildApp} from '../../src/configserver/app.js'
import {type CallerLookup, failureKeys, resolveCaller} from '../../src/configserver/auth.js'
import {createContext} from '../../src/configserver/context.js'
import {AuthFailureLimiter} from '../../src/configserver/ratelimit.js'
import {planRegistration, writeRegistration} from '../../src/configserver/register.js'
import {SqliteStore} from '../../src/configserver/sqlitestore.js'
import {
  adminTokenProblem,
  bearerToken,
  hashToken,
  newToken,
  TokenIndex,
  type TokenHashes,
} from '../../src/configserver/tokens.js'

const T0 = Date.parse('2030-01-01T00:00:00Z')

describe('the token index and caller resolution', () => {
  const admin = newToken()
  const bootstrap = newToken()
  const node = newToken()

  function lookup(instance: TokenHashes & {exchangedAt?: number; nodeTokenUsedAt?: number}, now = T0): CallerLookup {
    const tokens = new TokenIndex()
    tokens.add('d', instance)
    return {
      adminHash: hashToken(admin),
      tokens,
      instance: (deployment, id) => (deployment === 'd' && id === instance.id ? instance : undefined),
      now,
      exchangeGraceMs: 60_000,
    }
  }

  it('the admin, a bootstrap token before its exchange, a node token after; nothing else', () => {
    const fresh = lookup({id: 'i', tokenHash: hashToken(bootstrap)})
    expect(resolveCaller(admin, fresh)).toEqual({kind: 'admin'})
    expect(resolveCaller(bootstrap, fresh)).toEqual({kind: 'instance', deployment: 'd', id: 'i', token: 'bootstrap'})
    expect(resolveCaller(undefined, fresh)).toEqual({refused: 'missing'})
    expect(resolveCaller(newToken(), fresh)).toEqual({refused: 'invalid'})

    const exchanged = lookup({
      id: 'i',
      tokenHash: hashToken(bootstrap),
      nodeTokenHash: hashToken(node),
      exchangedAt: T0,
    })
    expect(resolveCaller(node, exchanged)).toEqual({kind: 'instance', deployment: 'd', id: 'i', token: 'node'})
    expect(resolveCaller(bootstrap, exchanged)).toEqual({refused: 'exchanged'})
    // On the phone-home route, within the grace and while the node token is unused, the bootstrap token may exchange again.
    expect(resolveCaller(bootstrap, exchanged, true)).toMatchObject({token: 'bootstrap'})
    const used = lookup({
      id: 'i',
      tokenHash: hashToken(bootstrap),
      nodeTokenHash: hashToken(node),
      exchangedAt: T0,
      nodeTokenUsedAt: T0 + 1,
    })
    expect(resolveCaller(bootstrap, used, true)).toEqual({refused: 'exchanged'})
    const late = lookup(
      {id: 'i', tokenHash: hashToken(bootstrap), nodeTokenHash: hashToken(node), exchangedAt: T0},
      T0 + 60_000,
    )
    expect(resolveCaller(bootstrap, late, true)).toEqual({refused: 'exchanged'})
  })

  it('a replaced node token stops resolving; a dropped instance holds nothing', () => {
    const index = new TokenIndex()
    const record = {id: 'i', tokenHash: hashToken(bootstrap), nodeTokenHash: hashToken(node)}
    index.add('d', record)
    expect(index.holder(hashToken(node))).toEqual({deployment: 'd', id: 'i'})
    const next = hashToken(newToken())
    index.replace('d', 'i', record.nodeTokenHash, next)
    expect(index.holder(hashToken(node))).toBeUndefined()
    expect(index.holder(next)).toEqual({deployment: 'd', id: 'i'})
    index.drop({...record, nodeTokenHash: next})
    expect(index.size).toBe(0)
  })

  it('hashes a token to its SHA-256 digest, as states written before hold it (property)', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.stringMatching(/^[A-Za-z0-9_-]{43}$/)), (token) => {
        const digest = hashToken(token)
        expect(digest.equals(createHash('sha256').update(token).digest())).toBe(true)
        expect(digest.length).toBe(32)
      }),
    )
  })

  it('the Bearer parser and the admin token agree on what a token is', () => {
    for (const token of [newToken(), 'a'.repeat(16), 'A-Z.a_z~0+9/=='.padEnd(20, 'x'), 'x'.repeat(512)]) {
      expect(bearerToken(`Bearer ${token}`)).toBe(token)
      expect(adminTokenProblem(token)).toBeUndefined()
    }
    for (const token of [
      'short',
      'has spaces in it, long',
      'ünïcödé-token-long',
      'x'.repeat(513),
      'semi;colon;token;x',
    ]) {
      expect(bearerToken(`Bearer ${token}`)).toBeUndefined()
      expect(adminTokenProblem(token)).toMatch(/16 to 512 characters/)
    }
    expect(bearerToken(`Basic ${newToken()}`)).toBeUndefined()
  })
})

describe('the failure limiter', () => {
  it('blocks a key after the limit for the window, then forgets it', () => {
    const limiter = new AuthFailureLimiter(3, 60_000)
    expect([limiter.fail('k', T0), limiter.fail('k', T0 + 1)]).toEqual([0, 0])
    expect(limiter.fail('k', T0 + 2)).toBe(60)
    expect(limiter.retryAfter('k', T0 + 30_002)).toBe(30)
    expect(limiter.retryAfter('other', T0)).toBe(0)
    expect(limiter.retryAfter('k', T0 + 60_002)).toBe(0)
    expect(limiter.fail('k', T0 + 60_003)).toBe(0)
  })

  it('stays bounded under a flood of keys', () => {
    const limiter = new AuthFailureLimiter(3, 60_000, 1000)
    for (let i = 0; i < 5000; i++) limiter.fail(`k${i}`, T0)
    expect(limiter.size).toBeLessThanOrEqual(1000)
  })

  it('counts per address and credential, and per address and target, never per address alone', () => {
    const [credential, target] = failureKeys('10.0.0.1', 'tok'.repeat(8), 'd/i')
    expect(failureKeys('10.0.0.1', 'tok'.repeat(8), 'd/j')[0]).toBe(credential)
    expect(failureKeys('10.0.0.1', 'other'.repeat(8), 'd/i')[1]).toBe(target)
    expect(failureKeys('10.0.0.2', 'tok'.repeat(8), 'd/i')).not.toContain(credential)
    expect(credential).not.toContain('tok')
  })
})

describe('the client address', () => {
  const forwarded = '203.0.113.1, 198.51.100.7, 10.0.0.2'

  it('is the peer without trusted proxies, whatever X-Forwarded-For says', () => {
    expect(clientAddress('::ffff:127.0.0.1', forwarded, addressRule(false))).toEqual({address: '127.0.0.1'})
  })

  it('is the right-most untrusted address: by hops or by the proxies named', () => {
    expect(clientAddress('127.0.0.1', forwarded, addressRule(true))).toEqual({address: '10.0.0.2'})
    expect(clientAddress('127.0.0.1', forwarded, addressRule(2))).toEqual({address: '198.51.100.7'})
    expect(clientAddress('127.0.0.1', forwarded, addressRule('2'))).toEqual({address: '198.51.100.7'})
    expect(clientAddress('127.0.0.1', forwarded, addressRule(9))).toEqual({address: '203.0.113.1'})
    expect(clientAddress('127.0.0.1', forwarded, addressRule(['127.0.0.1', '10.0.0.0/8']))).toEqual({
      address: '198.51.100.7',
    })
    expect(clientAddress('127.0.0.1', forwarded, addressRule('127.0.0.1,10.0.0.0/8,198.51.100.0/24'))).toEqual({
      address: '203.0.113.1',
    })
    // A peer that is not a named proxy is the client itself.
    expect(clientAddress('192.0.2.5', forwarded, addressRule(['127.0.0.1']))).toEqual({address: '192.0.2.5'})
    expect(clientAddress('127.0.0.1', undefined, addressRule(true))).toEqual({address: '127.0.0.1'})
    expect(clientAddress('::1', '2001:db8::5', addressRule(['::1']))).toEqual({address: '2001:db8::5'})
  })

  it('accepts only a literal IP where the client address should be', () => {
    const junk = clientAddress('127.0.0.1', '203.0.113.66 github.com', addressRule(true))
    expect(junk.address).toBe('127.0.0.1')
    expect(junk.problem).toMatch(/X-Forwarded-For holds "203\.0\.113\.66 github\.com" .*not an IP address/)
    // Junk to the left of the client's address is the client's own writing, and ignored.
    expect(clientAddress('127.0.0.1', 'github.com, 198.51.100.7', addressRule(true))).toEqual({address: '198.51.100.7'})
  })

  it('refuses a trustProxy it cannot read', () => {
    expect(() => addressRule(['10.0.0.0/33'])).toThrow(/not an IP address or CIDR range/)
    expect(() => addressRule('proxy.example.com')).toThrow(/not an IP address or CIDR range/)
    expect(() => addressRule(-1)).toThrow(/number of hops/)
  })
})

describe('the auth plugin, in process', () => {
  const dirs: string[] = []
  const stores: SqliteStore[] = []
  afterEach(async () => {
    for (const store of stores.splice(0)) await store.close()
    for (const dir of dirs.splice(0)) fs.rmSync(dir, {recursive: true, force: true})
  })

  async function app(limit = 3) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-auth-'))
    dirs.push(dir)
    const store = new SqliteStore(dir)
    stores.push(store)
    const plan = planRegistration('d', {
      instances: [
        {id: 'a', role: 'r', services: [{name: 's'}]},
        {id: 'b', role: 'r', services: [{name: 's'}]},
      ],
    })
    const tokens = await store.store.write((db) => writeRegistration(db, plan, T0), undefined, true)
    const context = await createContext(store)
    const admin = newToken()
    const fastify = buildApp({context, adminHash: hashToken(admin), limiter: new AuthFailureLimiter(limit)})
    const get = (url: string, token?: string, remoteAddress = '10.1.1.1') =>
      fastify.inject({method: 'GET', url, remoteAddress, headers: token ? {authorization: `Bearer ${token}`} : {}})
    return {fastify, tokens, admin, get}
  }

  it('sets the caller: an instance reaches itself only, the admin everything', async () => {
    const {fastify, tokens, admin, get} = await app()
    expect((await get('/v1/deployments/d/instances/a/roles', tokens.a)).statusCode).toBe(200)
    expect((await get('/v1/deployments/d/instances/b/roles', tokens.a)).statusCode).toBe(403)
    expect((await get('/v1/deployments/d/status', tokens.a)).statusCode).toBe(403)
    expect((await get('/v1/deployments/d/status', admin)).statusCode).toBe(200)
    expect((await get('/v1/deployments/d/instances/b/roles', admin)).statusCode).toBe(200)
    const none = await get('/v1/deployments/d/status')
    expect(none.statusCode).toBe(401)
    expect(none.headers['www-authenticate']).toBe('Bearer')
    await fastify.close()
  })

  it('limits failures of one credential or against one target, never a valid token and never /healthz', async () => {
    const {fastify, tokens, admin, get} = await app(3)
    const nat = '10.2.2.2'
    const statuses = []
    for (let i = 0; i < 5; i++)
      statuses.push((await get('/v1/deployments/d/instances/a/roles', newToken(), nat)).statusCode)
    expect(statuses).toEqual([401, 401, 401, 429, 429])
    // The same address with valid tokens: served.
    expect((await get('/v1/deployments/d/instances/a/roles', tokens.a, nat)).statusCode).toBe(200)
    expect((await get('/v1/deployments/d/status', admin, nat)).statusCode).toBe(200)
    // A wrong token against another target from the same address: its own count.
    expect((await get('/v1/deployments/d/instances/b/roles', newToken(), nat)).statusCode).toBe(401)
    // One credential retried against several targets: limited by the credential.
    const stale = newToken()
    const retried = []
    for (const id of ['a', 'b', 'a', 'b'])
      retried.push((await get(`/v1/deployments/d/instances/${id}/roles`, stale, '10.3.3.3')).statusCode)
    expect(retried).toEqual([401, 401, 401, 429])
    for (let i = 0; i < 10; i++) expect((await get('/healthz', undefined, nat)).statusCode).toBe(200)
    await fastify.close()
  })
})

import {afterEach, beforeEach, describe, expect, it} from 'vitest'
import {applyRolesDelta, type RolesDelta, rolesVersionOf} from '../../src/configserver/rolemap.js'
import {raw, seed000, testServer, type TestServer} from './configserver-fixtures.js'

describe('config server: versions of the role map over real HTTP', () => {
  let server: TestServer
  let tokens: Record<string, string>
  beforeEach(async () => {
    server = await testServer()
    ;({tokens} = await server.admin('wp').register(seed000))
  })
  afterEach(async () => {
    await server.close()
  })

  const config = (query: string) =>
    raw(server.url, `/v1/deployments/wp/instances/app.wp.test/config${query}`, {token: tokens['app.wp.test']})
  const dbPhonesHome = () => server.as('wp', tokens['db.wp.test'], '127.0.0.7').putFacts('db.wp.test', {})

  it('/roles and /hosts carry an ETag, and answer 304 to If-None-Match with it until the map changes', async () => {
    for (const route of ['roles', 'hosts']) {
      const get = (etag?: string) =>
        raw(server.url, `/v1/deployments/wp/instances/app.wp.test/${route}`, {
          token: tokens['app.wp.test'],
          ...(etag ? {headers: {'if-none-match': etag}} : {}),
        })
      const first = await get()
      expect(first.status).toBe(200)
      const etag = first.headers.etag!
      expect(etag).toMatch(/^"[A-Za-z0-9_-]+"$/)
      const unchanged = await get(etag)
      expect(unchanged.status).toBe(304)
      expect(unchanged.body).toBe('')
      expect(unchanged.headers.etag).toBe(etag)
      expect((await get(`"other", W/${etag}`)).status).toBe(304)
      expect((await get('"other"')).status).toBe(200)
    }
    const before = (
      await raw(server.url, '/v1/deployments/wp/instances/app.wp.test/roles', {token: tokens['app.wp.test']})
    ).headers.etag!
    await dbPhonesHome()
    const after = await raw(server.url, '/v1/deployments/wp/instances/app.wp.test/roles', {
      token: tokens['app.wp.test'],
      headers: {'if-none-match': before},
    })
    expect(after.status).toBe(200)
    expect(after.body).toContain('db.wp.test 127.0.0.7')
    expect(after.headers.etag).not.toBe(before)
  })

  it('after a phone-home, a client that names its version gets the delta; one the server does not know, the map', async () => {
    const held = (await config('')).json() as {
      roles: Record<string, Array<{name: string; ip?: string}>>
      rolesVersion: string
    }
    expect(held.rolesVersion).toBe(rolesVersionOf(held.roles))

    const unchanged = (await config(`?roles=since:${held.rolesVersion}`)).json()
    expect(unchanged.roles).toBeUndefined()
    expect(unchanged.rolesDelta).toEqual({from: held.rolesVersion, to: held.rolesVersion})

    const waiting = config(`?wait=20&roles=since:${held.rolesVersion}`)
    await new Promise((resolve) => setTimeout(resolve, 200))
    await dbPhonesHome()
    const answer = await waiting
    expect(answer.status).toBe(200)
    const {rolesDelta, rolesVersion, roles} = answer.json() as {
      rolesDelta: RolesDelta
      rolesVersion: string
      roles?: unknown
    }
    expect(roles).toBeUndefined()
    expect(rolesDelta).toEqual({from: held.rolesVersion, to: rolesVersion, addresses: {'db.wp.test': '127.0.0.7'}})
    const full = (await config('')).json()
    expect(full.rolesVersion).toBe(rolesVersion)
    expect(applyRolesDelta(held.roles, rolesDelta)).toEqual(full.roles)

    const unknown = (await config('?roles=since:AAAAAAAAAAAAAAAAAAAAAA')).json()
    expect(unknown.rolesDelta).toBeUndefined()
    expect(unknown.roles).toEqual(full.roles)
    expect(unknown.rolesVersion).toBe(rolesVersion)

    expect((await config('?roles=since:not%20a%20version')).status).toBe(400)
    const left = (await config('?roles=false')).json()
    expect(left.roles).toEqual({})
    expect(left.rolesVersion).toBeUndefined()
  })

  // A delta of a few hundred new members is sent from its shared buffer, not as text: it must arrive the same.
  it('a large delta (hundreds of new members) arrives whole and rebuilds the current map', async () => {
    const held = (await config('')).json() as {
      roles: Record<string, Array<{name: string; ip?: string}>>
      rolesVersion: string
    }
    const more = Array.from({length: 400}, (_, i) => ({
      id: `app-with-a-longer-name-${String(i).padStart(4, '0')}.wp.test`,
      role: 'appserver',
      services: [],
    }))
    await server.admin('wp').register({...seed000, instances: [...seed000.instances, ...more]})
    const answer = await config(`?roles=since:${held.rolesVersion}`)
    expect(answer.status).toBe(202)
    expect(Number(answer.headers['content-length'])).toBe(Buffer.byteLength(answer.body))
    const {rolesDelta, rolesVersion} = answer.json() as {rolesDelta: RolesDelta; rolesVersion: string}
    expect(JSON.stringify(rolesDelta).length).toBeGreaterThan(16 * 1024)
    const full = (await config('')).json()
    expect(rolesVersion).toBe(full.rolesVersion)
    expect(applyRolesDelta(held.roles, rolesDelta)).toEqual(full.roles)
  })

  it('the TS client keeps the map, applies the deltas it gets, and fetches it whole when what it rebuilt does not match', async () => {
    const app = server.as('wp', tokens['app.wp.test'])
    const first = await app.getConfig('app.wp.test')
    expect(first.status).toBe(202)
    const version = app.heldRoles!.version
    const waiting = app.getConfig('app.wp.test', {wait: 20})
    await new Promise((resolve) => setTimeout(resolve, 200))
    await dbPhonesHome()
    const answer = await waiting
    const expected = {'service:mysql': [{name: 'db.wp.test', ip: '127.0.0.7'}], appserver: [{name: 'app.wp.test'}]}
    expect(answer.status).toBe(200)
    expect(answer.config.roles).toEqual(expected)
    expect(answer.config.rolesVersion).toBe(rolesVersionOf(expected))
    expect(app.heldRoles!.version).not.toBe(version)
    expect(app.heldRoles!.map).toEqual(expected)

    // A held map that does not match its version: the delta rebuilds something else, so the map is fetched whole.
    app.heldRoles!.map['service:mysql'].push({name: 'stray'})
    await server.admin('wp').register({
      ...seed000,
      instances: [...seed000.instances, {id: 'app2.wp.test', role: 'appserver', services: []}],
    })
    const again = await app.getConfig('app.wp.test')
    expect(again.config.roles).toEqual({...expected, appserver: [{name: 'app.wp.test'}, {name: 'app2.wp.test'}]})
    expect(app.heldRoles!.version).toBe(again.config.rolesVersion)
  })
})

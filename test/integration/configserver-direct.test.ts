/**
 * Phone-homes answered below fastify (direct.ts), over real HTTP on loopback and a real SQLite
 * state: the direct handler takes only plain phone-homes and hands everything else to fastify
 * unread, and what it takes it answers exactly as the fastify route does. The comparison runs each
 * step twice on one server: over HTTP for one instance (the direct path) and through fastify's
 * `inject` for its twin (the route), then compares the answers.
 */
import fs from 'node:fs'
import http from 'node:http'
import net, {type AddressInfo} from 'node:net'
import fc from 'fast-check'
import {afterEach, describe, expect, it} from 'vitest'
import {buildApp} from '../../src/configserver/app.js'
import {createContext, type ServerContext} from '../../src/configserver/context.js'
import {DirectPhoneHome} from '../../src/configserver/direct.js'
import {AuthFailureLimiter} from '../../src/configserver/ratelimit.js'
import {SqliteStore} from '../../src/configserver/sqlitestore.js'
import {hashToken, newToken} from '../../src/configserver/tokens.js'
import {tempDir} from './configserver-fixtures.js'

type Answer = {status: number; headers: Record<string, string | string[] | undefined>; body: string}

interface Rig {
  url: string
  admin: string
  context: ServerContext
  /** The urls of the requests the direct handler handed on to fastify. */
  handed: string[]
  direct: DirectPhoneHome
  inject(method: string, url: string, headers: Record<string, string>, body?: string): Promise<Answer>
  close(): Promise<void>
}

const cleanup: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const close of cleanup.splice(0)) await close()
})

/** The server's wiring (server.ts), with the handler fastify gets from the direct one watched. */
async function rig(logLines?: string[]): Promise<Rig> {
  const dir = tempDir('nodeset-direct-')
  const store = new SqliteStore(dir)
  const context = await createContext(store)
  const admin = newToken()
  const adminHash = hashToken(admin)
  const stream = {write: (line: string) => logLines?.push(line)}
  const app = buildApp({
    context,
    adminHash,
    limiter: new AuthFailureLimiter(20),
    lingerMs: 200,
    ...(logLines ? {fastify: {logger: {level: 'info', stream}}} : {}),
  })
  await app.ready()
  const handed: string[] = []
  let next = 0
  const direct = new DirectPhoneHome({
    context,
    adminHash,
    lingerMs: 200,
    ...(logLines ? {requestLog: {genReqId: () => `direct-${++next}`, log: (reqId) => app.log.child({reqId})}} : {}),
  })
  const server = http.createServer(
    direct.wrap((req, res) => {
      handed.push(req.url ?? '')
      app.routing(req, res)
    }),
  )
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const close = async () => {
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
    await app.close()
    await store.close()
    fs.rmSync(dir, {recursive: true, force: true})
  }
  cleanup.push(close)
  return {
    url,
    admin,
    context,
    handed,
    direct,
    async inject(method, url, headers, body) {
      const r = await app.inject({
        method: method as 'PUT',
        url,
        headers,
        ...(body === undefined ? {} : {payload: body}),
      })
      return {status: r.statusCode, headers: r.headers as Answer['headers'], body: r.body}
    },
    close,
  }
}

function send(base: string, method: string, path: string, headers: Record<string, string>, body?: string) {
  return new Promise<Answer>((resolve, reject) => {
    const request = http.request(`${base}${path}`, {method, headers, agent: false}, (response) => {
      const chunks: Buffer[] = []
      response.on('data', (c: Buffer) => chunks.push(c))
      response.on('end', () =>
        resolve({status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks).toString()}),
      )
    })
    request.on('error', reject)
    request.end(body)
  })
}

const instances = ['A1', 'A2', 'B1', 'B2'].map((id) => ({
  id,
  role: id.startsWith('A') ? 'service:db' : 'appserver',
  services: [{name: 'svc', params: {}, provides: [], after: []}],
}))

async function registered(r: Rig): Promise<Record<string, string>> {
  const answer = await r.inject(
    'PUT',
    '/v1/deployments/d',
    {authorization: `Bearer ${r.admin}`, 'content-type': 'application/json'},
    JSON.stringify({instances}),
  )
  expect(answer.status).toBe(201)
  return JSON.parse(answer.body).tokens
}

const factsPath = (id: string, query = '') => `/v1/deployments/d/instances/${id}/facts${query}`
const json = {'content-type': 'application/json'}
const bearer = (token: string) => ({authorization: `Bearer ${token}`})

/**
 * An answer with what differs between twins by design (their ids, fresh tokens, the Date) made alike.
 * The twins' ids have one length and tokens another, so `content-length` is compared as it is.
 */
function comparable(answer: Answer, id: string) {
  // Tokens first: a random token may hold the id's characters, which must not be renamed inside it.
  const body = answer.body.replace(/"token":"[A-Za-z0-9_-]{43}"/g, '"token":"<token>"').replaceAll(id, '<id>')
  const headers = {...answer.headers}
  for (const name of ['date', 'connection', 'keep-alive', 'transfer-encoding']) delete headers[name]
  return {status: answer.status, headers, body}
}

describe('phone-homes below fastify', () => {
  it('answers every kind of phone-home as the fastify route does, step by step', async () => {
    const r = await rig()
    const tokens = await registered(r)
    const held: Record<string, string> = {...tokens}
    const own = (id: string) => ({...json, ...bearer(tokens[id])})
    /** One step for the twins: A1 over HTTP (the direct path), A2 through the route; the answers compared. */
    const twinStep = async (
      name: string,
      headers: (id: string) => Record<string, string>,
      body: string,
      query = '',
    ) => {
      const viaDirect = await send(r.url, 'PUT', factsPath('A1', query), headers('A1'), body)
      const viaRoute = await r.inject('PUT', factsPath('A2', query), headers('A2'), body)
      expect(comparable(viaDirect, 'A1'), name).toEqual(comparable(viaRoute, 'A2'))
      for (const [id, answer] of [
        ['A1', viaDirect],
        ['A2', viaRoute],
      ] as const) {
        const token = /"token":"([A-Za-z0-9_-]{43})"/.exec(answer.body)?.[1]
        if (token) held[id] = token
      }
    }
    const steps: Array<{name: string; headers?: (id: string) => Record<string, string>; body: string; query?: string}> =
      [
        {name: 'first phone-home (exchange)', body: '{"facts":{"hostname":"h","n":1}}'},
        {name: 'retry with the bootstrap token', body: '{"facts":{"ssh_host_keys":["ssh-ed25519 AAAA x"]}}'},
        {
          name: 'charset in the type',
          headers: (id) => ({'content-type': 'application/json; charset=utf-8', ...bearer(tokens[id])}),
          body: '{"facts":{"up":true}}',
        },
        {name: 'not JSON', body: '{"facts":'},
        {name: 'prototype poisoning', body: '{"facts":{},"__proto__":{"admin":true}}'},
        {name: 'constructor poisoning', body: '{"facts":{},"constructor":{"prototype":{"a":1}}}'},
        {name: 'an unknown field', body: '{"facts":{},"extra":1}'},
        {name: 'a nested fact', body: '{"facts":{"a":{"b":1}}}'},
        {name: 'the ip fact', body: '{"facts":{"ip":"10.9.9.9"}}'},
        {name: 'an array', body: '[1]'},
        {
          name: 'too many facts (413 from the store)',
          body: JSON.stringify({facts: Object.fromEntries(Array.from({length: 300}, (_, i) => [`k${i}`, i]))}),
        },
        {name: 'the admin token', headers: () => ({...json, ...bearer(r.admin)}), body: '{"facts":{"by":"admin"}}'},
        {name: 'a query string', body: '{"facts":{}}', query: '?x=1'},
        {
          name: 'text/plain',
          headers: (id) => ({'content-type': 'text/plain', ...bearer(tokens[id])}),
          body: '{"facts":{}}',
        },
        {name: 'no token', headers: () => json, body: '{"facts":{}}'},
        {name: 'a wrong token', headers: () => ({...json, ...bearer(newToken())}), body: '{"facts":{}}'},
        {name: "another instance's token", headers: () => ({...json, ...bearer(tokens.B1)}), body: '{"facts":{}}'},
      ]
    for (const step of steps) await twinStep(step.name, step.headers ?? own, step.body, step.query)
    // The node tokens: the first use goes through fastify (it records the use), later ones need not;
    // once used, the bootstrap token is refused.
    const nodeTokens = {...held}
    const byNode = (id: string) => ({...json, ...bearer(nodeTokens[id])})
    await twinStep('first use of the node token', byNode, '{"facts":{"r":1}}')
    await twinStep('later use of the node token', byNode, '{"facts":{"r":1}}')
    await twinStep('the bootstrap token after the use', own, '{"facts":{"r":1}}')
    // Both paths left the twins' state alike: facts, address, exchange and first use.
    const registration = r.context.registry.get('d')!
    const [a1, a2] = ['A1', 'A2'].map((id) => registration.instance(id)!)
    expect(a1.facts).toEqual(a2.facts)
    expect(a1.facts).toMatchObject({hostname: 'h', n: 1, up: true, by: 'admin', r: 1})
    expect([a1.address, a1.exchangedAt !== undefined, a1.nodeTokenUsedAt !== undefined]).toEqual([
      a2.address,
      a2.exchangedAt !== undefined,
      a2.nodeTokenUsedAt !== undefined,
    ])
    expect(a1.nodeTokenUsedAt).toBeDefined()
  })

  it('answers any body as the route does (property)', async () => {
    const r = await rig()
    await registered(r)
    const factValue = fc.oneof(
      fc.string({maxLength: 20}),
      fc.integer(),
      fc.boolean(),
      fc.array(fc.string(), {maxLength: 3}),
      fc.constant(null),
      fc.object({maxDepth: 1}),
    )
    const factKey = fc.oneof(
      fc.constantFrom('hostname', 'ip', 'a.b', '__proto__', 'constructor', '1x', 'k-1'),
      fc.string({maxLength: 8}),
    )
    const bodyText = fc.oneof(
      fc.dictionary(factKey, factValue, {maxKeys: 4}).map((facts) => JSON.stringify({facts})),
      fc.json({maxDepth: 2}),
      fc.string({maxLength: 30}),
      fc
        .dictionary(factKey, factValue, {maxKeys: 3})
        .map((facts) => `{"facts":${JSON.stringify(facts)},"__proto__":{"x":1}}`),
    )
    await fc.assert(
      // A twin's id inside the body would be told apart by `comparable`, which renames the ids in the answers.
      fc.asyncProperty(
        bodyText.filter((text) => !/A1|A2/.test(text)),
        async (text) => {
          const headers = {...json, ...bearer(r.admin)}
          const viaDirect = await send(r.url, 'PUT', factsPath('A1'), headers, text)
          const viaRoute = await r.inject('PUT', factsPath('A2'), headers, text)
          expect(comparable(viaDirect, 'A1')).toEqual(comparable(viaRoute, 'A2'))
          expect(viaDirect.status).toBeLessThan(500)
        },
      ),
      {numRuns: 150},
    )
    const registration = r.context.registry.get('d')!
    expect(registration.instance('A1')!.facts).toEqual(registration.instance('A2')!.facts)
  })

  it('takes plain phone-homes itself and hands everything else to fastify unread', async () => {
    const r = await rig()
    const tokens = await registered(r)
    const body = '{"facts":{"hostname":"h"}}'
    const taken = async (path: string, headers: Record<string, string>, method = 'PUT') => {
      const before = r.handed.length
      const answer = await send(r.url, method, path, headers, body)
      return {taken: r.handed.length === before, status: answer.status}
    }
    expect(await taken(factsPath('B1'), {...json, ...bearer(tokens.B1)})).toEqual({taken: true, status: 200})
    expect(await taken(factsPath('B1'), {...json, ...bearer(r.admin)})).toEqual({taken: true, status: 200})
    expect(await taken(factsPath('B1'), {...json, ...bearer(tokens.B2)})).toEqual({taken: false, status: 403})
    expect(await taken(factsPath('B1'), {...json, ...bearer(newToken())})).toEqual({taken: false, status: 401})
    expect(await taken(factsPath('B1'), json)).toEqual({taken: false, status: 401})
    expect(await taken(factsPath('B1', '?a=b'), {...json, ...bearer(tokens.B1)})).toEqual({taken: false, status: 200})
    // fastify reads text/plain as a string, which the route refuses.
    expect(await taken(factsPath('B1'), {'content-type': 'text/plain', ...bearer(tokens.B1)})).toEqual({
      taken: false,
      status: 400,
    })
    expect(await taken(factsPath('B1'), {...json, ...bearer(tokens.B1)}, 'POST')).toEqual({taken: false, status: 404})
    expect(await taken('/v1/deployments/d/instances/B%31/facts', {...json, ...bearer(tokens.B1)})).toMatchObject({
      taken: false,
    })
    expect(await taken(factsPath('B1'), {...json, ...bearer(tokens.B1), 'transfer-encoding': 'chunked'})).toMatchObject(
      {
        taken: false,
        status: 200,
      },
    )
    // A node token is taken once its first use is recorded (through fastify's auth, which records it).
    const exchanged = await send(r.url, 'PUT', factsPath('B2'), {...json, ...bearer(tokens.B2)}, body)
    const node = JSON.parse(exchanged.body).token as string
    expect(await taken(factsPath('B2'), {...json, ...bearer(node)})).toEqual({taken: false, status: 200})
    expect(await taken(factsPath('B2'), {...json, ...bearer(node)})).toEqual({taken: true, status: 200})
    // While the server closes, every request goes to fastify (which answers 503 there).
    r.direct.close()
    expect(await taken(factsPath('B2'), {...json, ...bearer(node)})).toMatchObject({taken: false})
  })

  it('a client that goes away mid-body changes nothing and holds nothing', async () => {
    const r = await rig()
    const tokens = await registered(r)
    const {port} = new URL(r.url)
    const body = '{"facts":{"hostname":"cut"}}'
    // Half the body, then the connection cut: 50 times, over and over, before the next one.
    for (let i = 0; i < 50; i++) {
      const socket = net.connect(Number(port), '127.0.0.1')
      await new Promise((resolve) => socket.once('connect', resolve))
      socket.write(
        `PUT ${factsPath('B1')} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${tokens.B1}\r\n` +
          `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 10)}`,
      )
      await new Promise((resolve) => setTimeout(resolve, 2))
      socket.destroy()
    }
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect(r.handed).toEqual([])
    const instance = r.context.registry.get('d')!.instance('B1')!
    expect([instance.facts.hostname, instance.exchangedAt]).toEqual([undefined, undefined])
    // The bootstrap token still does its one exchange, on the direct path.
    const answer = await send(r.url, 'PUT', factsPath('B1'), {...json, ...bearer(tokens.B1)}, body)
    expect([answer.status, JSON.parse(answer.body).token]).toEqual([200, expect.stringMatching(/^[A-Za-z0-9_-]{43}$/)])
    expect(r.handed).toEqual([])
    expect(instance.facts.hostname).toBe('cut')
  })

  it('logs what it answers as fastify does, with no token in the log', async () => {
    const lines: string[] = []
    const r = await rig(lines)
    const tokens = await registered(r)
    const before = r.handed.length
    const answer = await send(r.url, 'PUT', factsPath('B1'), {...json, ...bearer(tokens.B1)}, '{"facts":{"k":"v"}}')
    expect(answer.status).toBe(200)
    expect(r.handed.length).toBe(before)
    const records = lines.map((line) => JSON.parse(line)).filter((l) => /^direct-/.test(l.reqId ?? ''))
    expect(records.map((l) => l.msg)).toEqual(['incoming request', 'request completed'])
    expect(records[0].req).toMatchObject({method: 'PUT', url: factsPath('B1'), remoteAddress: '127.0.0.1'})
    expect(records[1].res).toEqual({statusCode: 200})
    expect(typeof records[1].responseTime).toBe('number')
    const text = lines.join('\n')
    expect(text).not.toContain(tokens.B1)
    expect(text).not.toContain(JSON.parse(answer.body).token)
  })
})

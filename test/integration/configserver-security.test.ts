import {execFileSync} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {Writable} from 'node:stream'
import {afterEach, describe, expect, it} from 'vitest'
import {ConfigServerClient} from '../../src/configserver/client.js'
import type {RegisterRequest} from '../../src/configserver/protocol.js'
import {
  failure,
  raw,
  rawBytes,
  seed000,
  seed004,
  type TestServer,
  tempDir,
  testServer,
} from './configserver-fixtures.js'

let server: TestServer | undefined
afterEach(async () => {
  await server?.close()
  server = undefined
})

async function seeded(opts = {}): Promise<{s: TestServer; tokens: Record<string, string>}> {
  server = await testServer(opts)
  const {tokens} = await server.admin('d4').register(seed004)
  return {s: server, tokens}
}

describe('config server: who may do what', () => {
  it('refuses requests without a token, or with a wrong one, with 401', async () => {
    const {s} = await seeded()
    const none = await raw(s.url, '/v1/deployments/d4/status')
    expect(none.status).toBe(401)
    expect(none.headers['www-authenticate']).toBe('Bearer')
    expect(none.json().error).toMatch(/Authorization: Bearer/)
    const wrong = await raw(s.url, '/v1/deployments/d4/instances/I1/config', {token: 'x'.repeat(43)})
    expect(wrong.status).toBe(401)
    expect(
      (await raw(s.url, '/v1/deployments/d4/status', {headers: {authorization: `Basic ${s.adminToken}`}})).status,
    ).toBe(401)
  })

  it('an instance reaches only itself: not another instance, not admin routes, not another deployment', async () => {
    const {s, tokens} = await seeded()
    const other = await s.admin('wp').register(seed000)
    const i1 = s.as('d4', tokens.I1)
    const forbidden = [
      i1.getConfig('I2'),
      i1.putFacts('I2', {hostname: 'evil'}),
      i1.reportService('I2', 'S2', {state: 'succeeded', outputs: {token: 'forged'}}),
      i1.roleMap('I2'),
      i1.hostsBlock('I2'),
      i1.register(seed004),
      i1.status(),
      i1.state(),
      i1.graph(),
      i1.forgetInstance('I2'),
      i1.deleteDeployment(),
      s.as('wp', tokens.I1).getConfig('app.wp.test'),
      s.as('d4', other.tokens['db.wp.test']).getConfig('I1'),
    ]
    for (const call of forbidden) {
      const error = await failure(call)
      expect(error.status).toBe(403)
    }
    // Nothing was changed by the attempts.
    const state = await s.admin('d4').state()
    expect(state.instances.find((i) => i.id === 'I2')).toMatchObject({facts: {}, outputs: {}})
    // …and the instance's own routes work.
    expect((await i1.putFacts('I1', {hostname: 'i1'})).ip).toBe('127.0.0.1')
    expect((await i1.getConfig('I1', {service: 'S2'})).status).toBe(200)
  })

  it('checks the token before reading the body', async () => {
    const {s, tokens} = await seeded()
    const junk = 'x'.repeat(2 * 1024 * 1024)
    expect((await raw(s.url, '/v1/deployments/d4', {method: 'PUT', body: junk})).status).toBe(401)
    expect((await raw(s.url, '/v1/deployments/d4/instances/I1/facts', {method: 'PUT', body: junk})).status).toBe(401)
    expect((await raw(s.url, '/v1/deployments/d4', {method: 'PUT', body: junk, token: tokens.I1})).status).toBe(403)
    // With the right token the same body is read, and refused for what it is.
    expect(
      (await raw(s.url, '/v1/deployments/d4/instances/I1/facts', {method: 'PUT', body: junk, token: tokens.I1})).status,
    ).toBe(413)
  })

  it('never puts a token in an error message', async () => {
    const {s, tokens} = await seeded()
    const error = await failure(s.as('d4', tokens.I1).getConfig('I2'))
    expect(error.message).not.toContain(tokens.I1)
    const refused = await failure(
      new ConfigServerClient({url: s.url, deployment: 'd4', token: `${tokens.I1}x`}).status(),
    )
    expect(refused.message).not.toContain(tokens.I1)
    expect(JSON.stringify(refused.body)).not.toContain(tokens.I1)
  })

  it('answers repeated authentication failures with 429 and Retry-After; a valid token is never limited', async () => {
    const {s} = await seeded({authFailureLimit: 5})
    const guess = (i: number) => `guess-${i}-${'x'.repeat(40)}`
    for (let i = 0; i < 5; i++)
      expect((await raw(s.url, '/v1/deployments/d4/status', {token: guess(i)})).status).toBe(401)
    const blocked = await raw(s.url, '/v1/deployments/d4/status', {token: guess(5)})
    expect(blocked.status).toBe(429)
    expect(Number(blocked.headers['retry-after'])).toBeGreaterThan(0)
    expect(blocked.json().error).toMatch(/too many failed authentications from this address .*; retry in \d+ s/)
    // The admin, from the same address, is served.
    expect((await raw(s.url, '/v1/deployments/d4/status', {token: s.adminToken})).status).toBe(200)
    // Another address is not affected.
    expect((await raw(s.url, '/v1/deployments/d4/status', {token: guess(6), localAddress: '127.0.0.2'})).status).toBe(
      401,
    )
  })
})

describe('config server: bad input is a 4xx, never a 500', () => {
  it('odd ids in paths: traversal, NUL, too long, not UTF-8', async () => {
    const {s} = await seeded()
    const paths = [
      '/v1/deployments/../status',
      '/v1/deployments/..%2f..%2fetc/status',
      '/v1/deployments/%2e%2e/status',
      '/v1/deployments/a%00b/status',
      `/v1/deployments/${'a'.repeat(254)}/status`,
      `/v1/deployments/${'a'.repeat(5000)}/status`,
      '/v1/deployments/%ff%fe/status',
      '/v1/deployments/%c3%28/status',
      '/v1/deployments/d4/instances/%2e%2e/config',
      '/v1/deployments/d4/instances/I1%00/config',
      '/v1/deployments/d4/instances/I1/services/..%2f..%2fS1',
      '/v1/deployments/d%C3%A9/status',
    ]
    for (const p of paths) {
      for (const method of ['GET', 'PUT', 'DELETE']) {
        const answer = await raw(s.url, p, {method, token: s.adminToken, ...(method === 'PUT' ? {body: '{}'} : {})})
        expect(answer.status, `${method} ${p.slice(0, 60)}`).toBeGreaterThanOrEqual(400)
        expect(answer.status, `${method} ${p.slice(0, 60)}`).toBeLessThan(500)
      }
    }
    const invalid = await raw(s.url, '/v1/deployments/a%00b/status', {token: s.adminToken})
    expect(invalid.status).toBe(400)
    expect(invalid.json().error).toMatch(/the deployment id in the path is invalid/)
    for (const bytes of [
      'GET /v1/deployments/\xff\xfe/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
      'GET /v1/deployments/a\x00/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
    ]) {
      const status = await rawBytes(s.url, Buffer.from(bytes, 'latin1'))
      expect(status).toBeGreaterThanOrEqual(400)
      expect(status).toBeLessThan(500)
    }
    // Still serving.
    expect((await s.admin('d4').status()).deployment).toBe('d4')
  })

  it('unknown fields, wrong types, bad JSON, prototype pollution, a client-sent ip: 400 with what is wrong', async () => {
    const {s, tokens} = await seeded()
    const facts = (body: string) =>
      raw(s.url, '/v1/deployments/d4/instances/I1/facts', {method: 'PUT', token: tokens.I1, body})
    const unknown = await facts('{"facts":{},"extra":1}')
    expect(unknown.status).toBe(400)
    expect(unknown.json()).toMatchObject({
      error: 'invalid facts',
      issues: [{path: '(body)', message: expect.stringMatching(/extra/)}],
    })
    const typed = await facts('{"facts":{"hostname":{"nested":true}}}')
    expect(typed.status).toBe(400)
    expect(typed.json().issues).toEqual([expect.objectContaining({path: 'facts.hostname'})])
    expect((await facts('{"facts":')).status).toBe(400)
    expect((await facts('{"facts":{},"__proto__":{"admin":true}}')).status).toBe(400)
    const ip = await facts('{"facts":{"ip":"10.9.9.9"}}')
    expect(ip.status).toBe(400)
    expect(ip.json().error).toMatch(/do not send the fact "ip"/)
    const report = await raw(s.url, '/v1/deployments/d4/instances/I1/services/S2', {
      method: 'PUT',
      token: tokens.I1,
      body: '{"state":"done"}',
    })
    expect(report.status).toBe(400)
    const registration = await raw(s.url, '/v1/deployments/x', {
      method: 'PUT',
      token: s.adminToken,
      body: JSON.stringify({instances: [{id: 'a', role: 'r', services: [], color: 'red'}]}),
    })
    expect(registration.status).toBe(400)
    expect(registration.json().issues).toEqual([expect.objectContaining({path: 'instances.0'})])
    const query = await raw(s.url, '/v1/deployments/d4/instances/I1/config?wait=soon', {token: tokens.I1})
    expect(query.status).toBe(400)
    expect((await raw(s.url, '/v1/deployments/d4/instances/I1/config?color=red', {token: tokens.I1})).status).toBe(400)
    expect(
      (await raw(s.url, '/v1/deployments/d4/instances/I1/config?service=S1&service=S2', {token: tokens.I1})).status,
    ).toBe(400)
    expect((await raw(s.url, '/v1/nothing', {token: tokens.I1})).status).toBe(404)
  })

  it('limits body sizes (413)', async () => {
    const {s, tokens} = await seeded()
    const big = JSON.stringify({
      facts: Object.fromEntries(Array.from({length: 100}, (_, i) => [`k${i}`, 'x'.repeat(16000)])),
    })
    const answer = await raw(s.url, '/v1/deployments/d4/instances/I1/facts', {
      method: 'PUT',
      token: tokens.I1,
      body: big,
    })
    expect(answer.status).toBe(413)
  })
})

describe('config server: addresses, TLS, secrets', () => {
  it('takes X-Forwarded-For only with trustProxy', async () => {
    const {s, tokens} = await seeded()
    const put = () =>
      raw(s.url, '/v1/deployments/d4/instances/I1/facts', {
        method: 'PUT',
        token: tokens.I1,
        body: '{"facts":{}}',
        headers: {'x-forwarded-for': '203.0.113.9'},
      })
    expect((await put()).json().ip).toBe('127.0.0.1')
    await s.close()
    server = await testServer({stateDir: s.stateDir, trustProxy: true})
    const proxied = await raw(server.url, '/v1/deployments/d4/instances/I1/facts', {
      method: 'PUT',
      token: tokens.I1,
      body: '{"facts":{}}',
      headers: {'x-forwarded-for': '203.0.113.9'},
    })
    expect(proxied.json().ip).toBe('203.0.113.9')
  })

  it('serves HTTPS with the given certificate; a client that does not trust it is refused', async () => {
    const dir = tempDir()
    const cert = path.join(dir, 'cert.pem')
    const key = path.join(dir, 'key.pem')
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
        '-keyout',
        key,
        '-out',
        cert,
      ],
      {stdio: 'ignore'},
    )
    server = await testServer({tls: {cert, key}})
    expect(server.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/)
    const trusted = new ConfigServerClient({
      url: server.url,
      deployment: 'wp',
      token: server.adminToken,
      ca: fs.readFileSync(cert),
    })
    expect(Object.keys((await trusted.register(seed000)).tokens)).toHaveLength(2)
    trusted.close()
    const untrusting = new ConfigServerClient({url: server.url, deployment: 'wp', token: server.adminToken})
    const error = await failure(untrusting.status())
    expect(error.status).toBe(0)
    expect(error.message).toMatch(/self-signed certificate/)
    untrusting.close()
  })

  it('keeps secrets and tokens out of the logs and out of status', async () => {
    const lines: string[] = []
    const stream = new Writable({
      write(chunk, _encoding, done) {
        lines.push(String(chunk))
        done()
      },
    })
    server = await testServer({logger: {level: 'trace', stream}})
    const secrets = {input: 'input-S3cret-value', constant: 'constant-S3cret-value', output: 'output-S3cret-value'}
    const request: RegisterRequest = {
      instances: [
        {
          id: 'db',
          role: 'service:db',
          services: [{name: 'db', params: {root_password: {value: secrets.constant}}, provides: ['password']}],
        },
        {
          id: 'app',
          role: 'appserver',
          services: [
            {name: 'app', params: {db_pw: {template: '{{output "db" "password"}}'}, key: {input: true, secret: true}}},
          ],
        },
      ],
      inputs: {app: {app: {key: secrets.input}}},
    }
    const {tokens} = await server.admin('s').register(request)
    const db = server.as('s', tokens.db)
    const app = server.as('s', tokens.app)
    await db.putFacts('db', {hostname: 'db'})
    await db.reportService('db', 'db', {state: 'succeeded', exitCode: 0, outputs: {password: secrets.output}})
    const config = await app.getConfig('app', {wait: 5})
    expect(config.config.services.app.params).toEqual({db_pw: secrets.output, key: secrets.input})
    await failure(app.getConfig('db'))
    await failure(new ConfigServerClient({url: server.url, deployment: 's', token: 'A'.repeat(43)}).status())
    const status = JSON.stringify(await server.admin('s').status())
    const log = lines.join('')
    expect(log).toContain('"url":"/v1/deployments/s/instances/app/config?wait=5"')
    for (const text of [log, status]) {
      for (const secret of [...Object.values(secrets), server.adminToken, tokens.db, tokens.app, 'A'.repeat(43)])
        expect(text).not.toContain(secret)
    }
  })
})

describe('config server: admin token', () => {
  it('is generated once into the state dir (0600) and kept across restarts', async () => {
    const stateDir = tempDir()
    server = await testServer({stateDir})
    const first = server.adminToken
    expect(first).toMatch(/^[A-Za-z0-9_-]{43}$/)
    const file = path.join(stateDir, 'admin-token')
    expect(fs.readFileSync(file, 'utf8').trim()).toBe(first)
    expect(fs.statSync(file).mode & 0o777).toBe(0o600)
    expect(fs.statSync(path.join(stateDir, 'configserver.sqlite')).mode & 0o777).toBe(0o600)
    await server.close()
    server = await testServer({stateDir})
    expect(server.adminToken).toBe(first)
    await server.close()
    fs.chmodSync(file, 0o644)
    await expect(testServer({stateDir})).rejects.toThrow(`${file} can be read by other users; run: chmod 600 ${file}`)
    server = undefined
  })
})

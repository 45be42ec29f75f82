/**
 * The config server under a hostile network, over real HTTP on loopback and real SQLite: templates
 * that cannot render, reports racing removals, slow and stalled requests, floods of connections, NAT'd
 * nodes next to a token guesser, forged X-Forwarded-For, damaged state files, oversized facts, secret
 * constants, unusable admin tokens, and the file-descriptor limit. Loops are bounded; every request
 * goes to 127.0.0.x.
 */
import {type ChildProcess, spawn} from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import {Writable} from 'node:stream'
import Database from 'better-sqlite3'
import {afterEach, describe, expect, it} from 'vitest'
import type {RegisterRequest} from '../../src/configserver/protocol.js'
import {startConfigServer} from '../../src/configserver/server.js'
import {adminTokenFrom} from '../../src/configserver/auth.js'
import {failure, raw, seed000, type TestServer, tempDir, testServer} from './configserver-fixtures.js'

let server: TestServer | undefined
afterEach(async () => {
  await server?.close()
  server = undefined
})

/** A raw connection: bytes in, what came back, and whether (and how) the server closed it. */
interface Connection {
  socket: net.Socket
  text(): string
  status(): number
  /** Resolves when the server closes the connection; false if it is still open after `ms`. */
  closedWithin(ms: number): Promise<boolean>
}

function connect(url: string, localAddress?: string): Promise<Connection> {
  const {port, hostname} = new URL(url)
  return new Promise((resolve, reject) => {
    const socket = net.connect({port: Number(port), host: hostname, ...(localAddress ? {localAddress} : {})})
    let text = ''
    let closed = false
    const onClose = new Promise<void>((done) => socket.on('close', () => ((closed = true), done())))
    socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')))
    socket.on('error', () => {})
    socket.once('connect', () =>
      resolve({
        socket,
        text: () => text,
        status: () => Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0),
        closedWithin: async (ms) => {
          if (closed) return true
          let timer: NodeJS.Timeout | undefined
          const open = await Promise.race([
            onClose.then(() => false),
            new Promise<boolean>((done) => (timer = setTimeout(() => done(true), ms))),
          ])
          clearTimeout(timer)
          return !open
        },
      }),
    )
    socket.once('error', reject)
  })
}

const head = (method: string, pathname: string, headers: Record<string, string | number>) =>
  `${method} ${pathname} HTTP/1.1\r\nHost: 127.0.0.1\r\n${Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('')}\r\n`

function logLines(): {stream: Writable; lines: string[]} {
  const lines: string[] = []
  const stream = new Writable({
    write(chunk, _encoding, done) {
      lines.push(...String(chunk).trim().split('\n'))
      done()
    },
  })
  return {stream, lines}
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const lb = (template: string): RegisterRequest['instances'][number] => ({
  id: 'lb',
  role: 'balancer',
  services: [{name: 'lb', params: {upstreams: {template}}}],
})
const apps = (...ids: string[]) => ids.map((id) => ({id, role: 'appserver', services: [{name: 'app'}]}))

describe('1. templates that cannot render', () => {
  it('registration refuses them, saying which param and why; nothing is registered', async () => {
    server = await testServer()
    for (const template of ['{{join (ip "a1") ","}}', '{{> upstreams}}', '{{#each}}{{/each}}', '{{log (ip "a1")}}']) {
      const error = await failure(server.admin('d').register({instances: [...apps('a1'), lb(template)]}))
      expect(error.status, template).toBe(400)
      expect(error.diagnostics, template).toEqual([
        expect.objectContaining({message: expect.stringMatching(/^param upstreams of lb: /)}),
      ])
    }
    expect((await failure(server.admin('d').status())).status).toBe(404)
  })

  it('a state that holds one (written before the check) answers 4xx and "failed", and a woken long-poll does not crash the server', async () => {
    const stateDir = tempDir()
    server = await testServer({stateDir})
    const {tokens} = await server.admin('d').register({instances: [...apps('a1'), lb('{{ip "a1"}}')]})
    await server.close()
    const db = new Database(path.join(stateDir, 'configserver.sqlite'))
    const services = [{name: 'lb', params: {upstreams: {template: '{{join (ip "a1") ","}}'}}, provides: [], after: []}]
    db.prepare(`UPDATE instances SET services = ? WHERE id = 'lb'`).run(JSON.stringify(services))
    db.close()
    server = await testServer({stateDir})

    const lbClient = server.as('d', tokens.lb)
    const waiting = failure(lbClient.getConfig('lb', {wait: 30}))
    await sleep(100)
    await server.as('d', tokens.a1).putFacts('a1', {})
    const woken = await waiting
    expect(woken.status).toBe(422)
    expect(woken.message).toMatch(/the configuration of lb cannot be rendered: lb\/upstreams: .*join/)
    expect((await failure(lbClient.getConfig('lb'))).status).toBe(422)
    const status = await server.admin('d').status()
    expect(status.state).toBe('failed')
    expect(status.instances[1].services[0]).toMatchObject({
      status: 'failed',
      message: expect.stringMatching(/param upstreams cannot be rendered: .*join/),
    })
    expect((await server.admin('d').state()).instances[1].services.lb.status).toBe('failed')
    // Registering again with a fixed template repairs it; the server kept serving throughout.
    await server.admin('d').register({instances: [...apps('a1'), lb('{{ip "a1"}}')]})
    expect((await lbClient.getConfig('lb')).config.services.lb.params.upstreams).toBe('127.0.0.1')
  })

  it('a re-registration that completes a waiting config is answered with the new tokens', async () => {
    server = await testServer()
    const each = '{{#each (nodes "appserver")}}{{ip}};{{/each}}'
    const worker = {id: 'w1', role: 'worker', services: [{name: 'work'}]}
    const {tokens} = await server.admin('d').register({instances: [...apps('a1', 'a2'), lb(each)]})
    await server.as('d', tokens.a1).putFacts('a1', {})
    const waiting = server.as('d', tokens.lb).getConfig('lb', {wait: 30})
    await sleep(100)
    // Without a2 the balancer's config is complete: with a template that cannot render, refused before any commit…
    const bad = await failure(
      server
        .admin('d')
        .register({instances: [...apps('a1'), worker, lb('{{#each (nodes "appserver")}}{{join ip}}{{/each}}')]}),
    )
    expect(bad.status).toBe(400)
    expect((await server.admin('d').state()).instances.map((i) => i.id)).toEqual(['a1', 'a2', 'lb'])
    // …and with one that renders, committed, answered with the new instance's token, and the long-poll answered.
    const good = await server.admin('d').register({instances: [...apps('a1'), worker, lb(each)]})
    expect(Object.keys(good.tokens)).toEqual(['w1'])
    const answer = await waiting
    expect(answer.status).toBe(200)
    expect(answer.config.services.lb.params.upstreams).toBe('127.0.0.1;')
  })
})

describe('2. a report racing the removal of its instance', () => {
  it('answers 200 or 404, never 5xx (DELETE of the instance or the deployment, a registration without it)', async () => {
    // Reports after a deletion fail authentication (the tokens went with it): not what this test limits.
    server = await testServer({authFailureLimit: 10_000})
    const deployment = (): RegisterRequest => ({
      instances: [
        {id: 'a', role: 'r', services: [{name: 's', provides: ['out']}]},
        {id: 'b', role: 'r', services: [{name: 's'}]},
      ],
    })
    const removals = {
      instance: () =>
        head('DELETE', '/v1/deployments/race/instances/a', {authorization: `Bearer ${server!.adminToken}`}),
      deployment: () => head('DELETE', '/v1/deployments/race', {authorization: `Bearer ${server!.adminToken}`}),
      registration: () => {
        const body = JSON.stringify({instances: [deployment().instances[1]]})
        return (
          head('PUT', '/v1/deployments/race', {
            authorization: `Bearer ${server!.adminToken}`,
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
          }) + body
        )
      },
    }
    for (const [kind, removal] of Object.entries(removals)) {
      for (let round = 0; round < 5; round++) {
        const {tokens} = await server.admin('race').register({...deployment(), reissueTokens: ['a']})
        const report = JSON.stringify({state: 'succeeded', outputs: {out: String(round)}})
        // Pipelined on one connection, the removal first: both are read in one go, so the report passes
        // authentication before the removal commits, and both writes land in the same group commit.
        const connection = await connect(server.url)
        connection.socket.write(
          removal() +
            head('PUT', '/v1/deployments/race/instances/a/services/s', {
              authorization: `Bearer ${tokens.a}`,
              'content-type': 'application/json',
              'content-length': report.length,
              connection: 'close',
            }) +
            report,
        )
        await connection.closedWithin(5000)
        const statuses = [...connection.text().matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]))
        expect(statuses, `${kind} round ${round}: ${connection.text().slice(0, 600)}`).toHaveLength(2)
        const reported = statuses[1]
        expect([200, 401, 404], `${kind} round ${round}: ${connection.text().slice(0, 600)}`).toContain(reported)
      }
    }
    expect((await server.admin('race').register(deployment())).deployment).toBe('race')
  })
})

describe('3. time limits on requests, and connections per address', () => {
  const timeLimits = {headersMs: 300, bodyIdleMs: 300, requestMs: 1500, lingerMs: 200}

  it('a declared body never sent gets 408 and the connection closed, with a token or without', async () => {
    server = await testServer({timeLimits})
    const {tokens} = await server.admin('wp').register(seed000)
    const facts = '/v1/deployments/wp/instances/db.wp.test/facts'
    const withToken = await connect(server.url)
    withToken.socket.write(
      head('PUT', facts, {
        authorization: `Bearer ${tokens['db.wp.test']}`,
        'content-type': 'application/json',
        'content-length': 100,
      }),
    )
    const without = await connect(server.url)
    without.socket.write(head('PUT', facts, {'content-type': 'application/json', 'content-length': 100}))
    expect(await withToken.closedWithin(5000)).toBe(true)
    expect(withToken.status()).toBe(408)
    // The 401 is answered at once; the connection is closed too, not left to the client.
    expect(await without.closedWithin(5000)).toBe(true)
    expect(without.status()).toBe(401)
  })

  it('a body sent one byte at a time is cut off at the request time limit; stalled headers at the header limit', async () => {
    server = await testServer({timeLimits})
    const {tokens} = await server.admin('wp').register(seed000)
    const trickle = await connect(server.url)
    trickle.socket.write(
      head('PUT', '/v1/deployments/wp/instances/db.wp.test/facts', {
        authorization: `Bearer ${tokens['db.wp.test']}`,
        'content-type': 'application/json',
        'content-length': 1000,
      }),
    )
    let sent = 0
    for (; sent < 60 && !(await trickle.closedWithin(100)); sent++) trickle.socket.write('{')
    expect(sent).toBeLessThan(60)
    expect(trickle.status()).toBe(408)
    const stalled = await connect(server.url)
    stalled.socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n')
    expect(await stalled.closedWithin(5000)).toBe(true)
    // Still serving.
    expect((await raw(server.url, '/healthz')).status).toBe(200)
  })

  it('caps connections per address, says so in the log, and serves the other addresses', async () => {
    const {stream, lines} = logLines()
    server = await testServer({maxConnectionsPerAddress: 5, logger: {level: 'info', stream}})
    const held = await Promise.all(Array.from({length: 8}, () => connect(server!.url, '127.0.0.3')))
    const closed = await Promise.all(held.map((c) => c.closedWithin(1000)))
    expect(closed.filter(Boolean).length).toBe(3)
    expect(
      lines.some((l) => /refused a connection from 127\.0\.0\.3: it has 5 open, the limit per address/.test(l)),
    ).toBe(true)
    expect((await raw(server.url, '/healthz', {localAddress: '127.0.0.4'})).status).toBe(200)
    for (const c of held) c.socket.destroy()
    await sleep(100)
    expect((await raw(server.url, '/healthz', {localAddress: '127.0.0.3'})).status).toBe(200)
  })
})

describe('4. rate limiting that cannot lock out honest nodes', () => {
  it('a guesser behind the same address as honest nodes is limited; the nodes, the admin and /healthz are not', async () => {
    server = await testServer({authFailureLimit: 5})
    const {tokens} = await server.admin('wp').register(seed000)
    const nat = '127.0.0.5'
    const statuses: number[] = []
    for (let i = 0; i < 12; i++) {
      const guess = `guess-${i}-${'x'.repeat(40)}`
      statuses.push(
        (await raw(server.url, '/v1/deployments/wp/instances/app.wp.test/config', {token: guess, localAddress: nat}))
          .status,
      )
    }
    expect(statuses.slice(0, 5)).toEqual([401, 401, 401, 401, 401])
    expect(statuses.at(-1)).toBe(429)
    const db = server.as('wp', tokens['db.wp.test'], nat)
    expect((await db.putFacts('db.wp.test', {})).ip).toBe(nat)
    expect((await server.as('wp', tokens['app.wp.test'], nat).getConfig('app.wp.test')).status).toBe(200)
    expect(
      (await raw(server.url, '/v1/deployments/wp/status', {token: server.adminToken, localAddress: nat})).status,
    ).toBe(200)
    expect((await raw(server.url, '/healthz', {localAddress: nat})).status).toBe(200)
  })

  it('twenty retries of an exchanged bootstrap token lock out neither that node nor its neighbours', async () => {
    server = await testServer({authFailureLimit: 5})
    const {tokens} = await server.admin('wp').register(seed000)
    const nat = '127.0.0.6'
    const first = await raw(server.url, '/v1/deployments/wp/instances/db.wp.test/facts', {
      method: 'PUT',
      token: tokens['db.wp.test'],
      body: '{"facts":{}}',
      localAddress: nat,
    })
    const nodeToken = first.json().token as string
    await raw(server.url, '/v1/deployments/wp/instances/db.wp.test/config', {token: nodeToken, localAddress: nat})
    for (let i = 0; i < 20; i++) {
      const retry = await raw(server.url, '/v1/deployments/wp/instances/db.wp.test/config', {
        token: tokens['db.wp.test'],
        localAddress: nat,
      })
      expect([401, 429]).toContain(retry.status)
    }
    expect(
      (await raw(server.url, '/v1/deployments/wp/instances/db.wp.test/config', {token: nodeToken, localAddress: nat}))
        .status,
    ).toBe(200)
    expect((await server.as('wp', tokens['app.wp.test'], nat).putFacts('app.wp.test', {})).ip).toBe(nat)
  })
})

describe('5. --trust-proxy', () => {
  const putFacts = (s: TestServer, token: string, forwarded: string) =>
    raw(s.url, '/v1/deployments/wp/instances/db.wp.test/facts', {
      method: 'PUT',
      token,
      body: '{"facts":{}}',
      headers: {'x-forwarded-for': forwarded},
    })

  it('takes the right-most untrusted address, and only a literal IP', async () => {
    server = await testServer({trustProxy: true})
    const {tokens} = await server.admin('wp').register(seed000)
    const node = tokens['db.wp.test']
    const junk = await putFacts(server, node, '203.0.113.66 github.com')
    expect(junk.status).toBe(400)
    expect(junk.json().error).toMatch(/X-Forwarded-For/)
    const state = await server.admin('wp').state()
    expect(state.instances[0].facts.ip).toBeUndefined()
    const chained = await putFacts(server, node, '6.6.6.6, 203.0.113.9')
    expect(chained.json().ip).toBe('203.0.113.9')
    await server.close()
    // Two hops: the address the first of the two proxies saw.
    server = await testServer({stateDir: server.stateDir, trustProxy: 2})
    const twoHops = await putFacts(server, (chained.json().token as string) ?? node, '1.1.1.1, 198.51.100.7, 10.0.0.2')
    expect(twoHops.json().ip).toBe('198.51.100.7')
    await server.close()
    // Named proxies: every trusted address from the right is skipped.
    server = await testServer({stateDir: server.stateDir, trustProxy: ['127.0.0.1', '10.0.0.0/8']})
    const named = await putFacts(server, chained.json().token as string, '1.1.1.1, 198.51.100.8, 10.0.0.2')
    expect(named.json().ip).toBe('198.51.100.8')
  })

  it('a client rotating claimed addresses is still limited at the address the proxy saw', async () => {
    server = await testServer({trustProxy: true, authFailureLimit: 5})
    await server.admin('wp').register(seed000)
    const statuses: number[] = []
    for (let i = 0; i < 10; i++) {
      const answer = await raw(server.url, '/v1/deployments/wp/status', {
        token: `guess-${i}-${'x'.repeat(40)}`,
        headers: {'x-forwarded-for': `10.9.9.${i}, 198.51.100.7`},
      })
      statuses.push(answer.status)
    }
    expect(statuses.at(-1)).toBe(429)
  })
})

describe('6. a damaged state file', () => {
  async function filled(): Promise<string> {
    const stateDir = tempDir()
    server = await testServer({stateDir})
    const instances = Array.from({length: 300}, (_, i) => ({
      id: `n${i}`,
      role: 'worker',
      services: [{name: 'work', params: {note: {value: `instance ${i} `.repeat(20)}}}],
    }))
    await server.admin('big').register({instances})
    await server.close()
    server = undefined
    return stateDir
  }

  it('truncated to 0 bytes, or removed: the server refuses to start, naming the file and what to do', async () => {
    const stateDir = await filled()
    const file = path.join(stateDir, 'configserver.sqlite')
    fs.truncateSync(file, 0)
    await expect(startConfigServer({stateDir})).rejects.toThrow(`${file} is empty (0 bytes)`)
    fs.rmSync(file)
    await expect(startConfigServer({stateDir})).rejects.toThrow(`${file} is missing`)
  })

  it('with pages overwritten: the server refuses to start on it', async () => {
    const stateDir = await filled()
    const file = path.join(stateDir, 'configserver.sqlite')
    const size = fs.statSync(file).size
    expect(size).toBeGreaterThan(16 * 4096)
    const fd = fs.openSync(file, 'r+')
    const garbage = Buffer.alloc(4096 * 4, 0x5a)
    fs.writeSync(fd, garbage, 0, garbage.length, 4096 * 2)
    fs.closeSync(fd)
    await expect(startConfigServer({stateDir})).rejects.toThrow(
      new RegExp(`${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} is damaged .*Restore it from a backup`),
    )
  })
})

describe('7. bounds on what one node stores', () => {
  it('facts per instance and outputs per service: 413 with the limit', async () => {
    server = await testServer()
    const keys = ['k0', 'k1', 'k2', 'k3', 'k4', 'k5']
    const {tokens} = await server.admin('b').register({
      instances: [{id: 'n', role: 'r', services: [{name: 's', provides: keys}]}],
    })
    const node = server.as('b', tokens.n)
    const big = 'x'.repeat(16_000)
    // 224 KB of facts is within the bound; 96 KB more is not, nor are 300 keys.
    await node.putFacts('n', Object.fromEntries(Array.from({length: 7}, (_, i) => [`k${i}`, [big, big]])))
    const over = await failure(
      node.putFacts('n', Object.fromEntries(Array.from({length: 3}, (_, i) => [`more${i}`, [big, big]]))),
    )
    expect(over.status).toBe(413)
    expect(over.message).toMatch(/the facts of n would take .*; the limit is 256 KiB/)
    const many = await failure(
      node.putFacts('n', Object.fromEntries(Array.from({length: 300}, (_, i) => [`f${i}`, 1]))),
    )
    expect(many.status).toBe(413)
    expect(many.message).toMatch(/the facts of n would have 30\d keys; the limit is 256/)
    expect(Object.keys((await server.admin('b').state()).instances[0].facts).sort()).toEqual([
      'ip',
      'k0',
      'k1',
      'k2',
      'k3',
      'k4',
      'k5',
      'k6',
    ])
    const value = 'y'.repeat(60_000)
    await node.reportService('n', 's', {state: 'running', outputs: {k0: value, k1: value, k2: value}})
    const outputs = await failure(node.reportService('n', 's', {state: 'running', outputs: {k3: value, k4: value}}))
    expect(outputs.status).toBe(413)
    expect(outputs.message).toMatch(/the outputs of n\/s would take .*; the limit is 256 KiB/)
    expect(Object.keys((await server.admin('b').state()).instances[0].outputs.s)).toEqual(['k0', 'k1', 'k2'])
  })
})

describe('8. constants are not templates', () => {
  it('a secret constant with {{ is registered and served as it is, never echoed', async () => {
    server = await testServer()
    const secret = 'pw{{ip "hunter2"}}{{'
    const request: RegisterRequest = {
      instances: [{id: 'n', role: 'r', services: [{name: 's', params: {password: {value: secret, secret: true}}}]}],
    }
    const {tokens} = await server.admin('c').register(request)
    expect((await server.as('c', tokens.n).getConfig('n')).config.services.s.params.password).toBe(secret)
  })
})

describe('9. an admin token no request could present', () => {
  it('is refused at start, given or in a file', async () => {
    for (const token of [
      'has spaces but long enough',
      'ünïcödé-token-long-enough',
      'x'.repeat(513),
      'semi;colon;token;long',
    ]) {
      await expect(startConfigServer({stateDir: tempDir(), adminToken: token})).rejects.toThrow(
        /the admin token must be 16 to 512 characters of A-Z a-z 0-9/,
      )
      const stateDir = tempDir()
      fs.writeFileSync(path.join(stateDir, 'admin-token'), token + '\n', {mode: 0o600})
      await expect(startConfigServer({stateDir})).rejects.toThrow(/holds no usable admin token/)
      await expect(adminTokenFrom(undefined, path.join(stateDir, 'admin-token'))).rejects.toThrow(
        /holds no usable admin token/,
      )
    }
  })
})

describe('10. the file-descriptor limit', () => {
  const children: ChildProcess[] = []
  afterEach(() => {
    for (const child of children.splice(0)) child.kill('SIGKILL')
  })

  it('near it, the server logs a clear line and /healthz says so', async () => {
    const root = path.resolve(__dirname, '../..')
    const entry = path.join(root, 'dist/configserver/server.js')
    if (!fs.existsSync(entry)) throw new Error(`${entry} is missing: run npm run build first (npm test does)`)
    const script = path.join(tempDir(), 'serve.mjs')
    fs.writeFileSync(
      script,
      `import {startConfigServer} from ${JSON.stringify(entry)}\n` +
        `const s = await startConfigServer({stateDir: process.argv[2], logger: true})\n` +
        `process.stderr.write('listening ' + s.url + '\\n')\n`,
    )
    const child = spawn('sh', ['-c', 'ulimit -n 256 && exec "$0" "$@"', process.execPath, script, tempDir()], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    children.push(child)
    let out = ''
    let err = ''
    child.stdout!.on('data', (c: Buffer) => (out += c))
    const url = await new Promise<string>((resolve, reject) => {
      child.stderr!.on('data', (c: Buffer) => {
        err += c
        const match = /listening (\S+)/.exec(err)
        if (match) resolve(match[1])
      })
      child.on('exit', (code) => reject(new Error(`the server exited (${code}):\n${err}`)))
    })
    const held: Connection[] = []
    for (let i = 0; i < 250 && !/file descriptors in use/.test(out); i++) {
      held.push(await connect(url, `127.0.1.${1 + i}`))
      await sleep(5)
    }
    expect(out).toMatch(/"level":40.*file descriptors in use; the limit is 256/)
    for (const c of held.splice(0, 10)) c.socket.destroy()
    await sleep(100)
    const health = (await raw(url, '/healthz')).json() as {fileDescriptors?: {open: number; limit: number}}
    expect(health.fileDescriptors).toMatchObject({limit: 256})
    expect(health.fileDescriptors!.open).toBeGreaterThan(150)
    for (const c of held) c.socket.destroy()
    expect(child.exitCode).toBe(null)
  })
})

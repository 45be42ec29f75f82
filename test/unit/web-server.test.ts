/** The status page's HTTP server on loopback: the one-time token, the cookie, the Host check, and the event stream. */
import http from 'node:http'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {startPageServer, type PageServer} from '../../src/web/http.js'
import type {LivePatch} from '../../src/web/live.js'
import type {PageSnapshot} from '../../src/web/model.js'

const snapshot: PageSnapshot = {
  deployment: 'd',
  file: 'd.conf',
  graph: {nodes: [{name: 'a', role: 'r', services: ['x']}], edges: [], cycles: []},
  problems: [],
  live: {phase: 'not created', vertices: {'a/x': {state: 'not created'}}, nodes: {}},
  stateSource: 'test',
}
const listeners = new Set<(patch: LivePatch) => void>()

function get(url: string, headers: Record<string, string> = {}, method = 'GET') {
  return new Promise<{status: number; headers: http.IncomingHttpHeaders; body: string}>((resolve, reject) => {
    const request = http.request(url, {method, headers}, (response) => {
      let body = ''
      response.on('data', (chunk) => (body += chunk))
      response.on('end', () => resolve({status: response.statusCode!, headers: response.headers, body}))
    })
    request.on('error', reject)
    request.end()
  })
}

describe('the status page server', () => {
  let server: PageServer
  let base: string

  beforeAll(async () => {
    server = await startPageServer(
      {
        snapshot: () => snapshot,
        details: (node) => (node === 'a' ? {name: 'a', role: 'r', facts: {}, services: [], logs: []} : undefined),
        subscribe(listener) {
          listeners.add(listener)
          return () => listeners.delete(listener)
        },
        asset: (name) => ({body: Buffer.from(`<!-- ${name} -->`), type: 'text/html; charset=utf-8'}),
      },
      {host: '127.0.0.1', port: 0},
    )
    base = `http://127.0.0.1:${server.port}/`
  })
  afterAll(() => server.close())

  it('refuses everything without the token, and a wrong token', async () => {
    for (const path of ['', 'app.js', 'events', 'api/nodes/a', '?token=wrong'])
      expect((await get(`${base}${path}`)).status, path).toBe(401)
  })

  it('trades the token once for an HttpOnly cookie and drops it from the URL', async () => {
    const signIn = await get(server.url)
    expect(signIn.status).toBe(303)
    expect(signIn.headers.location).toBe('/')
    const setCookie = signIn.headers['set-cookie']![0]
    expect(setCookie).toMatch(/^nodeset-status-\d+=[\w-]+; HttpOnly; SameSite=Strict; Path=\/$/)
    const cookie = setCookie.split(';')[0]
    const page = await get(base, {cookie})
    expect(page.status).toBe(200)
    expect(page.headers['content-security-policy']).toContain("default-src 'none'")
    expect((await get(`${base}api/nodes/a`, {cookie})).body).toContain('"name":"a"')
    expect((await get(`${base}api/nodes/b`, {cookie})).status).toBe(404)
    expect((await get(`${base}api/nodes/%E0%A4%A`, {cookie})).status).toBe(400)
    // The token is spent: another browser cannot use it.
    expect((await get(server.url)).status).toBe(401)
  })

  it('answers only at its own address and only to GET', async () => {
    const signIn = await get(server.url.replace(/token=.*/, 'token=x'))
    expect(signIn.status).toBe(401)
    expect((await get(base, {host: 'evil.example:80'})).status).toBe(403)
    expect((await get(base, {}, 'POST')).status).toBe(405)
  })

  it('streams the snapshot, then each change', async () => {
    // The first server's token is spent: a second server gives a cookie of its own.
    const other = await startPageServer(
      {
        snapshot: () => snapshot,
        details: () => undefined,
        subscribe(listener) {
          listeners.add(listener)
          return () => listeners.delete(listener)
        },
        asset: () => undefined,
      },
      {host: '127.0.0.1', port: 0},
    )
    try {
      const cookie = (await get(other.url)).headers['set-cookie']![0].split(';')[0]
      const events: string[] = []
      await new Promise<void>((resolve, reject) => {
        const request = http.get(`http://127.0.0.1:${other.port}/events`, {headers: {cookie}}, (response) => {
          expect(response.headers['content-type']).toBe('text/event-stream; charset=utf-8')
          response.on('data', (chunk: Buffer) => {
            events.push(chunk.toString())
            const text = events.join('')
            if (text.includes('event: snapshot') && listeners.size > 0 && !text.includes('event: patch'))
              for (const l of listeners) l({phase: 'pending'})
            if (text.includes('event: patch')) {
              request.destroy()
              resolve()
            }
          })
        })
        request.on('error', reject)
      })
      const text = events.join('')
      expect(text).toContain(`event: snapshot\ndata: ${JSON.stringify(snapshot)}\n\n`)
      expect(text).toContain('event: patch\ndata: {"phase":"pending"}\n\n')
      expect((await get(`http://127.0.0.1:${other.port}/`, {cookie})).status).toBe(404)
    } finally {
      await other.close()
    }
  })

  it('closes the event stream of a page that stopped reading, and goes on serving', async () => {
    const slow = new Set<(patch: LivePatch) => void>()
    const other = await startPageServer(
      {
        snapshot: () => snapshot,
        details: () => undefined,
        subscribe(listener) {
          slow.add(listener)
          return () => slow.delete(listener)
        },
        asset: () => undefined,
      },
      {host: '127.0.0.1', port: 0},
    )
    try {
      const cookie = (await get(other.url)).headers['set-cookie']![0].split(';')[0]
      const request = http.get(`http://127.0.0.1:${other.port}/events`, {headers: {cookie}}, (response) => {
        response.pause() // a page that never reads again
        response.socket.pause()
      })
      request.on('error', () => undefined)
      for (let i = 0; i < 200 && slow.size === 0; i++) await new Promise((r) => setTimeout(r, 10))
      expect(slow.size).toBe(1)
      const big = {phase: 'x'.repeat(256 * 1024)} as unknown as LivePatch
      // Far more than the limit, over a while, as a stream of changes would come: the server lets go.
      for (let i = 0; i < 400 && slow.size > 0; i++) {
        for (const listener of slow) listener(big)
        await new Promise((r) => setTimeout(r, 5))
      }
      request.destroy()
      expect(slow.size).toBe(0)
      expect((await get(`http://127.0.0.1:${other.port}/`, {cookie})).status).toBe(404)
    } finally {
      await other.close()
    }
  })
})

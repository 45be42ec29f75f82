/**
 * The status page's HTTP server, on the operator's machine. As Jupyter does, the URL it prints carries
 * a random token; the first load exchanges it for an HttpOnly cookie (then the token is spent) and
 * redirects to the bare URL, so the token leaves the address bar and the history. Every other request
 * needs the cookie: 401 without. Only GET and HEAD, only the Host it listens as (a web page elsewhere
 * cannot reach it through a rebound DNS name), and a strict Content-Security-Policy.
 */
import {randomBytes, timingSafeEqual, createHash} from 'node:crypto'
import http from 'node:http'
import type {AddressInfo} from 'node:net'
import type {LivePatch} from './live.js'
import type {NodeDetails, PageSnapshot} from './model.js'

export interface PageContent {
  snapshot(): PageSnapshot
  details(node: string): NodeDetails | undefined
  /** Told every change; returns how to stop telling. */
  subscribe(listener: (patch: LivePatch) => void): () => void
  /** The page's HTML, script and style. */
  asset(name: 'index.html' | 'app.js' | 'app.css'): {body: Buffer; type: string} | undefined
}

export interface PageServer {
  /** The URL to open, with its one-time token (a secret: print it only to the operator). */
  url: string
  port: number
  close(): Promise<void>
}

/** Seconds between comments on an idle event stream, so that proxies and browsers keep it open. */
const KEEPALIVE_MS = 15_000
/** Bytes an event stream may hold unread before it is closed. */
export const MAX_UNREAD_BYTES = 4 * 1024 * 1024

const SECURITY_HEADERS = {
  'Content-Security-Policy':
    "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Cache-Control': 'no-store',
  'X-Frame-Options': 'DENY',
}

const hash = (value: string) => createHash('sha256').update(value).digest()
const matches = (given: string | undefined, expected: Buffer) =>
  given !== undefined && timingSafeEqual(hash(given), expected)

export async function startPageServer(content: PageContent, listen: {host: string; port: number}): Promise<PageServer> {
  const token = randomBytes(24).toString('base64url')
  const session = randomBytes(32).toString('base64url')
  const [tokenHash, sessionHash] = [hash(token), hash(session)]
  let tokenSpent = false
  const streams = new Set<http.ServerResponse>()
  let cookieName = 'nodeset-status'
  let hosts = new Set<string>()

  const server = http.createServer((request, response) => {
    try {
      handle(request, response)
    } catch {
      if (!response.headersSent) send(response, 400, 'text/plain', 'bad request\n')
      else response.destroy()
    }
  })

  function handle(request: http.IncomingMessage, response: http.ServerResponse): void {
    if (!hosts.has((request.headers.host ?? '').toLowerCase()))
      return send(response, 403, 'text/plain', 'this page answers only at the address nodeset status --web printed\n')
    if (request.method !== 'GET' && request.method !== 'HEAD')
      return send(response, 405, 'text/plain', 'method not allowed\n', {Allow: 'GET, HEAD'})
    const url = new URL(request.url ?? '/', 'http://page')
    const signedIn = matches(cookie(request.headers.cookie, cookieName), sessionHash)
    const offered = url.searchParams.get('token') ?? undefined
    if (url.pathname === '/' && offered !== undefined) {
      if (signedIn || (!tokenSpent && matches(offered, tokenHash))) {
        tokenSpent = true
        return send(response, 303, 'text/plain', 'signed in\n', {
          Location: '/',
          'Set-Cookie': `${cookieName}=${session}; HttpOnly; SameSite=Strict; Path=/`,
        })
      }
      return unauthorized(response)
    }
    if (!signedIn) return unauthorized(response)
    if (url.pathname === '/') return asset(response, 'index.html')
    if (url.pathname === '/app.js') return asset(response, 'app.js')
    if (url.pathname === '/app.css') return asset(response, 'app.css')
    if (url.pathname === '/events') return events(request, response)
    const node = /^\/api\/nodes\/([^/]+)$/.exec(url.pathname)
    if (node) {
      const details = content.details(decodeURIComponent(node[1]))
      if (!details) return send(response, 404, 'application/json', JSON.stringify({error: 'no such node in the plan'}))
      return send(response, 200, 'application/json', JSON.stringify(details))
    }
    send(response, 404, 'text/plain', 'not found\n')
  }

  function asset(response: http.ServerResponse, name: 'index.html' | 'app.js' | 'app.css'): void {
    const found = content.asset(name)
    if (!found) return send(response, 404, 'text/plain', `${name} is not built: run npm run build\n`)
    send(response, 200, found.type, found.body)
  }

  function events(request: http.IncomingMessage, response: http.ServerResponse): void {
    response.writeHead(200, {
      ...SECURITY_HEADERS,
      'Content-Type': 'text/event-stream; charset=utf-8',
      Connection: 'keep-alive',
    })
    if (request.method === 'HEAD') return void response.end()
    streams.add(response)
    const write = (event: string, data: unknown) => {
      // A page that stopped reading is cut off rather than buffered without end; it reconnects
      // (retry) and starts again from a snapshot.
      if (response.writableLength > MAX_UNREAD_BYTES) return void response.destroy()
      response.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`)
    }
    response.write('retry: 1000\n\n')
    write('snapshot', content.snapshot())
    const stop = content.subscribe((patch) => write('patch', patch))
    const keepalive = setInterval(() => response.write(': keepalive\n\n'), KEEPALIVE_MS)
    const end = () => {
      stop()
      clearInterval(keepalive)
      streams.delete(response)
    }
    request.on('close', end)
    response.on('error', end)
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(listen.port, listen.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const port = (server.address() as AddressInfo).port
  const shown = listen.host.includes(':') ? `[${listen.host}]` : listen.host
  cookieName = `nodeset-status-${port}`
  hosts = new Set([`${shown}:${port}`, ...(isLoopback(listen.host) ? [`localhost:${port}`] : [])])
  return {
    url: `http://${shown}:${port}/?token=${token}`,
    port,
    async close() {
      for (const stream of streams) stream.end()
      streams.clear()
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

function unauthorized(response: http.ServerResponse): void {
  send(
    response,
    401,
    'text/plain',
    'not signed in: open the URL nodeset status --web printed (its token works once; run it again for a new one)\n',
  )
}

function send(
  response: http.ServerResponse,
  status: number,
  type: string,
  body: string | Buffer,
  headers: Record<string, string> = {},
): void {
  const data = typeof body === 'string' ? Buffer.from(body) : body
  response.writeHead(status, {
    ...SECURITY_HEADERS,
    ...headers,
    'Content-Type': type.includes('charset') || !type.startsWith('text') ? type : `${type}; charset=utf-8`,
    'Content-Length': data.length,
  })
  response.end(response.req.method === 'HEAD' ? undefined : data)
}

function cookie(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const at = part.indexOf('=')
    if (at > 0 && part.slice(0, at).trim() === name) return part.slice(at + 1).trim()
  }
  return undefined
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host)
}

/**
 * Connections as a resource: at most so many per address, time limits on receiving requests, a
 * refusal's connection closed (after draining what the client still sends, as nginx's lingering
 * close), and the file descriptors watched so that running out is said in the log and in /healthz
 * instead of connections being reset without a word.
 */
import fs from 'node:fs'
import type {IncomingMessage, Server, ServerResponse} from 'node:http'
import type net from 'node:net'
import {HttpError} from './errors.js'
import {normalizeAddress} from './address.js'
import {DEFAULT_MAX_CONNECTIONS_PER_ADDRESS, type TimeLimits} from './limits.js'

export interface GuardLog {
  warn(fields: Record<string, unknown>, message: string): void
}

/** The soft limit of open files (Linux: /proc/self/limits), or undefined where it cannot be read. */
export function fileDescriptorLimit(): number | undefined {
  try {
    const match = /^Max open files\s+(\d+)/m.exec(fs.readFileSync('/proc/self/limits', 'utf8'))
    return match ? Number(match[1]) : undefined
  } catch {
    return undefined
  }
}

/** Open file descriptors of this process (Linux: /proc/self/fd), or undefined. */
export function openFileDescriptors(): number | undefined {
  try {
    return fs.readdirSync('/proc/self/fd').length - 1
  } catch {
    return undefined
  }
}

/** Once per `everyMs` at most. */
function throttle(everyMs: number): () => boolean {
  let last = -Infinity
  return () => {
    const now = Date.now()
    if (now - last < everyMs) return false
    last = now
    return true
  }
}

const WARN_RATIO = 0.8

export class ConnectionGuard {
  private readonly perAddress = new Map<string, number>()
  private readonly current = new WeakMap<net.Socket, {req: IncomingMessage; res: ServerResponse}>()
  private open = 0
  private readonly fdLimit = fileDescriptorLimit()
  /** File descriptors in use besides connections (the state, the log, the runtime), measured. */
  private baseline = 0
  private readonly warnFds = throttle(60_000)
  private readonly warnRefusal = throttle(10_000)
  private readonly checkFds = throttle(1000)
  private maxPerAddress: number

  constructor(
    private readonly options: {
      /** Default: half of what the file-descriptor limit allows (512 where it cannot be read). */
      maxPerAddress?: number
      /** Addresses not capped: trusted proxies, whose connections carry many clients. */
      exempt(address: string): boolean
      limits: TimeLimits
      log: () => GuardLog | undefined
    },
  ) {
    this.maxPerAddress = options.maxPerAddress ?? DEFAULT_MAX_CONNECTIONS_PER_ADDRESS
  }

  /** Apply the time limits and the caps to a server before it listens. */
  attach(server: Server): void {
    const {limits} = this.options
    server.headersTimeout = limits.headersMs
    server.requestTimeout = limits.requestMs
    server.keepAliveTimeout = limits.keepAliveMs
    // A socket with no traffic for this long while a request is in progress (a stalled body) is answered 408.
    server.setTimeout(limits.bodyIdleMs)
    this.baseline = openFileDescriptors() ?? 0
    // Refused cleanly (and said) before accept() itself fails, which resets connections without a word.
    if (this.fdLimit !== undefined) {
      server.maxConnections = Math.max(16, this.fdLimit - this.baseline - Math.max(16, Math.ceil(this.fdLimit * 0.05)))
      this.maxPerAddress = this.options.maxPerAddress ?? Math.max(64, Math.floor(server.maxConnections / 2))
    }
    server.on('connection', (socket: net.Socket) => this.accept(socket))
    server.on('drop', (data?: {remoteAddress?: string}) => {
      if (this.warnRefusal())
        this.options
          .log()
          ?.warn(
            {remoteAddress: data?.remoteAddress, connections: this.open, fileDescriptorLimit: this.fdLimit},
            `refused a connection from ${data?.remoteAddress}: ${this.open} connections open, at the file-descriptor limit (${this.fdLimit}); raise it (ulimit -n, LimitNOFILE= in a systemd unit)`,
          )
    })
    server.on('timeout', (socket: net.Socket) => this.idle(socket))
  }

  /** The server's request handler, wrapped: knows which request a socket carries (for the 408 of a stalled body). */
  wrap(handler: (req: IncomingMessage, res: ServerResponse) => void) {
    return (req: IncomingMessage, res: ServerResponse) => {
      this.current.set(req.socket, {req, res})
      // Node clears a keep-alive socket's timeout when its next request starts: every request gets the limit.
      req.socket.setTimeout(this.options.limits.bodyIdleMs)
      res.once('finish', () => {
        if (this.current.get(req.socket)?.req === req) this.current.delete(req.socket)
      })
      handler(req, res)
    }
  }

  private accept(socket: net.Socket): void {
    const address = normalizeAddress(socket.remoteAddress ?? '')
    const held = this.perAddress.get(address) ?? 0
    if (held >= this.maxPerAddress && !this.options.exempt(address)) {
      if (this.warnRefusal())
        this.options
          .log()
          ?.warn(
            {remoteAddress: address, connections: held, maxConnectionsPerAddress: this.maxPerAddress},
            `refused a connection from ${address}: it has ${held} open, the limit per address is ${this.maxPerAddress} (maxConnectionsPerAddress)`,
          )
      socket.destroy()
      return
    }
    this.perAddress.set(address, held + 1)
    this.open++
    socket.once('close', () => {
      this.open--
      const left = (this.perAddress.get(address) ?? 1) - 1
      if (left > 0) this.perAddress.set(address, left)
      else this.perAddress.delete(address)
    })
    this.watchFds()
  }

  /** Near the limit (by the count of connections, then measured), say so once a minute. */
  private watchFds(): void {
    if (this.fdLimit === undefined || this.baseline + this.open < this.fdLimit * WARN_RATIO || !this.checkFds()) return
    const open = openFileDescriptors()
    if (open === undefined) return
    this.baseline = Math.max(0, open - this.open)
    if (open >= this.fdLimit * WARN_RATIO && this.warnFds())
      this.options
        .log()
        ?.warn(
          {fileDescriptors: open, fileDescriptorLimit: this.fdLimit, connections: this.open},
          `${open} file descriptors in use; the limit is ${this.fdLimit}: past it new connections are refused. Raise it (ulimit -n, LimitNOFILE= in a systemd unit) or lower maxConnectionsPerAddress`,
        )
  }

  /** What /healthz tells about connections and file descriptors. */
  health(): Record<string, unknown> {
    const open = this.fdLimit === undefined ? undefined : openFileDescriptors()
    return {
      connections: {open: this.open, perAddressLimit: this.maxPerAddress},
      ...(open === undefined || this.fdLimit === undefined
        ? {}
        : {fileDescriptors: {open, limit: this.fdLimit, nearLimit: open >= this.fdLimit * WARN_RATIO}}),
    }
  }

  /** No traffic for bodyIdleMs: a request still receiving its body gets 408; anything else is closed. */
  private idle(socket: net.Socket): void {
    const current = this.current.get(socket)
    const {req, res} = current ?? {}
    if (req && res && !req.complete && !res.headersSent && req.listenerCount('error') > 0) {
      const seconds = this.options.limits.bodyIdleMs / 1000
      req.emit(
        'error',
        new HttpError(408, `the request body stalled: nothing arrived for ${seconds} s; send the body whole`),
      )
      setTimeout(() => socket.destroy(), this.options.limits.lingerMs).unref()
      return
    }
    socket.destroy()
  }
}

/**
 * Before answering a request whose body was not read (a refusal before the body): true when the
 * connection must close (the caller says `Connection: close`). It closes once the client has stopped
 * sending or `lingerMs` passed, as nginx's lingering close: the answer is not lost to a reset, and
 * the connection is not held.
 */
export function closeAfterRefusal(req: IncomingMessage, lingerMs: number): boolean {
  if (req.complete) return false
  const length = req.headers['content-length']
  if (req.headers['transfer-encoding'] === undefined && (length === undefined || length === '0')) return false
  const socket = req.socket
  socket.destroySoon = () => {
    socket.end()
    const timer = setTimeout(() => socket.destroy(), lingerMs)
    timer.unref()
    socket.once('end', () => socket.destroy())
    socket.once('close', () => clearTimeout(timer))
  }
  return true
}

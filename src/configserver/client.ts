/**
 * A typed client of the config server, for the CLI and the tests. One client speaks for one
 * deployment with one token (the admin token, or an instance's). An instance's client starts with
 * its bootstrap token and, when a phone-home exchanges it, goes on with the node token it got.
 * Errors carry the HTTP status and the server's message, never the token.
 */
import http from 'node:http'
import https from 'node:https'
import type {Diagnostic} from '../core/diagnostics.js'
import type {
  DeploymentState,
  DeploymentStatus,
  FactsRequest,
  FactsResponse,
  InstanceConfig,
  InstanceConfigAnswer,
  RegisterRequest,
  RegisterResponse,
  ServiceReport,
} from './protocol.js'
import {readWaiting} from './protocol.js'
import {applyRolesDelta, canonicalRoles, type RoleMapJson, rolesVersionOf} from './rolemap.js'
import type {EdgeLabel} from '../plan/check.js'
import type {Edge} from '../plan/graph.js'

export interface ConfigServerClientOptions {
  /** Base URL, e.g. http://127.0.0.1:8470 */
  url: string
  deployment: string
  token: string
  /** PEM of the CA that signed the server's certificate, for a self-signed TLS server. */
  ca?: string | Buffer
  /** Local address to connect from (a node with several addresses). */
  localAddress?: string
  /** Per-request timeout, milliseconds, beyond any long-poll wait (default 30 s). */
  timeoutMs?: number
}

export class ConfigServerError extends Error {
  constructor(
    message: string,
    /** The HTTP status, or 0 when the server could not be reached. */
    readonly status: number,
    /** The server's JSON error body: `error`, and `diagnostics`, `missing`, `issues` or `hint` when given. */
    readonly body?: {
      error?: string
      diagnostics?: Diagnostic[]
      missing?: string[]
      issues?: Array<{path: string; message: string}>
      hint?: string
    },
  ) {
    super(message)
    this.name = 'ConfigServerError'
  }

  get diagnostics(): Diagnostic[] {
    return this.body?.diagnostics ?? []
  }
}

export interface ConfigAnswer {
  /** 200: complete; 202: still waiting (see `config.waiting`). */
  status: 200 | 202
  config: InstanceConfig
  /** Seconds the server suggests before asking again (202). */
  retryAfter?: number
}

interface Answer {
  status: number
  headers: http.IncomingHttpHeaders
  text: string
}

export class ConfigServerClient {
  private readonly base: URL
  private readonly agent: http.Agent
  /** The token sent: the one given, until a phone-home hands over a node token. */
  private token: string
  /** The role map of the last config, and its version: the next asks only what changed since. */
  private held?: {version: string; map: RoleMapJson}

  constructor(private readonly options: ConfigServerClientOptions) {
    this.token = options.token
    this.base = new URL(options.url)
    if (this.base.protocol !== 'http:' && this.base.protocol !== 'https:')
      throw new Error(`config server URL must be http:// or https://, not ${options.url}`)
    this.agent =
      this.base.protocol === 'https:'
        ? new https.Agent({keepAlive: true, ...(options.ca ? {ca: options.ca} : {})})
        : new http.Agent({keepAlive: true})
  }

  private get dep(): string {
    return `/v1/deployments/${encodeURIComponent(this.options.deployment)}`
  }

  private instancePath(id: string): string {
    return `${this.dep}/instances/${encodeURIComponent(id)}`
  }

  register(request: RegisterRequest): Promise<RegisterResponse> {
    return this.json('PUT', this.dep, request, [201])
  }

  status(): Promise<DeploymentStatus> {
    return this.json('GET', `${this.dep}/status`)
  }

  state(): Promise<DeploymentState> {
    return this.json('GET', `${this.dep}/state`)
  }

  graph(): Promise<{vertices: string[]; edges: Array<Edge<EdgeLabel>>}> {
    return this.json('GET', `${this.dep}/graph`)
  }

  async forgetInstance(id: string): Promise<void> {
    await this.call('DELETE', this.instancePath(id), undefined, [204])
  }

  async deleteDeployment(): Promise<void> {
    await this.call('DELETE', this.dep, undefined, [204])
  }

  /**
   * Phone home; the answer says which address the server saw. When it exchanged the bootstrap token,
   * the answer carries the node token (`token`, given once), and this client uses it from then on.
   */
  async putFacts(id: string, facts: FactsRequest['facts']): Promise<FactsResponse> {
    const answer = await this.json<FactsResponse>('PUT', `${this.instancePath(id)}/facts`, {facts})
    if (answer.token !== undefined) this.token = answer.token
    return answer
  }

  /**
   * The instance's configuration (or one service's); with `wait`, the server holds the answer until it
   * is complete or `wait` seconds pass. `roles: false` leaves out the role map (`roles` is then `{}`).
   * The client keeps the role map it got and asks only what changed since; the map it rebuilds is
   * checked against the version the server names, and fetched whole when it does not match.
   */
  async getConfig(id: string, opts: {service?: string; wait?: number; roles?: boolean} = {}): Promise<ConfigAnswer> {
    const answer = await this.fetchConfig(id, opts, opts.roles === false ? 'false' : this.held)
    if (answer !== undefined) return answer
    this.held = undefined
    return (await this.fetchConfig(id, {...opts, wait: 0}, undefined))!
  }

  /** The role map held, and its version (none before a config with the map). */
  get heldRoles(): {version: string; map: RoleMapJson} | undefined {
    return this.held
  }

  /** One config request; undefined when the delta sent does not rebuild the version it names. */
  private async fetchConfig(
    id: string,
    opts: {service?: string; wait?: number},
    roles: 'false' | {version: string} | undefined,
  ): Promise<ConfigAnswer | undefined> {
    const query = new URLSearchParams()
    if (opts.service !== undefined) query.set('service', opts.service)
    if (roles === 'false') query.set('roles', 'false')
    else if (roles !== undefined) query.set('roles', `since:${roles.version}`)
    if (opts.wait !== undefined) query.set('wait', String(opts.wait))
    const suffix = query.toString() ? `?${query}` : ''
    const answer = await this.call(
      'GET',
      `${this.instancePath(id)}/config${suffix}`,
      undefined,
      [200, 202],
      (opts.wait ?? 0) * 1000,
    )
    const retryAfter = Number(answer.headers['retry-after'])
    const {rolesDelta, ...sent} = JSON.parse(answer.text) as InstanceConfigAnswer
    if (rolesDelta !== undefined) {
      if (this.held?.version !== rolesDelta.from) return undefined
      const map = applyRolesDelta(this.held.map, rolesDelta)
      if (rolesVersionOf(map) !== rolesDelta.to) return undefined
      this.held = {version: rolesDelta.to, map}
    } else if (sent.rolesVersion !== undefined && sent.roles && rolesVersionOf(sent.roles) === sent.rolesVersion) {
      this.held = {version: sent.rolesVersion, map: canonicalRoles(sent.roles)}
    }
    const config: InstanceConfig = {
      ...sent,
      roles: rolesDelta !== undefined && this.held ? canonicalRoles(this.held.map) : (sent.roles ?? {}),
    }
    config.waiting = (config.waiting ?? []).map(readWaiting)
    return {
      status: answer.status as 200 | 202,
      config,
      ...(Number.isFinite(retryAfter) && answer.headers['retry-after'] ? {retryAfter} : {}),
    }
  }

  reportService(id: string, service: string, report: ServiceReport): Promise<{state: string}> {
    return this.json('PUT', `${this.instancePath(id)}/services/${encodeURIComponent(service)}`, report)
  }

  /** `/etc/nodeset/roles` as the agent writes it. */
  async roleMap(id: string): Promise<string> {
    return (await this.call('GET', `${this.instancePath(id)}/roles`)).text
  }

  /** The managed block of `/etc/hosts`. */
  async hostsBlock(id: string): Promise<string> {
    return (await this.call('GET', `${this.instancePath(id)}/hosts`)).text
  }

  close(): void {
    this.agent.destroy()
  }

  private async json<T>(method: string, path: string, payload?: unknown, ok = [200]): Promise<T> {
    return JSON.parse((await this.call(method, path, payload, ok)).text) as T
  }

  private call(method: string, path: string, payload?: unknown, ok = [200], extraMs = 0): Promise<Answer> {
    const data = payload === undefined ? undefined : Buffer.from(JSON.stringify(payload))
    const url = new URL(path, this.base)
    const transport = url.protocol === 'https:' ? https : http
    const where = `${method} ${url.origin}${url.pathname}`
    return new Promise<Answer>((resolve, reject) => {
      const request = transport.request(
        url,
        {
          method,
          agent: this.agent,
          ...(this.options.localAddress ? {localAddress: this.options.localAddress} : {}),
          headers: {
            authorization: `Bearer ${this.token}`,
            accept: 'application/json',
            ...(data ? {'content-type': 'application/json', 'content-length': data.length} : {}),
          },
          timeout: (this.options.timeoutMs ?? 30_000) + extraMs,
        },
        (response) => {
          const chunks: Buffer[] = []
          response.on('data', (chunk: Buffer) => chunks.push(chunk))
          response.on('error', (error) => reject(new ConfigServerError(`${where}: ${error.message}`, 0)))
          response.on('end', () => {
            const answer = {
              status: response.statusCode ?? 0,
              headers: response.headers,
              text: Buffer.concat(chunks).toString('utf8'),
            }
            if (ok.includes(answer.status)) resolve(answer)
            else reject(errorOf(where, answer))
          })
        },
      )
      request.on('timeout', () => request.destroy(new Error('no answer in time')))
      request.on('error', (error) =>
        reject(new ConfigServerError(`cannot reach the config server (${where}): ${error.message}`, 0)),
      )
      request.end(data)
    })
  }
}

function errorOf(where: string, answer: Answer): ConfigServerError {
  let body: ConfigServerError['body']
  try {
    body = JSON.parse(answer.text) as ConfigServerError['body']
  } catch {
    body = {error: answer.text.slice(0, 500)}
  }
  const retry =
    answer.status === 429 && answer.headers['retry-after'] ? ` (retry after ${answer.headers['retry-after']} s)` : ''
  return new ConfigServerError(`${where}: ${answer.status} ${body?.error ?? 'error'}${retry}`, answer.status, body)
}

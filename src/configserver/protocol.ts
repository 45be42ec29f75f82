/**
 * The config server's wire contract (JSON over HTTP, versioned under /v1), shared by the server,
 * the CLI that registers deployments and the node agent. Every body is validated with these schemas.
 *
 * Admin routes (header `Authorization: Bearer <admin token>`):
 *   PUT    /v1/deployments/:dep                      register or replace a deployment  → 201 RegisterResponse
 *   GET    /v1/deployments/:dep/status               report: instances, services, state → 200 DeploymentStatus
 *   GET    /v1/deployments/:dep/state                every fact and output (for setup) → 200 DeploymentState
 *   GET    /v1/deployments/:dep/graph                the dependency graph              → 200 {vertices, edges}
 *   DELETE /v1/deployments/:dep                      forget the deployment             → 204
 *   DELETE /v1/deployments/:dep/instances/:id        forget one instance               → 204
 * Instance routes (header `Authorization: Bearer <that instance's token>`; the admin token works too):
 *   PUT    /v1/deployments/:dep/instances/:id/facts  phone home: facts; the server records the peer address → 200 FactsResponse
 *          With the bootstrap token (from registration, carried in the user data) the first phone-home
 *          exchanges it for a node token, given once in `token`; the bootstrap token is then refused
 *          (401 "this bootstrap token was exchanged; …"), except that a retried phone-home within the grace
 *          (10 min, and only while the node token is unused) gets a fresh node token that revokes the previous one.
 *   GET    /v1/deployments/:dep/instances/:id/config[?service=S][&wait=SECONDS][&roles=false|since:VERSION]
 *          → 200 InstanceConfig (complete) | 202 InstanceConfig with `waiting` and Retry-After | 404 unknown instance
 *            | 422 a template that cannot be rendered (`failed`)
 *          The answer carries the role map (`roles`) and its version (`rolesVersion`, a hash of its content,
 *          rolemap.ts). `roles=since:VERSION` from a client that holds the map of VERSION: when this server
 *          still knows VERSION, `rolesDelta` {from, to, roles, addresses} instead of `roles` (empty when
 *          nothing changed); otherwise the whole `roles`, as without it.
 *   PUT    /v1/deployments/:dep/instances/:id/services/:svc  ServiceReport (state, exit code, outputs) → 200
 *   GET    /v1/deployments/:dep/instances/:id/roles  text/plain: the role map (`renderRoleMap`, src/plan/wiring.ts)
 *   GET    /v1/deployments/:dep/instances/:id/hosts  text/plain: the managed /etc/hosts block (`renderHostsBlock`)
 *   Both carry a strong ETag (a hash of the text); with `If-None-Match` naming it, 304 without a body.
 * `roles=false` leaves the role map out of the config (`roles` is {}, no `rolesVersion`): the agent fetches it as text.
 * The two text routes exist so the agent, a POSIX sh script with curl, never has to parse JSON.
 */
import {z} from 'zod'
import {ID_PATTERN, ID_RULE} from '../core/ids.js'

export const idSchema = z.string().regex(ID_PATTERN, ID_RULE)

/** A site's name: it is part of broker routing keys and queue names, so no dots or wildcards. */
export const SITE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/
export const SITE_RULE = 'a site name is 1-63 of A-Z a-z 0-9 _ - (starting with a letter or digit)'

/**
 * What a federated registration gives the server of one site: its own site, its signing key, the other
 * sites' public keys and the deployment's key for sealing secret outputs. Keys are PEM (Ed25519: PKCS#8
 * private, SPKI public); `sealKey` is base64 of 32 bytes.
 */
export const federationSchema = z
  .object({
    site: z.string().regex(SITE_PATTERN, SITE_RULE),
    signingKey: z.string().max(4096),
    peers: z.record(z.string().regex(SITE_PATTERN, SITE_RULE), z.string().max(4096)),
    sealKey: z.string().max(128),
  })
  .strict()
export type FederationSpec = z.infer<typeof federationSchema>

export const sourceSchema = z.object({file: z.string().max(4096), line: z.number().int().nonnegative()}).strict()

/**
 * A service parameter at registration:
 * - `{value}`: a constant;
 * - `{input: true}`: supplied by the user in RegisterRequest.inputs (missing ones are a 400 that lists them);
 * - `{template}`: handlebars that refers to other instances' facts and outputs (`{{ip "service:mysql"}}`,
 *   `{{output "service:mysql" "password"}}`, `{{#each (nodes "appserver")}}…{{/each}}`); the server extracts the
 *   references from the template's AST, checks them, and renders the value once every one is known.
 */
export const paramSpecSchema = z.union([
  z.object({value: z.string().max(65536), secret: z.boolean().optional(), source: sourceSchema.optional()}).strict(),
  z.object({input: z.literal(true), secret: z.boolean().optional(), source: sourceSchema.optional()}).strict(),
  z.object({template: z.string().max(65536), secret: z.boolean().optional(), source: sourceSchema.optional()}).strict(),
])
export type ParamSpec = z.infer<typeof paramSpecSchema>

export const serviceSpecSchema = z
  .object({
    name: idSchema,
    params: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_.-]{0,127}$/), paramSpecSchema).default({}),
    /** Output keys this service reports with its state. */
    provides: z.array(z.string().max(128)).max(256).default([]),
    /** Services of the same instance that must have succeeded before this one starts. */
    after: z.array(idSchema).max(256).default([]),
  })
  .strict()
export type ServiceSpec = z.infer<typeof serviceSpecSchema>

export const instanceSpecSchema = z
  .object({
    id: idSchema,
    role: z.string().min(1).max(253),
    index: z.number().int().positive().optional(),
    services: z.array(serviceSpecSchema).max(1024).default([]),
    /** The site that owns the instance, in a federated registration (docs/federation.md). */
    site: z.string().regex(SITE_PATTERN, SITE_RULE).optional(),
  })
  .strict()
export type InstanceSpec = z.infer<typeof instanceSpecSchema>

export const registerRequestSchema = z
  .object({
    /** Seconds from registration by which every service must have started; then the deployment fails. */
    startupTimeoutSec: z
      .number()
      .int()
      .positive()
      .max(7 * 24 * 3600)
      .optional(),
    instances: z.array(instanceSpecSchema).min(1).max(100_000),
    /** Values for `{input: true}` params: inputs[instance][service][param]. */
    inputs: z.record(z.string(), z.record(z.string(), z.record(z.string(), z.string().max(65536)))).default({}),
    /**
     * Instances whose tokens must be issued anew (a node recreated, or a client that lost them): each gets a
     * new bootstrap token, and its old bootstrap and node tokens stop working. New instances always get one.
     */
    reissueTokens: z.array(idSchema).max(100_000).default([]),
    /** A deployment spanning sites: this server's part of it (docs/federation.md). */
    federation: federationSchema.optional(),
  })
  .strict()
export type RegisterRequest = z.input<typeof registerRequestSchema>

export interface RegisterResponse {
  deployment: string
  /**
   * Bootstrap tokens of new (or reissued) instances, given once; the server keeps only their hashes. In a
   * federated registration, only the instances of the server's own site get one.
   */
  tokens: Record<string, string>
}

export const factsRequestSchema = z
  .object({
    /** hostname, ssh_host_keys (["ssh-ed25519 AAAA…"]), private_ip, sshd_port, …; `ip` is what the server sees. */
    facts: z.record(
      z.string().regex(/^[A-Za-z_][A-Za-z0-9_.-]{0,127}$/),
      z.union([z.string().max(16384), z.array(z.string().max(16384)).max(64), z.number(), z.boolean()]),
    ),
  })
  .strict()
export type FactsRequest = z.infer<typeof factsRequestSchema>

export interface FactsResponse {
  deployment: string
  instance: string
  /** The address the server saw the request come from. */
  ip: string
  /** The node token, when this phone-home exchanged the bootstrap token for it: given once, only its hash is kept. */
  token?: string
}

export const serviceStateSchema = z.enum(['running', 'succeeded', 'failed'])
export const serviceReportSchema = z
  .object({
    state: serviceStateSchema,
    exitCode: z.number().int().optional(),
    outputs: z.record(z.string().max(128), z.string().max(65536)).default({}),
    message: z.string().max(16384).optional(),
  })
  .strict()
export type ServiceReport = z.input<typeof serviceReportSchema>

/**
 * What a param still waits for, e.g. {kind: 'fact', instance: 'mysql.foobar.com', key: 'ip'}: `service` and
 * `param` are the waiting ones; `instance` (and for an output, `outputService`) what they wait for.
 */
export interface Waiting {
  service: string
  param: string
  kind: 'fact' | 'output' | 'input'
  instance: string
  /** The service of `instance` whose output is awaited (servers before this name sent it as `service_`). */
  outputService?: string
  key: string
}

/** A `waiting` entry as a server of any version sends it: the old name `service_` is read as `outputService`. */
export function readWaiting(entry: Waiting & {service_?: string}): Waiting {
  const {service_: old, ...rest} = entry
  return old !== undefined && rest.outputService === undefined ? {...rest, outputService: old} : rest
}

export interface InstanceConfig {
  deployment: string
  instance: string
  role: string
  complete: boolean
  /** Per service: complete or not, and the values (only the resolved ones when incomplete). */
  services: Record<string, {complete: boolean; params: Record<string, string>}>
  waiting: Waiting[]
  /** Params whose template cannot be rendered (a state registered before registration checked it): answered 422. */
  failed?: Array<{service: string; param: string; message: string}>
  /** Every instance known so far, for the role map and the hosts block: role → [{name, ip}] (roles in code-unit order). */
  roles: Record<string, Array<{name: string; ip?: string}>>
  /** The version of `roles` (not sent with `roles=false`). */
  rolesVersion?: string
}

export type RoleMember = {name: string; ip?: string}
export type RoleMapJson = Record<string, RoleMember[]>

/** What turns the role map of version `from` into that of `to` (rolemap.ts computes and applies it). */
export interface RolesDelta {
  from: string
  to: string
  /** Roles whose members changed (added, removed, reordered): the whole list; null: the role is gone. */
  roles?: Record<string, RoleMember[] | null>
  /** Members of the other roles whose address changed: name → address (null: it has none any more). */
  addresses?: Record<string, string | null>
}

/** A config as sent: with `roles=since:VERSION` that the server knows, `rolesDelta` instead of `roles`. */
export type InstanceConfigAnswer = Omit<InstanceConfig, 'roles'> & {
  roles?: InstanceConfig['roles']
  rolesDelta?: RolesDelta
}

export type ServiceStatus = 'waiting' | 'ready' | 'running' | 'succeeded' | 'failed' | 'timed out'
export type DeploymentPhase = 'pending' | 'settled' | 'failed'

export interface DeploymentStatus {
  deployment: string
  state: DeploymentPhase
  reason?: string
  registeredAt: string
  deadline?: string
  instances: Array<{
    id: string
    role: string
    /** The owning site (federated deployments). */
    site?: string
    address?: string
    firstContact?: string
    lastContact?: string
    /** An instance of another site: the age of the newest message about it that this server applied. */
    factsAgeMs?: number
    services: Array<{name: string; status: ServiceStatus; waitingFor?: string[]; exitCode?: number; message?: string}>
  }>
  /** A federated deployment: this server's site and its links to the other sites. */
  federation?: FederationStatus
}

export interface FederationLinkStatus {
  site: string
  /** Up: this server's broker connection is up and the peer's heartbeat came within three intervals. */
  state: 'up' | 'down'
  lastHeartbeatAt?: string
  /** How far behind the peer this server is: the delivery time of its latest message, or how long a known gap has been open. */
  lagMs?: number
  /** Messages from the peer applied. */
  applied: number
}

export interface FederationStatus {
  site: string
  links: FederationLinkStatus[]
  /** Messages refused: a signature that does not verify, an instance the sender does not own, a sequence already applied. */
  refused: {badSignature: number; notOwner: number; replayed: number}
}

export interface DeploymentState {
  deployment: string
  instances: Array<{
    id: string
    role: string
    index?: number
    facts: Record<string, unknown>
    outputs: Record<string, Record<string, string>>
    services: Record<string, {status: ServiceStatus; exitCode?: number}>
  }>
}

/**
 * What one client may make the config server hold: sizes of bodies and of what is stored per
 * instance, and how long a request may take to arrive. docs/config-server.md lists them; a request
 * over a size bound gets a 413 that names the bound.
 */

export const LIMITS = {
  /** A request body, except a registration's. */
  bodyBytes: 1024 * 1024,
  /** A registration body (the admin's). */
  registrationBodyBytes: 256 * 1024 * 1024,
  /** Facts one instance keeps: keys, and bytes of their JSON (`ip` is not among them). */
  factsPerInstance: 256,
  factBytesPerInstance: 256 * 1024,
  /** Outputs one service of an instance keeps: keys, and bytes of their JSON. */
  outputsPerService: 256,
  outputBytesPerService: 256 * 1024,
} as const

/** Time limits on receiving a request, as nginx's client_header_timeout and client_body_timeout (milliseconds). */
export interface TimeLimits {
  /** To receive a request's headers, from its first byte (or from the connection). */
  headersMs: number
  /** Between two reads of a request body: a body that stalls this long gets 408 and the connection closed. */
  bodyIdleMs: number
  /** To receive a whole request, headers and body. */
  requestMs: number
  /** An idle keep-alive connection is closed after this. */
  keepAliveMs: number
  /** After answering a request whose body was not read (a refusal), how long its remaining bytes are drained before closing. */
  lingerMs: number
}

export const DEFAULT_TIME_LIMITS: TimeLimits = {
  headersMs: 60_000,
  bodyIdleMs: 60_000,
  requestMs: 300_000,
  keepAliveMs: 75_000,
  lingerMs: 5_000,
}

/**
 * Connections one address may hold open at once where the file-descriptor limit cannot be read; where
 * it can, the default is half of the connections it allows. A NAT'd cloud shares one address.
 */
export const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS = 512

export function formatBytes(n: number): string {
  if (n >= 1024 * 1024) return `${+(n / (1024 * 1024)).toFixed(1)} MiB`
  if (n >= 1024) return `${+(n / 1024).toFixed(1)} KiB`
  return `${n} bytes`
}

/** Validate user-given time limits (milliseconds, positive). */
export function timeLimits(given: Partial<TimeLimits> | undefined): TimeLimits {
  const limits = {...DEFAULT_TIME_LIMITS, ...given}
  for (const [name, value] of Object.entries(limits))
    if (!(Number.isFinite(value) && value > 0))
      throw new Error(`timeLimits.${name} must be a positive number of milliseconds, not ${value}`)
  return limits
}

/**
 * User data: the node agent, a POSIX sh script that a node runs at every boot. It phones home to the
 * config server with its facts, long-polls for its configuration and writes it to /etc/nodeset and
 * /etc/hosts (see docs/agent.md). Rendered from templates/userdata/agent.sh.hbs.
 */
import {readFileSync} from 'node:fs'
import Handlebars from 'handlebars'
import {hostsMergeScript} from '../core/hostsblock.js'
import {ID_PATTERN} from '../core/ids.js'
import {USER_DATA_LIMIT} from '../core/limits.js'
import {shellQuote} from '../core/quote.js'

export interface UserDataOptions {
  deployment: string
  node: string
  /**
   * This node's bootstrap token (from registration). Its first phone-home exchanges it for a node token
   * that the agent keeps in /var/lib/nodeset/token; the user data's copy then stops working.
   */
  token: string
  /** Base URL of the config server as the node reaches it, e.g. `http://10.77.0.1:4000`. */
  serverUrl: string
  /** Base64 sha256 of the server's TLS public key (curl --pinnedpubkey); replaces CA checks. */
  serverPubkeySha256?: string
  /** Facts reported with the built-in ones (hostname, ssh_host_keys, private_ip). */
  extraFacts?: Record<string, string>
  /** How long the agent keeps trying before it gives up (default one hour). */
  bootDeadlineSec?: number
}

export {USER_DATA_LIMIT} from '../core/limits.js'
export const DEFAULT_BOOT_DEADLINE_SEC = 3600

const TOKEN_PATTERN = /^[A-Za-z0-9._~+/=-]{16,1024}$/
const PUBKEY_SHA256_PATTERN = /^[A-Za-z0-9+/]{43}=$/
const FACT_KEY_PATTERN = /^[A-Za-z_][A-Za-z0-9_.-]{0,127}$/
const BUILT_IN_FACTS = new Set(['hostname', 'ssh_host_keys', 'private_ip', 'ip'])

const templatesDir = new URL('../../templates/', import.meta.url)
let compiled: Handlebars.TemplateDelegate | undefined

function agentTemplate(): Handlebars.TemplateDelegate {
  if (!compiled) {
    const hb = Handlebars.create()
    // Always quoted: the settings at the top of the agent stay one plain `NAME='value'` form.
    hb.registerHelper('sh', (value: unknown) => shellQuote(String(value ?? ''), {always: true}))
    compiled = hb.compile(compactScript(readFileSync(new URL('userdata/agent.sh.hbs', templatesDir), 'utf8')), {
      noEscape: true,
      strict: true,
    })
  }
  return compiled
}

/**
 * A shell script without its comment lines, blank lines and indentation, past its opening comment
 * (which says what it is): the agent must fit EC2's 16 KB of user data. Sound for scripts whose
 * multi-line quoted strings are awk programs (no heredocs), as the agent's are.
 */
export function compactScript(text: string): string {
  if (/<<-?\s*['"]?[A-Za-z_]/.test(text)) throw new Error('compactScript cannot keep a heredoc intact')
  const lines = text.split('\n')
  const header = lines.findIndex((line) => !line.startsWith('#'))
  const body = lines
    .slice(header)
    .map((line) => line.replace(/^\s+/, ''))
    .filter((line) => line !== '' && !line.startsWith('#'))
  return [...lines.slice(0, header), ...body, ''].join('\n')
}

/** Render the agent for one node; throws on values that could not be carried safely, or when too big. */
export function renderUserData(opts: UserDataOptions): string {
  const serverUrl = checkOptions(opts)
  const extraFacts = Object.entries(opts.extraFacts ?? {})
    .map(([key, value]) => `,${JSON.stringify(key)}:${JSON.stringify(value)}`)
    .join('')
  const text = agentTemplate()({
    deployment: opts.deployment,
    node: opts.node,
    serverUrl,
    token: opts.token,
    pin: opts.serverPubkeySha256 ?? '',
    deadline: opts.bootDeadlineSec ?? DEFAULT_BOOT_DEADLINE_SEC,
    extraFacts,
    hostsMerge: compactScript(hostsMergeScript(opts.deployment)),
  })
  checkUserDataSize(opts.node, text)
  return text
}

/** Refuse user data that EC2 would refuse, before any API call. */
export function checkUserDataSize(node: string, text: string): void {
  const size = Buffer.byteLength(text, 'utf8')
  if (size > USER_DATA_LIMIT) {
    throw new Error(
      `user data for ${node} is ${size} bytes, over the ${USER_DATA_LIMIT}-byte limit of EC2 user data: ` +
        `shorten its extra facts (they are carried in the user data) or leave them out`,
    )
  }
}

/** Validates every option; returns the server URL without a trailing slash. */
function checkOptions(opts: UserDataOptions): string {
  const problems: string[] = []
  if (!ID_PATTERN.test(opts.deployment))
    problems.push(`deployment ${JSON.stringify(opts.deployment)} is not a valid id (letters, digits, . _ : -)`)
  if (!ID_PATTERN.test(opts.node))
    problems.push(`node ${JSON.stringify(opts.node)} is not a valid id (letters, digits, . _ : -)`)
  // Never echo the token itself.
  if (!TOKEN_PATTERN.test(opts.token))
    problems.push('the token must be 16-1024 characters of A-Z a-z 0-9 . _ ~ + / = -')
  let serverUrl = ''
  try {
    const url = new URL(opts.serverUrl)
    if (url.protocol !== 'http:' && url.protocol !== 'https:')
      problems.push(`server URL ${opts.serverUrl} must be http:// or https://`)
    if (url.username || url.password) problems.push('the server URL must not carry a user name or password')
    if (url.search || url.hash) problems.push(`server URL ${opts.serverUrl} must not have a query or fragment`)
    serverUrl = `${url.protocol}//${url.host}${url.pathname.replace(/\/+$/, '')}`
    if (opts.serverPubkeySha256 !== undefined && url.protocol !== 'https:')
      problems.push('a pinned server key needs an https:// server URL')
  } catch {
    problems.push(`server URL ${JSON.stringify(opts.serverUrl)} is not a URL (e.g. http://10.77.0.1:4000)`)
  }
  if (opts.serverPubkeySha256 !== undefined && !PUBKEY_SHA256_PATTERN.test(opts.serverPubkeySha256)) {
    problems.push('serverPubkeySha256 must be the base64 sha256 of the server key (44 characters ending in =)')
  }
  for (const key of Object.keys(opts.extraFacts ?? {})) {
    if (!FACT_KEY_PATTERN.test(key))
      problems.push(`extra fact name ${JSON.stringify(key)} must match ${FACT_KEY_PATTERN}`)
    else if (BUILT_IN_FACTS.has(key)) problems.push(`extra fact ${key} is built in: the agent reports it itself`)
  }
  const deadline = opts.bootDeadlineSec
  if (deadline !== undefined && (!Number.isInteger(deadline) || deadline < 10 || deadline > 7 * 24 * 3600)) {
    problems.push(`bootDeadlineSec must be a whole number of seconds from 10 to 604800, not ${deadline}`)
  }
  if (problems.length > 0) throw new Error(`cannot render user data for ${opts.node}: ${problems.join('; ')}`)
  return serverUrl
}

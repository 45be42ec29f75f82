/**
 * What the page shows of one node when it is opened: address, facts, its services' states and the
 * tail of each of its step logs (the workspace's, from the last setup-node run). Everything passes
 * through `redact` with every secret known here: the step logs are redacted when written, and this
 * is the second fence.
 */
import fs from 'node:fs'
import path from 'node:path'
import {redact} from '../core/redact.js'
import type {LiveState} from './live.js'
import type {NodeDetails} from './model.js'
import type {PictureGraph} from './picture.js'
import type {Reading} from './state.js'

/** Lines, and bytes read from the end, of each step log. */
const TAIL_LINES = 30
const TAIL_BYTES = 16 * 1024

export interface DetailsInput {
  graph: PictureGraph
  live: LiveState
  reading: Reading
  /** The node's step-log folder in the workspace (it may not exist). */
  logDir: (node: string) => string
  secrets: readonly string[]
}

export function nodeDetails(name: string, input: DetailsInput): NodeDetails | undefined {
  const node = input.graph.nodes.find((n) => n.name === name)
  if (!node) return undefined
  const secrets = [...input.secrets, ...input.reading.secrets]
  const live = input.live.nodes[name] ?? {}
  const details: NodeDetails = {
    name,
    role: node.role,
    ...(node.site === undefined ? {} : {site: node.site}),
    ...live,
    facts: input.reading.facts(name) ?? {},
    services: node.services.map((service) => ({
      name: service,
      ...(input.live.vertices[`${name}/${service}`] ?? {state: 'not created'}),
    })),
    logs: stepLogs(input.logDir(name), node.services),
  }
  // One pass over the whole answer: facts, messages and logs alike.
  return JSON.parse(redact(JSON.stringify(details), secrets)) as NodeDetails
}

/** base first, then services in the node's order, then wiring; others (older runs' steps) last. */
function stepLogs(dir: string, services: readonly string[]): NodeDetails['logs'] {
  let files: string[]
  try {
    files = fs.readdirSync(dir).filter((f) => f.endsWith('.log'))
  } catch {
    return []
  }
  const order = ['base', ...services, 'wiring']
  const rank = (step: string) => (order.includes(step) ? order.indexOf(step) : order.length)
  return files
    .map((f) => f.slice(0, -'.log'.length))
    .sort((a, b) => rank(a) - rank(b) || a.localeCompare(b))
    .map((step) => ({step, tail: tail(path.join(dir, `${step}.log`))}))
}

function tail(file: string): string {
  let fd: number | undefined
  try {
    fd = fs.openSync(file, 'r')
    const size = fs.fstatSync(fd).size
    const length = Math.min(size, TAIL_BYTES)
    const buffer = Buffer.alloc(length)
    fs.readSync(fd, buffer, 0, length, size - length)
    const lines = buffer.toString('utf8').trimEnd().split('\n')
    // A partial first line (cut by the byte limit) is dropped.
    return lines
      .slice(size > length ? 1 : 0)
      .slice(-TAIL_LINES)
      .join('\n')
  } catch {
    return ''
  } finally {
    if (fd !== undefined) fs.closeSync(fd)
  }
}

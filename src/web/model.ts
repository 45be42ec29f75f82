/** What the status page is sent: the first snapshot, and a node's details when it is opened. Types only. */
import type {LiveState, VertexLive} from './live.js'
import type {PictureGraph} from './picture.js'

export interface ProblemView {
  /** `file:line: message`, as the CLI prints it. */
  text: string
  details?: string[]
  hint?: string
}

/** The first message of the event stream (`snapshot`); `patch` messages (LivePatch) follow. */
export interface PageSnapshot {
  deployment: string
  file: string
  /** The plan's graph; empty when the file cannot be read. */
  graph: PictureGraph
  /** Why the file is refused (nothing can be created from it), each with its file:line. */
  problems: ProblemView[]
  live: LiveState
  /** Where the live states come from, or why they cannot be read. */
  stateSource: string
}

export interface NodeDetails {
  name: string
  role: string
  site?: string
  address?: string
  firstContact?: string
  lastContact?: string
  /** What the node reported when it phoned home; secrets masked. */
  facts: Record<string, unknown>
  services: Array<{name: string} & VertexLive>
  /** The last lines of each step's log of the last setup-node run, oldest step first. */
  logs: Array<{step: string; tail: string}>
}

/**
 * `nodeset status FILE --web`: the status page of a deployment. The file is read and planned (a
 * refused file is shown with its diagnostics, its cycle drawn in red); the live states are read from
 * the config server's state every POLL_MS and only what changed is pushed to the open pages. Before
 * anything exists every vertex is "not created" and nothing is created here: no workspace, no state.
 */
import fs from 'node:fs'
import {DiagnosticsError, formatDiagnostic, type Diagnostic} from '../core/diagnostics.js'
import {UserError} from '../core/errors.js'
import {redact} from '../core/redact.js'
import type {SiteSpec} from '../nodeset/types.js'
import {openConfigServer} from '../operations/connect.js'
import {loadPlan} from '../operations/load.js'
import {Workspace} from '../operations/workspace.js'
import {graphData} from '../plan/render.js'
import {readAsset} from './assets.js'
import {nodeDetails} from './details.js'
import {startPageServer} from './http.js'
import {diffLive, liveState, type LivePatch, type LiveState} from './live.js'
import type {PageSnapshot, ProblemView} from './model.js'
import type {PictureGraph} from './picture.js'
import {SitesStateSource} from './sites.js'
import {RemoteStateSource, SqliteStateSource, type Reading, type StateSource} from './state.js'

/** How often the state is read. */
export const POLL_MS = 400

export interface StatusPageOptions {
  listen?: {host: string; port: number}
  pollMs?: number
}

export interface StatusPage {
  url: string
  /** Refused files: why, as the CLI prints it. */
  problems: ProblemView[]
  close(): Promise<void>
}

interface Planned {
  deployment: string
  graph: PictureGraph
  problems: Diagnostic[]
  secrets: string[]
  workspace?: Workspace
  source?: () => Promise<StateSource>
}

export async function openStatusPage(file: string, options: StatusPageOptions = {}): Promise<StatusPage> {
  const planned = plan(file)
  const vertexIds = planned.graph.nodes.flatMap((n) => n.services.map((s) => `${n.name}/${s}`))
  let live: LiveState = liveState(vertexIds, undefined)
  let reading: Reading = {facts: () => undefined, secrets: []}
  let stateSource = planned.problems.length > 0 ? 'none: the file is refused' : 'not read yet'
  const listeners = new Set<(patch: LivePatch) => void>()
  let source: StateSource | undefined
  let closed = false

  async function poll(): Promise<void> {
    try {
      source ??= await planned.source!()
      stateSource = source.where
      reading = await source.read(Date.now())
      // Messages and what a service waits for come from the nodes: masked like everything shown.
      const secrets = [...planned.secrets, ...reading.secrets]
      const next = JSON.parse(redact(JSON.stringify(liveState(vertexIds, reading.status)), secrets)) as LiveState
      const patch = diffLive(live, next)
      live = next
      if (patch) for (const listener of listeners) listener(patch)
    } catch (error) {
      stateSource = redact(`cannot be read: ${(error as Error).message}`, planned.secrets)
    }
  }
  let timer: NodeJS.Timeout | undefined
  const loop = async () => {
    await poll()
    if (!closed) timer = setTimeout(loop, options.pollMs ?? POLL_MS)
  }
  if (planned.source) await loop()

  const problems = planned.problems.map(problemView)
  const server = await startPageServer(
    {
      snapshot: (): PageSnapshot => ({
        deployment: planned.deployment,
        file,
        graph: planned.graph,
        problems,
        live,
        stateSource,
      }),
      details: (node) =>
        nodeDetails(node, {
          graph: planned.graph,
          live,
          reading,
          logDir: (name) => planned.workspace?.logDir(name) ?? '/nonexistent',
          secrets: planned.secrets,
        }),
      subscribe(listener) {
        listeners.add(listener)
        return () => listeners.delete(listener)
      },
      asset: readAsset,
    },
    options.listen ?? {host: '127.0.0.1', port: 0},
  ).catch(async (error: unknown) => {
    closed = true
    clearTimeout(timer)
    await source?.close()
    throw error
  })
  return {
    url: server.url,
    problems,
    async close() {
      closed = true
      clearTimeout(timer)
      await server.close()
      await source?.close()
    },
  }
}

/** The file planned, or refused: its graph (none when it cannot be read), its problems, where its state is. */
function plan(file: string): Planned {
  // A refused file is shown; a file that is not there is a mistyped name.
  if (!fs.existsSync(file)) throw new UserError(`cannot read ${file}: no such file`)
  let loaded
  try {
    loaded = loadPlan(file)
  } catch (error) {
    if (!(error instanceof DiagnosticsError)) throw error
    return {deployment: file, graph: {nodes: [], edges: [], cycles: []}, problems: error.diagnostics, secrets: []}
  }
  const {nodeset, result} = loaded
  const workspace = new Workspace(nodeset.file, nodeset.general.name)
  const problems = result.analysis.problems
  const planned: Planned = {
    deployment: result.plan.deployment,
    graph: graphData(result),
    problems,
    secrets: nodeset.secrets,
    workspace,
  }
  if (problems.length > 0) return planned
  const deployment = result.plan.deployment
  const sourceOf = async (configServer: string, site?: SiteSpec): Promise<StateSource> => {
    if (configServer === 'embedded') return new SqliteStateSource(workspace.configServerDirOf(site?.name), deployment)
    const server = site && {name: site.name, configServer, ...(site.broker ? {broker: site.broker.value} : {})}
    const handle = await openConfigServer(nodeset, workspace, undefined, server)
    planned.secrets.push(handle.adminToken)
    return new RemoteStateSource(handle.nodeUrl, handle.client, () => handle.close())
  }
  const sites = nodeset.sites ?? []
  if (sites.length === 0) planned.source = () => sourceOf(nodeset.general.configServer)
  else {
    const siteOf = new Map(result.plan.nodes.map((n) => [n.name, n.site]))
    planned.source = async () => {
      const sources = new Map<string, StateSource>()
      for (const site of sites) sources.set(site.name, await sourceOf(site.configServer.value, site))
      return new SitesStateSource(sources, (node) => siteOf.get(node))
    }
  }
  return planned
}

function problemView(d: Diagnostic): ProblemView {
  const [text] = formatDiagnostic({message: d.message, source: d.source}).split('\n')
  return {text, ...(d.details ? {details: d.details} : {}), ...(d.hint ? {hint: d.hint} : {})}
}

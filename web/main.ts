/**
 * The status page in the browser: the first snapshot and then the changes arrive by server-sent events
 * (/events); the picture is laid out here by @viz-js/viz (WebAssembly, bundled: no network) from the
 * same DOT `nodeset graph --collapse` prints, drawn again only when it changed.
 */
import {instance} from '@viz-js/viz'
import {applyLive, type LivePatch, type LiveState} from '../src/web/live.js'
import type {PageSnapshot} from '../src/web/model.js'
import {showDetails} from './details.js'
import {showHeader, showLegend, showProblems} from './header.js'
import {drawGraph, type GraphView} from './graph.js'

const viz = instance()
let snapshot: PageSnapshot | undefined
let live: LiveState | undefined
const expanded = new Set<string>()
let selected: string | undefined
let view: GraphView | undefined
let drawing = Promise.resolve()

const byId = (id: string) => document.getElementById(id)!

function redraw(): void {
  drawing = drawing.then(async () => {
    if (!snapshot || !live) return
    const current = {snapshot, live}
    view = drawGraph(byId('graph'), await viz, current.snapshot, current.live, {
      expanded,
      previous: view,
      onOpen: (node) => select(node),
      onToggle: (group) => toggle(group),
    })
    showGroups()
  })
}

function select(node: string): void {
  selected = node
  void showDetails(byId('details'), node, {focus: true})
}

function toggle(group: string): void {
  if (expanded.has(group)) expanded.delete(group)
  else expanded.add(group)
  redraw()
}

/** A button per role that can be drawn as one vertex: keyboard users expand and collapse here too. */
function showGroups(): void {
  const nav = byId('groups')
  const groups = view?.picture.groups ?? []
  nav.hidden = groups.length === 0
  nav.replaceChildren(
    ...groups.map((g) => {
      const button = document.createElement('button')
      button.type = 'button'
      button.dataset.group = g.key
      button.setAttribute('aria-pressed', String(!g.collapsed))
      button.textContent = `${g.collapsed ? 'Expand' : 'Collapse'} ${g.site ? `${g.site} / ` : ''}${g.role} × ${g.nodes}`
      button.addEventListener('click', () => toggle(g.key))
      return button
    }),
  )
}

function connect(): void {
  const events = new EventSource('/events')
  events.addEventListener('snapshot', (event) => {
    snapshot = JSON.parse((event as MessageEvent<string>).data) as PageSnapshot
    live = snapshot.live
    document.title = `${snapshot.deployment}: nodeset status`
    byId('title').textContent = `${snapshot.deployment} (${snapshot.file})`
    byId('connection').textContent = ''
    showProblems(byId('problems'), snapshot.problems)
    showHeader(snapshot, live)
    redraw()
  })
  events.addEventListener('patch', (event) => {
    if (!snapshot || !live) return
    live = applyLive(live, JSON.parse((event as MessageEvent<string>).data) as LivePatch)
    showHeader(snapshot, live)
    redraw()
    if (selected) void showDetails(byId('details'), selected, {focus: false})
  })
  events.addEventListener('error', () => {
    byId('connection').textContent = 'connection lost: reconnecting… (is nodeset status --web still running?)'
  })
}

document.addEventListener('keydown', (event) => {
  if (event.key === 'Escape' && selected) {
    selected = undefined
    const details = byId('details')
    details.replaceChildren(
      Object.assign(document.createElement('p'), {className: 'hint', textContent: 'No node selected.'}),
    )
  }
})

showLegend(byId('legend'))
connect()

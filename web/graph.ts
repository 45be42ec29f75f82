/** Drawing the picture into the page, and making its vertices reachable by mouse and keyboard. */
import type {Viz} from '@viz-js/viz'
import {pictureDot, STATE_STYLES} from '../src/web/dot.js'
import type {LiveState} from '../src/web/live.js'
import type {PageSnapshot} from '../src/web/model.js'
import {groupCounts, picture, type Picture, type Vertex, vertexLive} from '../src/web/picture.js'

export interface GraphView {
  picture: Picture
  dot: string
  renders: number
}

export interface DrawOptions {
  expanded: ReadonlySet<string>
  previous?: GraphView
  onOpen(node: string): void
  onToggle(group: string): void
}

export function drawGraph(
  container: HTMLElement,
  viz: Viz,
  snapshot: PageSnapshot,
  live: LiveState,
  options: DrawOptions,
): GraphView {
  const pic = picture(snapshot.graph, {collapse: true, expanded: options.expanded})
  const dot = pictureDot(pic, snapshot.graph, snapshot.deployment, {live})
  const previous = options.previous
  if (previous && previous.dot === dot) return {...previous, picture: pic}
  if (pic.vertices.length === 0) {
    container.replaceChildren(
      Object.assign(document.createElement('p'), {className: 'hint', textContent: 'Nothing to draw: no nodes.'}),
    )
  } else {
    const focused = (document.activeElement as HTMLElement | null)?.closest?.('[data-id]')?.getAttribute('data-id')
    const svg = viz.renderSVGElement(dot)
    svg.setAttribute('role', 'group')
    svg.setAttribute('aria-label', `${snapshot.deployment}: ${pic.vertices.length} vertices`)
    pic.vertices.forEach((vertex, i) => {
      const element = svg.querySelector<SVGGElement>(`#v${i}`)
      if (element) decorate(element, vertex, snapshot, live, options)
    })
    container.replaceChildren(svg)
    if (focused) container.querySelector<SVGGElement>(`[data-id="${CSS.escape(focused)}"]`)?.focus()
  }
  const renders = (previous?.renders ?? 0) + 1
  container.dataset.renders = String(renders)
  if (renders === 1) document.body.dataset.firstRenderMs = String(Math.round(performance.now()))
  return {picture: pic, dot, renders}
}

function decorate(
  element: SVGGElement,
  vertex: Vertex,
  snapshot: PageSnapshot,
  live: LiveState,
  options: DrawOptions,
): void {
  const state = vertexLive(vertex, snapshot.graph, live)
  element.dataset.id = vertex.id
  element.dataset.kind = vertex.kind
  if (vertex.node) element.dataset.node = vertex.node
  if (state) element.dataset.state = state.state
  if (vertex.inCycle) element.dataset.cycle = 'true'
  element.setAttribute('tabindex', '0')
  element.setAttribute('role', 'button')
  element.setAttribute('aria-label', describe(vertex, snapshot, live))
  // The SVG's own tooltip says less than the label built here.
  element.querySelector('title')?.remove()
  const activate = () => (vertex.kind === 'group' ? options.onToggle(vertex.group!.key) : options.onOpen(vertex.node!))
  element.addEventListener('click', activate)
  element.addEventListener('keydown', (event) => {
    if (event.key !== 'Enter' && event.key !== ' ') return
    event.preventDefault()
    activate()
  })
}

/** What a screen reader says of a vertex, and the tooltip: its state in words and what it waits for. */
function describe(vertex: Vertex, snapshot: PageSnapshot, live: LiveState): string {
  const cycle = vertex.inCycle ? '; in a cycle' : ''
  if (vertex.kind === 'phone') return `${vertex.node}: its phone-home facts`
  if (vertex.kind === 'group') {
    const counts = Object.entries(groupCounts(vertex, snapshot.graph, live))
      .map(([state, n]) => `${n} ${state}`)
      .join(', ')
    return `${vertex.group!.role} × ${vertex.group!.nodes} nodes: ${counts}${cycle}; press Enter to expand`
  }
  const state = live.vertices[vertex.id] ?? {state: 'not created' as const}
  const waiting = state.waitingFor?.length ? `, waiting for ${state.waitingFor.join(', ')}` : ''
  const message = state.message ? `: ${state.message.split('\n').slice(-1)[0]}` : ''
  return `${vertex.service} on ${vertex.node}: ${STATE_STYLES[state.state].icon} ${state.state}${waiting}${message}${cycle}`
}

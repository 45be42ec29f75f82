/** The page's header (phase, deadline), a refused file's problems, and the legend. */
import {CYCLE_COLOR, STATE_STYLES} from '../src/web/dot.js'
import {type LiveState, VERTEX_STATES} from '../src/web/live.js'
import type {PageSnapshot, ProblemView} from '../src/web/model.js'

const element = <K extends keyof HTMLElementTagNameMap>(tag: K, text?: string, className?: string) => {
  const e = document.createElement(tag)
  if (text !== undefined) e.textContent = text
  if (className) e.className = className
  return e
}

let last: {snapshot: PageSnapshot; live: LiveState} | undefined

export function showHeader(snapshot: PageSnapshot, live: LiveState): void {
  last = {snapshot, live}
  const phase = document.getElementById('phase')!
  phase.dataset.phase = live.phase
  phase.textContent =
    snapshot.problems.length > 0
      ? 'refused: nothing can be created from this file'
      : `phase: ${live.phase}${live.reason ? ` — ${live.reason}` : ''}`
  const deadline = document.getElementById('deadline')!
  const parts = [`state: ${snapshot.stateSource}`]
  if (live.registeredAt) parts.unshift(`registered ${live.registeredAt}`)
  if (live.deadline) parts.unshift(`start-up deadline ${live.deadline} (${relative(Date.parse(live.deadline))})`)
  deadline.textContent = parts.join(' · ')
}

// The deadline's "in 2m" keeps counting between changes.
setInterval(() => last && showHeader(last.snapshot, last.live), 1000)

function relative(at: number): string {
  const seconds = Math.round((at - Date.now()) / 1000)
  const size = Math.abs(seconds)
  const text = size < 90 ? `${size}s` : size < 5400 ? `${Math.round(size / 60)}m` : `${Math.round(size / 3600)}h`
  return seconds >= 0 ? `in ${text}` : `passed ${text} ago`
}

export function showProblems(section: HTMLElement, problems: ProblemView[]): void {
  section.hidden = problems.length === 0
  const list = element('ul')
  for (const p of problems) {
    const item = element('li', undefined, 'problem')
    item.append(element('strong', p.text))
    if (p.details?.length) item.append(element('pre', p.details.join('\n')))
    if (p.hint) item.append(element('p', `hint: ${p.hint}`))
    list.append(item)
  }
  section.replaceChildren(element('h2', `Refused: ${problems.length} problem${problems.length === 1 ? '' : 's'}`), list)
}

export function showLegend(footer: HTMLElement): void {
  const list = element('ul')
  for (const state of VERTEX_STATES) {
    const style = STATE_STYLES[state]
    const item = element('li', undefined, 'legend-state')
    item.dataset.state = state
    const swatch = element('span', style.icon, 'swatch')
    swatch.style.background = style.fill
    swatch.style.borderColor = style.border
    swatch.setAttribute('aria-hidden', 'true')
    item.append(swatch, element('span', state))
    list.append(item)
  }
  const edges = element('ul')
  const edge = (text: string, css: string, color = '#374151') => {
    const item = element('li')
    const line = element('span', undefined, 'edge-sample')
    line.style.borderTop = `2px ${css} ${color}`
    line.setAttribute('aria-hidden', 'true')
    item.append(line, element('span', text))
    edges.append(item)
  }
  edge('needs an output', 'solid')
  edge('runs after', 'dotted')
  edge('needs a fact (phone-home)', 'dashed')
  edge('⟲ in a cycle (refused)', 'solid', CYCLE_COLOR)
  footer.replaceChildren(element('h2', 'Legend'), list, edges)
}

/** The selected node: address, facts, its services' states and the tail of its setup logs. */
import {STATE_STYLES} from '../src/web/dot.js'
import type {NodeDetails} from '../src/web/model.js'

const element = <K extends keyof HTMLElementTagNameMap>(tag: K, text?: string, className?: string) => {
  const e = document.createElement(tag)
  if (text !== undefined) e.textContent = text
  if (className) e.className = className
  return e
}

/** Open log sections stay open when the panel is drawn again with fresh details. */
const openLogs = new Set<string>()
let shown: string | undefined

export async function showDetails(panel: HTMLElement, node: string, options: {focus: boolean}): Promise<void> {
  const response = await fetch(`/api/nodes/${encodeURIComponent(node)}`)
  if (!response.ok) {
    panel.replaceChildren(element('p', `${node}: ${response.status} ${await response.text()}`, 'hint'))
    return
  }
  const details = (await response.json()) as NodeDetails
  const text = JSON.stringify(details)
  if (!options.focus && panel.dataset.node === node && panel.dataset.content === text) return
  if (shown !== node) openLogs.clear()
  shown = node
  panel.dataset.node = node
  panel.dataset.content = text
  panel.replaceChildren(...content(details))
  if (options.focus) panel.focus()
}

function content(d: NodeDetails): HTMLElement[] {
  const out: HTMLElement[] = [element('h2', d.name)]
  const about = element('dl')
  const row = (term: string, value: string | undefined) => {
    if (value === undefined) return
    about.append(element('dt', term), element('dd', value))
  }
  row('role', d.role)
  row('site', d.site)
  row('address', d.address ?? 'not known yet (the node has not phoned home)')
  row('first phone-home', d.firstContact)
  row('last phone-home', d.lastContact)
  out.push(about, element('h3', 'Services'))
  const services = element('table', undefined, 'services')
  services.append(headRow('service', 'state', 'detail'))
  for (const s of d.services) {
    const tr = element('tr')
    tr.dataset.service = s.name
    tr.dataset.state = s.state
    const state = element('td', `${STATE_STYLES[s.state].icon} ${s.state}`)
    state.style.background = STATE_STYLES[s.state].fill
    const detail = s.waitingFor?.length
      ? `waiting for ${s.waitingFor.join(', ')}`
      : [s.exitCode === undefined ? '' : `exit code ${s.exitCode}`, s.message ?? ''].filter(Boolean).join(': ')
    tr.append(element('td', s.name), state, element('td', undefined, 'message'))
    tr.lastElementChild!.append(element('pre', detail))
    services.append(tr)
  }
  out.push(services, element('h3', 'Facts'))
  const facts = Object.entries(d.facts)
  if (facts.length === 0) out.push(element('p', 'none yet', 'hint'))
  else {
    const table = element('table', undefined, 'facts')
    for (const [key, value] of facts) {
      const tr = element('tr')
      tr.append(element('th', key), element('td'))
      tr.lastElementChild!.append(element('pre', Array.isArray(value) ? value.join('\n') : String(value)))
      table.append(tr)
    }
    out.push(table)
  }
  out.push(element('h3', 'Setup log (last lines of each step)'))
  if (d.logs.length === 0) out.push(element('p', 'no setup-node run yet', 'hint'))
  for (const log of d.logs) {
    const section = element('details', undefined, 'log')
    section.dataset.step = log.step
    section.open = openLogs.has(log.step) || d.logs.length <= 3
    section.addEventListener('toggle', () => (section.open ? openLogs.add(log.step) : openLogs.delete(log.step)))
    section.append(element('summary', log.step), element('pre', log.tail || '(empty)'))
    out.push(section)
  }
  return out
}

function headRow(...cells: string[]): HTMLTableRowElement {
  const tr = element('tr')
  for (const c of cells) tr.append(element('th', c))
  return tr
}

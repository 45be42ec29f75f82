/** The picture shared by `nodeset graph` and the status page: clusters per role, collapse, states, and 5,000 nodes. */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {describe, expect, it} from 'vitest'
import {loadPlan} from '../../src/operations/load.js'
import {graphData} from '../../src/plan/render.js'
import {pictureDot} from '../../src/web/dot.js'
import {graphSvg, planDot} from '../../src/web/draw.js'
import {liveState} from '../../src/web/live.js'
import {COLLAPSE_ABOVE, groupCounts, picture, type PictureGraph, vertexLive} from '../../src/web/picture.js'

const ROOT = path.resolve(__dirname, '../..')

function plannedGraph(roles: string): PictureGraph {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-picture-'))
  const file = path.join(dir, 'p.conf')
  fs.writeFileSync(
    file,
    `[general]\nname = p\nbase_domain = p.test\nservices_dir = ${path.join(ROOT, 'test/fixtures/services')}\n[provider]\nprovider = local\nsubnet = 10.200.0.0/16\n${roles}`,
  )
  try {
    return graphData(loadPlan(file).result)
  } finally {
    fs.rmSync(dir, {recursive: true, force: true})
  }
}

const workers = (roles: number, nodes: number) =>
  Array.from(
    {length: roles},
    (_, i) => `[role:w${i + 1}]\nnodes = ${nodes}\nservices = probe\nprobe.db_host = {{ip "service:mysql"}}\n`,
  ).join('')

describe('the picture', () => {
  const graph = plannedGraph(
    `[service:mysql]\n${workers(1, 100)}[role:few]\nnodes = ${COLLAPSE_ABOVE}\nservices = probe\n`,
  )

  it('draws one cluster per role and every (node, service) vertex when not collapsed', () => {
    const pic = picture(graph, {collapse: false})
    expect(pic.clusters.map((c) => c.role).sort()).toEqual(['few', 'service:mysql', 'w1'])
    expect(pic.vertices.filter((v) => v.kind === 'step')).toHaveLength(1 + 100 + COLLAPSE_ABOVE)
    // The database's phone-home: the fact its address is, 100 times.
    expect(pic.vertices.filter((v) => v.kind === 'phone').map((v) => v.id)).toEqual(['mysql.p.test'])
    expect(pic.edges.filter((e) => e.kind === 'fact')).toHaveLength(100)
  })

  it('collapses a role of more than a handful of nodes into one vertex, its edges counted', () => {
    const pic = picture(graph, {collapse: true})
    const group = pic.vertices.find((v) => v.kind === 'group')!
    expect(group.group).toEqual({key: '|w1', role: 'w1', nodes: 100, services: ['probe']})
    expect(pic.vertices.filter((v) => v.kind === 'step')).toHaveLength(1 + COLLAPSE_ABOVE)
    expect(pic.edges).toEqual([
      {from: 'group:|w1', to: 'mysql.p.test', kind: 'fact', key: 'ip', count: 100, inCycle: false},
    ])
    expect(pic.groups).toEqual([{key: '|w1', role: 'w1', nodes: 100, collapsed: true}])
    const dot = pictureDot(pic, graph, 'p')
    expect(dot).toContain('"group:|w1" [label="w1 × 100\\nprobe", shape=box3d]')
    expect(dot).toContain('"group:|w1" -> "mysql.p.test" [label="ip ×100", style=dashed]')
  })

  it('expands a group on request', () => {
    const pic = picture(graph, {collapse: true, expanded: new Set(['|w1'])})
    expect(pic.vertices.some((v) => v.kind === 'group')).toBe(false)
    expect(pic.groups[0].collapsed).toBe(false)
  })

  it('groups roles by site when nodes have one', () => {
    const sited: PictureGraph = {
      ...graph,
      nodes: graph.nodes.map((n, i) => ({...n, site: i % 2 ? 'east' : 'west'})),
    }
    const pic = picture(sited, {collapse: true})
    expect(new Set(pic.clusters.map((c) => c.key))).toContain('east|w1')
    expect(pic.vertices.filter((v) => v.kind === 'group').map((v) => v.group!.nodes)).toEqual([50, 50])
    expect(pictureDot(pic, sited, 'p')).toMatch(/subgraph "cluster_site_east" \{\n {4}label="site east"/)
  })

  it('counts a group by state and draws it by the most pressing one', () => {
    const ids = graph.nodes.flatMap((n) => n.services.map((s) => `${n.name}/${s}`))
    const live = liveState(ids, undefined)
    const names = graph.nodes.filter((n) => n.role === 'w1').map((n) => n.name)
    for (const name of names.slice(0, 2)) live.vertices[`${name}/probe`] = {state: 'succeeded'}
    live.vertices[`${names[2]}/probe`] = {state: 'failed'}
    const pic = picture(graph, {collapse: true})
    const group = pic.vertices.find((v) => v.kind === 'group')!
    expect(groupCounts(group, graph, live)).toEqual({succeeded: 2, failed: 1, 'not created': 97})
    expect(vertexLive(group, graph, live)).toEqual({state: 'failed'})
    const dot = pictureDot(pic, graph, 'p', {live})
    expect(dot).toContain('✔ 2 succeeded  ✖ 1 failed  ○ 97 not created')
    expect(dot).toMatch(
      /"mysql.p.test\/mysql" \[label="mysql\\nmysql.p.test\\n○ not created", style="rounded,filled", fillcolor="#f3f4f6", color="#6b7280", id="v\d+"\]/,
    )
  })

  it('draws a cycle in red, its edges too', () => {
    const cyclic = graphData(loadPlan(path.join(ROOT, 'examples/deadlock.conf')).result)
    const pic = picture(cyclic, {collapse: true})
    expect(pic.vertices.map((v) => [v.id, v.inCycle])).toEqual([
      ['i1.example.test/consume', true],
      ['i2.example.test/consume', true],
    ])
    expect(pic.edges.every((e) => e.inCycle)).toBe(true)
    expect(pictureDot(pic, cyclic, 'deadlock')).toContain(
      '"i1.example.test/consume" -> "i2.example.test/consume" [label="value", color="#dc2626", fontcolor="#dc2626", penwidth=2]',
    )
  })
})

describe('a 5,000-node plan', () => {
  const big = plannedGraph(`[service:mysql]\n${workers(5, 1000)}`)

  it('renders as SVG, every vertex in it', async () => {
    expect(big.nodes).toHaveLength(5001)
    const svg = await graphSvg(planDot(big, 'big'))
    expect(svg).toMatch(/^<\?xml[\s\S]*<\/svg>\s*$/)
    expect(svg.match(/class="node"/g)).toHaveLength(5001 + 1)
  }, 120_000)

  it('collapsed, is a handful of vertices', async () => {
    const svg = await graphSvg(planDot(big, 'big', {collapse: true}))
    expect(svg.match(/class="node"/g)).toHaveLength(5 + 2)
    expect(svg).toContain('w3 × 1000')
  })
})

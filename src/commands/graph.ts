import {Args, Flags} from '@oclif/core'
import {NodesetCommand} from '../cli/base.js'
import {loadPlan} from '../operations/load.js'
import {graphData, graphDot, graphText} from '../plan/render.js'

export default class Graph extends NodesetCommand {
  static summary = 'Draw the relationships between nodes and services.'
  static description = `Vertices are (node, service) pairs, grouped by node; an edge means "needs": a solid edge for an output of another service, a dotted one for "after", a dashed one for a fact the node reports when it phones home (its address, hostname…). Members of a cycle are drawn in red.

Formats: text (default), dot (Graphviz source), svg (rendered here, no Graphviz needed), json.`
  static examples = [
    '<%= config.bin %> graph examples/interdependent.conf',
    '<%= config.bin %> graph examples/foobar.conf --format svg > foobar.svg',
  ]
  static args = {file: Args.string({description: 'The nodeset file.', required: true})}
  static flags = {
    format: Flags.string({
      char: 'f',
      description: 'Output format.',
      options: ['text', 'dot', 'svg', 'json'],
      default: 'text',
    }),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(Graph)
    const {nodeset, result} = loadPlan(args.file)
    this.secrets = nodeset.secrets
    const data = graphData(result)
    const format = flags.json ? 'json' : flags.format
    if (format === 'json') this.printJson(data)
    else if (format === 'dot') this.print(graphDot(data, nodeset.general.name))
    else if (format === 'svg') {
      const {instance} = await import('@viz-js/viz')
      const viz = await instance()
      this.print(viz.renderString(graphDot(data, nodeset.general.name), {format: 'svg', engine: 'dot'}))
    } else this.print(graphText(data))
  }
}

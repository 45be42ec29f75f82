import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'
import {NodesetCommand} from '../cli/base.js'
import {loadPlan} from '../operations/load.js'
import {graphData, graphText} from '../plan/render.js'
import {graphSvg, planDot} from '../web/index.js'

export default class Graph extends NodesetCommand {
  static summary = 'Draw the relationships between nodes and services.'
  static description = `Vertices are (node, service) pairs, grouped by role; an edge means "needs": a solid edge for an output of another service, a dotted one for "after", a dashed one for a fact a node reports when it phones home (its address, hostname…). Members of a cycle are drawn in red.

With --collapse, each role of more than 5 nodes is one vertex ("appserver × 100"), its edges counted: the picture the status page (status --web) starts from.

Formats: text (default), dot (Graphviz source), svg (rendered here, no Graphviz needed), json.`
  static examples = [
    '<%= config.bin %> graph examples/interdependent.conf',
    '<%= config.bin %> graph examples/foobar.conf --format svg > foobar.svg',
    '<%= config.bin %> graph big.conf --format svg --collapse > big.svg',
  ]
  static args = {file: Args.string({description: 'The nodeset file.', required: true})}
  static flags = {
    format: Flags.string({
      char: 'f',
      description: 'Output format.',
      options: ['text', 'dot', 'svg', 'json'],
      default: 'text',
    }),
    collapse: Flags.boolean({description: 'dot and svg: draw each role of more than 5 nodes as one vertex.'}),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(Graph)
    const {nodeset, result} = loadPlan(args.file)
    this.secrets = nodeset.secrets
    const data = graphData(result)
    const format = flags.json ? 'json' : flags.format
    const name = nodeset.general.name
    if (format === 'json') this.printJson(data)
    else if (format === 'dot') this.print(planDot(data, name, {collapse: flags.collapse}))
    else if (format === 'svg') this.print(await graphSvg(planDot(data, name, {collapse: flags.collapse})))
    else this.print(graphText(data))
  }
}

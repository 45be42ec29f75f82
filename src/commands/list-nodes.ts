import {NodesetCommand} from '../cli/base.js'
import {fileArg, deploymentFlags} from '../cli/flags.js'
import {nodesTable} from '../cli/views.js'
import {listNodes} from '../operations/status.js'

export default class ListNodes extends NodesetCommand {
  static summary = 'List the nodes of a deployment as the provider sees them, with their last phone-home.'
  static description = `The provider (the cloud, by its tags) is the truth about which nodes exist; this shows them beside the plan: planned nodes that are missing, and nodes the file no longer has.`
  static examples = [
    '<%= config.bin %> list-nodes examples/local.conf',
    '<%= config.bin %> list-nodes foobar.conf --json',
  ]
  static flags = deploymentFlags
  static args = {file: fileArg}

  async run(): Promise<void> {
    const {args, flags} = await this.parse(ListNodes)
    const dep = this.openDeployment(args.file, flags)
    const nodes = await listNodes(dep)
    if (flags.json) this.printJson({deployment: dep.name, nodes})
    else this.print(nodesTable(nodes))
  }
}

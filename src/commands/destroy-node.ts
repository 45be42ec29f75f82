import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'
import {NodesetCommand} from '../cli/base.js'
import {fileArg, trustOnFirstUseFlag, deploymentFlags} from '../cli/flags.js'
import {destroy} from '../operations/destroy.js'

export default class DestroyNode extends NodesetCommand {
  static summary = 'Terminate nodes, and forget them in the config server, the hosts maps and the pinned host keys.'
  static description = `Without NODE names, every node of the deployment (planned or not) is destroyed. Asks first unless --yes. The nodes that stay are rewired at once: their role maps and hosts blocks (and this machine's, when it has the block) forget the destroyed ones; run setup-node to update services that depend on membership, such as the balancer.`
  static examples = [
    '<%= config.bin %> destroy-node examples/local.conf --yes',
    '<%= config.bin %> destroy-node foobar.conf app3.foobar.com',
  ]
  static strict = false
  static args = {file: fileArg, node: Args.string({description: 'Node names (default: all).', required: false})}
  static flags = {
    ...deploymentFlags,
    'trust-on-first-use': trustOnFirstUseFlag,
    yes: Flags.boolean({char: 'y', description: 'Do not ask for confirmation.', default: false}),
  }

  async run(): Promise<void> {
    const {args, argv, flags} = await this.parse(DestroyNode)
    const dep = this.openDeployment(args.file, flags)
    const {destroyed, rewired} = await destroy(dep, (argv as string[]).slice(1), {yes: flags.yes})
    const failed = rewired.filter((r) => r.status === 'failed')
    if (flags.json) {
      this.printJson({destroyed, rewired: rewired.map((r) => ({node: r.node, status: r.status, message: r.message}))})
    } else {
      this.print(destroyed.length ? `destroyed ${destroyed.join(', ')}` : 'nothing to destroy')
      const ok = rewired.filter((r) => r.status !== 'failed').map((r) => r.node)
      if (rewired.length) this.print(`rewired ${ok.join(', ') || 'no node'}`)
      for (const r of failed) this.note(`could not rewire ${r.node}: ${r.message}; run nodeset setup-node ${args.file}`)
    }
    if (failed.length) this.exit(1)
  }
}

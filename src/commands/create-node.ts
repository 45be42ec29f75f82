import * as Flags from '@oclif/core/flags'
import {NodesetCommand} from '../cli/base.js'
import {fileArg, inputFlags, trustOnFirstUseFlag, deploymentFlags} from '../cli/flags.js'
import {createdTable, previewText} from '../cli/views.js'
import {create} from '../operations/create.js'
import {preview} from '../operations/preview.js'
import {BootTimeoutError, type NodeRow} from '../operations/nodes.js'

export default class CreateNode extends NodesetCommand {
  static summary = 'Create the nodes the nodeset file describes, boot them, and wait until each has phoned home.'
  static description = `Reconciles the provider with the plan: creates the nodes that are missing (raise "nodes" and re-run to scale up), never duplicates one that exists (a re-run is a no-op), and lists nodes the file no longer has (removed only with --prune). Registers the deployment with the config server, boots each new node with user data that phones home, and by default waits until every node has, within [general] boot_timeout; then pins each node's SSH host key as it reported it.

The file is checked first: a bad file creates nothing (exit code 2).`
  static examples = [
    '<%= config.bin %> create-node examples/local.conf',
    '<%= config.bin %> create-node foobar.conf --prune --json',
  ]
  static args = {file: fileArg}
  static flags = {
    ...deploymentFlags,
    'trust-on-first-use': trustOnFirstUseFlag,
    ...inputFlags,
    prune: Flags.boolean({
      description: 'Destroy nodes of this deployment that the file no longer has.',
      default: false,
    }),
    wait: Flags.boolean({
      description: 'Wait until every node has phoned home (--no-wait to return once created).',
      default: true,
      allowNo: true,
    }),
    'dry-run': Flags.boolean({description: 'Say what would be created and pruned; change nothing.', default: false}),
    yes: Flags.boolean({char: 'y', description: 'With --prune: destroy without asking.', default: false}),
    'rollback-on-failure': Flags.boolean({
      description: 'When a node does not phone home in time, destroy the nodes this run created.',
      default: false,
    }),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(CreateNode)
    const dep = this.openDeployment(args.file, flags)
    if (flags['dry-run']) {
      const p = await preview(dep)
      return flags.json ? this.printJson({type: 'dry-run', ...p}) : this.print(previewText(p, {prune: flags.prune}))
    }
    const options = {
      sets: flags.set ?? [],
      valuesFile: flags.values,
      prune: flags.prune,
      yes: flags.yes,
      wait: flags.wait,
      rollbackOnFailure: flags['rollback-on-failure'],
    }
    const rows = await create(dep, options).catch((error) => {
      if (error instanceof BootTimeoutError) this.printRows(error.rows)
      throw error
    })
    this.printRows(rows)
  }

  private printRows(rows: NodeRow[]): void {
    if (this.jsonMode) this.printJson({type: 'result', nodes: rows})
    else this.print('\n' + createdTable(rows))
  }
}

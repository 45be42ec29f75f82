import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'
import {NodesetCommand} from '../cli/base.js'
import {fileArg, deploymentFlags} from '../cli/flags.js'
import {execText, prefixLines} from '../cli/views.js'
import {UserError} from '../core/errors.js'
import {execOn, targetNodes} from '../operations/remote.js'

export default class Exec extends NodesetCommand {
  static summary = 'Run a shell command on nodes, by role or by name, in parallel; output prefixed by node.'
  static description = `TARGETs are node names or roles (appserver, balancer, service:mysql…); the command follows "--" and runs as root through each node's SSH session, with its host key verified. Output streams as it comes, each line prefixed by its node; then a summary of exit codes. Exits 1 when any node failed or could not be reached.`
  static examples = [
    '<%= config.bin %> exec examples/local.conf appserver -- uptime',
    "<%= config.bin %> exec foobar.conf app1.foobar.com service:mysql -- 'df -h /'",
    '<%= config.bin %> exec foobar.conf balancer --json -- nginx -t',
  ]
  static strict = false
  static args = {
    file: fileArg,
    target: Args.string({description: 'Node names or roles, then -- and the command.', required: true}),
  }
  static flags = {
    ...deploymentFlags,
    concurrency: Flags.integer({description: 'Nodes at once.', default: 16, min: 1, max: 256}),
  }

  async run(): Promise<void> {
    const {args, argv, flags} = await this.parse(Exec)
    const dashes = this.argv.indexOf('--')
    const words = (argv as string[]).slice(1)
    const count = dashes < 0 ? 0 : this.argv.length - dashes - 1
    const [targets, command] = [words.slice(0, words.length - count), words.slice(words.length - count)]
    if (targets.length === 0 || command.length === 0)
      throw new UserError('give the targets, then -- and the command: nodeset exec FILE appserver -- uptime', 2)
    const dep = this.openDeployment(args.file, flags)
    const nodes = await targetNodes(dep, targets)
    const onOutput = flags.json ? undefined : (node: string, chunk: string) => this.print(prefixLines(node, chunk))
    const outcomes = await execOn(dep, nodes, command.join(' '), {concurrency: flags.concurrency, onOutput})
    if (flags.json) this.printJson({type: 'result', ok: outcomes.every((o) => o.code === 0), nodes: outcomes})
    else this.print(execText(outcomes))
    if (outcomes.some((o) => o.code !== 0)) this.exit(1)
  }
}

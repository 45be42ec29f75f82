import fs from 'node:fs'
import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'
import {NodesetCommand} from '../cli/base.js'
import {fileArg, deploymentFlags} from '../cli/flags.js'
import {UserError} from '../core/errors.js'
import {logFiles, remoteLogCommand, targetNodes} from '../operations/remote.js'

export default class Logs extends NodesetCommand {
  static summary =
    "Show a node's logs: setup-node's step logs kept here, and the agent's or a service's log on the node."
  static description = `Without SERVICE: every step log setup-node kept for the node (.nodeset/<deployment>/logs/<node>/), then the end of the agent's log on the node (/var/log/nodeset-agent.log). With SERVICE: that step's log here and the service's own log on the node (/var/log/nodeset/SERVICE*). --follow keeps printing what the node's logs add until interrupted.`
  static examples = [
    '<%= config.bin %> logs examples/local.conf app1.nodeset.test',
    '<%= config.bin %> logs examples/local.conf mysql.nodeset.test mysql --follow',
  ]
  static args = {
    file: fileArg,
    node: Args.string({description: 'The node.', required: true}),
    service: Args.string({description: 'One service (or step: base, wiring) of the node.'}),
  }
  static flags = {
    ...deploymentFlags,
    follow: Flags.boolean({char: 'f', description: "Keep printing what the node's logs add.", default: false}),
    lines: Flags.integer({char: 'n', description: 'Lines from the end of each log on the node.', default: 200, min: 1}),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(Logs)
    const dep = this.openDeployment(args.file, flags)
    const [node] = await targetNodes(dep, [args.node])
    const files = logFiles(dep, node.name, args.service)
    for (const file of files.local) this.print(`== ${file}\n${fs.readFileSync(file, 'utf8')}`)
    const session = await dep.session(node)
    const onOutput = (chunk: string) => process.stdout.write(chunk)
    this.print(`== ${node.name}: ${files.remote.join(' ')}`)
    const result = await session.exec(remoteLogCommand(files.remote, flags.follow, flags.lines), {
      label: 'logs',
      onOutput,
    })
    if (result.code === 3 && files.local.length === 0)
      throw new UserError(`no logs of ${args.service ?? 'the agent'} on ${node.name}`)
  }
}

import * as Args from '@oclif/core/args'
import {NodesetCommand} from '../cli/base.js'
import {fileArg, deploymentFlags} from '../cli/flags.js'
import {releasesTable} from '../cli/views.js'
import {releases} from '../operations/deploy.js'

export default class Releases extends NodesetCommand {
  static summary =
    "List an app's releases on each appserver: id, when it was made, which is current and which came before it."
  static examples = [
    '<%= config.bin %> releases hello examples/local.conf',
    '<%= config.bin %> releases blog foobar.conf --json',
  ]
  static flags = deploymentFlags
  static args = {
    app: Args.string({description: 'The app name (as the locations name it).', required: true}),
    file: fileArg,
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(Releases)
    const {file, rest} = this.nodesetFileAmong([args.app, args.file], 1)
    const nodes = await releases(this.openDeployment(file, flags), rest[0])
    if (flags.json) this.printJson({app: rest[0], nodes})
    else this.print(releasesTable(nodes))
  }
}

import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'
import {NodesetCommand} from '../cli/base.js'
import {fileArg, rolloutFlags, deploymentFlags} from '../cli/flags.js'
import {deployTable} from '../cli/views.js'
import {UserError} from '../core/errors.js'
import {RELEASE_ID_PATTERN} from '../deploy/release.js'
import {failureSummary} from '../deploy/update.js'
import {rollback} from '../operations/deploy.js'

export default class Rollback extends NodesetCommand {
  static summary = 'Go back to an earlier release of an app, staged like an update (the migration hook does not run).'
  static description = `By default each appserver goes back to the release it ran before its current one (they must agree); --to ID picks any release \`nodeset releases\` lists on every appserver. The first appserver switches
alone, then the rest --batch-size at a time, each out of the balancer's rotation while it switches and
back in once healthy. If one fails, every appserver that switched returns to what it ran.

Data is not rolled back: the database stays as the newer release's migration left it.`
  static examples = [
    '<%= config.bin %> rollback hello examples/local.conf',
    '<%= config.bin %> rollback blog foobar.conf --to 20250102T030405Z-1a2b3c4d',
  ]
  static args = {
    app: Args.string({description: 'The app name (as the locations name it).', required: true}),
    file: fileArg,
  }
  static flags = {
    ...deploymentFlags,
    ...rolloutFlags,
    to: Flags.string({description: 'The release to go back to (an id from nodeset releases).'}),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(Rollback)
    const {file, rest} = this.nodesetFileAmong([args.app, args.file], 1)
    const app = rest[0]
    if (flags.to && !RELEASE_ID_PATTERN.test(flags.to)) {
      const hint = `see nodeset releases ${app} ${file}`
      throw new UserError(`--to ${flags.to} is not a release id (like 20250102T030405Z-1a2b3c4d): ${hint}`, 2)
    }
    const options = {batchSize: flags['batch-size'], healthTimeoutSec: flags['health-timeout']}
    const result = await rollback(this.openDeployment(file, flags), app, flags.to, options)
    const error = result.ok ? undefined : failureSummary(result, 'rollback')
    if (flags.json) this.printJson({type: 'result', ...result, error})
    else this.print('\n' + deployTable(result))
    if (error && !flags.json) this.note('\n' + error)
    if (error) this.exit(1)
  }
}

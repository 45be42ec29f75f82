import {Args, Flags} from '@oclif/core'
import {NodesetCommand} from '../cli/base.js'
import {UserError} from '../core/errors.js'
import {openDeployment} from '../operations/deployment.js'
import {connectDeployment} from '../operations/deploy-context.js'
import {RELEASE_ID_PATTERN} from '../deploy/release.js'
import {deployOutcomes, deployTable, withAppContext} from '../operations/deploy-run.js'
import {failureSummary, rollbackApp} from '../deploy/update.js'
import {rolloutFlags} from './update.js'

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
    file: Args.string({description: 'The nodeset file.', required: true}),
  }
  static flags = {
    ...rolloutFlags,
    to: Flags.string({description: 'The release to go back to (an id from nodeset releases).'}),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(Rollback)
    if (flags.to && !RELEASE_ID_PATTERN.test(flags.to))
      throw new UserError(
        `--to ${flags.to} is not a release id (like 20250102T030405Z-1a2b3c4d): see nodeset releases ${args.app} ${args.file}`,
        2,
      )
    const deployment = openDeployment(args.file)
    this.secrets = [...deployment.nodeset.secrets]
    const opened = await connectDeployment(deployment, this.secrets)
    try {
      const result = await withAppContext(
        opened,
        {file: args.file, app: args.app, services: [], json: flags.json, secrets: this.secrets, lock: true},
        (ctx) =>
          rollbackApp(ctx, flags.to, {
            batchSize: flags['batch-size'],
            healthTimeoutSec: flags['health-timeout'],
            hookTimeoutSec: 60,
          }),
        deployOutcomes,
      )
      if (flags.json)
        this.printJson({type: 'result', ...result, error: result.ok ? undefined : failureSummary(result, 'rollback')})
      else this.print('\n' + deployTable(result))
      if (!result.ok) {
        if (!flags.json) this.note('\n' + failureSummary(result, 'rollback'))
        this.exit(1)
      }
    } finally {
      await opened.close()
    }
  }
}

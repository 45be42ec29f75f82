import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'
import {NodesetCommand} from '../cli/base.js'
import {fileArg, inputFlags, forceReleaseFlag, hookTimeoutFlag, rolloutFlags, deploymentFlags} from '../cli/flags.js'
import {deployTable, previewText} from '../cli/views.js'
import {appConfig} from '../operations/deploy.js'
import {preview} from '../operations/preview.js'
import {up} from '../operations/up.js'

export default class Up extends NodesetCommand {
  static summary = 'Create the nodes, set them up and deploy the apps: create-node, setup-node and update in one go.'
  static description = `Runs what create-node, setup-node and update do, in that order, and stops at the first phase that fails. Every phase is idempotent: run it again after fixing the cause and finished work is skipped. Every APP_DIR's app.ini is checked before anything is created. Ends with the URL to open: the balancer's, or each appserver's without one.`
  static examples = [
    '<%= config.bin %> up examples/local.conf examples/hello-app',
    '<%= config.bin %> up foobar.conf blog/ shop/ --json',
  ]
  static strict = false
  static args = {
    file: fileArg,
    app_dir: Args.string({description: 'App directories to deploy (each with app.ini); any number.'}),
  }
  static flags = {
    ...deploymentFlags,
    ...rolloutFlags,
    ...inputFlags,
    'hook-timeout': hookTimeoutFlag,
    force: forceReleaseFlag,
    'dry-run': Flags.boolean({
      description: 'Say what would be created, set up and deployed; change nothing.',
      default: false,
    }),
  }

  async run(): Promise<void> {
    const {argv, flags} = await this.parse(Up)
    const {file, rest: appDirs} = this.nodesetFileAmong(argv as string[], 0)
    const dep = this.openDeployment(file, flags)
    if (flags['dry-run']) {
      const apps = appDirs.map((dir) => appConfig(dep, dir).appName)
      const p = await preview(dep)
      return flags.json
        ? this.printJson({type: 'dry-run', ...p, apps})
        : this.print(previewText(p, {prune: false, apps}))
    }
    const options = {
      sets: flags.set ?? [],
      valuesFile: flags.values,
      batchSize: flags['batch-size'],
      healthTimeoutSec: flags['health-timeout'],
      hookTimeoutSec: flags['hook-timeout'],
      force: flags.force,
    }
    const {apps, urls, nothingChanged} = await up(dep, appDirs, options)
    if (flags.json) return this.printJson({type: 'result', ok: true, nothingChanged, apps, urls})
    if (nothingChanged) return this.print(`\nnothing changed: ${dep.name} is up as the file says: ${urls.join(' ')}`)
    for (const result of apps) this.print(`\n${result.app}:\n${deployTable(result)}`)
    this.print(`\n${dep.name} is up: ${urls.join(' ') || '(no balancer or app to open)'}`)
  }
}

import {stripVTControlCharacters} from 'node:util'
import {Command} from '@oclif/core/command'
import * as Flags from '@oclif/core/flags'
import {DiagnosticsError, formatDiagnostic} from '../core/diagnostics.js'
import {UserError} from '../core/errors.js'
import {redact} from '../core/redact.js'
import type {OpenedDeployment} from '../operations/opened.js'
import type {DeploymentFlagValues} from './flags.js'

// What a command needs only when it opens a deployment (providers, SSH, the config server's client,
// the progress view) is loaded in init, before run, by the commands that do: `plan` and `--help`
// never load it.
let opened: typeof import('../operations/opened.js') | undefined
let progress: typeof import('./progress.js') | undefined

/**
 * Errors that say what went wrong and what to do, like a UserError: printed as a message, not a trace.
 * Their modules are loaded when an error is reported: an error can only be one of them once its module is.
 */
async function isReportable(error: Error & {oclif?: unknown}): Promise<boolean> {
  if (error.oclif !== undefined) return false // oclif's own (an exit, a refused flag)
  const [hostKeys, sshConfig, ssh, ec2, client] = await Promise.all([
    import('../ssh/hostkeys.js'),
    import('../ssh/config.js'),
    import('../ssh/errors.js'),
    import('../providers/ec2-errors.js'),
    import('../configserver/client.js'),
  ])
  const reportable = [
    ...[hostKeys.HostKeyError, ssh.SshKeyError, ssh.SshAuthError, ssh.SshUnreachableError, sshConfig.SshConfigError],
    ...[ssh.JumpForwardError, ec2.Ec2Error, client.ConfigServerError],
  ]
  return reportable.some((kind) => error instanceof kind)
}

/**
 * Base of every nodeset command: `--json`, secrets redacted from everything printed, bad input
 * reported as diagnostics (file:line, hint) with exit code 2, and the opened deployment closed
 * however the command ends.
 */
export abstract class NodesetCommand extends Command {
  static baseFlags = {
    json: Flags.boolean({description: 'Print machine-readable JSON instead of text.', default: false}),
  }

  /** Whether the command opens the deployment (openDeployment): what that needs is loaded before it runs. */
  static opensDeployment = true

  /** Values never to print; the opened deployment's list once a nodeset is read. */
  protected secrets: string[] = []
  private opened?: OpenedDeployment

  async init(): Promise<void> {
    await super.init()
    if ((this.constructor as typeof NodesetCommand).opensDeployment)
      [opened, progress] = await Promise.all([import('../operations/opened.js'), import('./progress.js')])
  }

  protected get jsonMode(): boolean {
    return this.argv.includes('--json')
  }

  /**
   * Read, plan and check the nodeset file, and open it for operations (closed when the command ends),
   * with what the command's flags say of the provider (deploymentFlags); warnings are printed once.
   */
  protected openDeployment(file: string, flags: DeploymentFlagValues = {}): OpenedDeployment {
    if (!opened || !progress)
      throw new Error(`internal: ${this.id ?? 'this command'} opens a deployment but says it does not`)
    const ui = progress.cliUi({json: this.jsonMode, secrets: this.secrets})
    const aws = {profile: flags.profile, region: flags.region}
    this.opened = opened.open(file, {trustOnFirstUse: flags['trust-on-first-use'], aws, ui})
    // One list: what the deployment learns (tokens, secret outputs) is redacted from what we print.
    this.opened.secrets.push(...this.secrets)
    this.secrets = this.opened.secrets
    for (const w of this.opened.warnings) this.note(`warning: ${formatDiagnostic(w)}`)
    return this.opened
  }

  /**
   * The nodeset file among positional arguments, found by its `.conf` name wherever it stands (as
   * silverlining's `silver update myapp/ foobar.conf` and `up foobar.conf myapp/` both read), else the
   * one at `usual`; the other arguments keep their order.
   */
  protected nodesetFileAmong(words: string[], usual: number): {file: string; rest: string[]} {
    const found = words.findIndex((w) => w.endsWith('.conf'))
    const at = found >= 0 ? found : usual
    return {file: words[at], rest: words.filter((_, i) => i !== at)}
  }

  protected print(text: string): void {
    process.stdout.write(redact(text, this.secrets) + (text.endsWith('\n') ? '' : '\n'))
  }

  protected printJson(value: unknown): void {
    process.stdout.write(redact(JSON.stringify(value, null, 2), this.secrets) + '\n')
  }

  protected note(text: string): void {
    process.stderr.write(redact(text, this.secrets) + '\n')
  }

  protected async finally(error: Error | undefined): Promise<unknown> {
    await this.opened?.close()
    return super.finally(error)
  }

  protected async catch(error: Error & {exitCode?: number; oclif?: {exit?: number}}): Promise<unknown> {
    if (error instanceof DiagnosticsError) {
      const count = `${error.diagnostics.length} problem${error.diagnostics.length === 1 ? '' : 's'}`
      if (this.jsonMode) this.printJson({type: 'error', ok: false, diagnostics: error.diagnostics})
      else
        process.stderr.write(
          redact(
            error.diagnostics.map(formatDiagnostic).join('\n') + `\n${count}; nothing was changed.\n`,
            this.secrets,
          ),
        )
      this.exit(2)
    }
    if (error instanceof UserError || (await isReportable(error))) {
      if (this.jsonMode) this.printJson({type: 'error', ok: false, error: error.message})
      else process.stderr.write(redact(`error: ${error.message}\n`, this.secrets))
      this.exit(error instanceof UserError ? error.exitCode : 1)
    }
    if (this.jsonMode && error.oclif?.exit === 2) {
      // A flag or argument oclif refused: the same JSON shape as any other refusal.
      this.printJson({type: 'error', ok: false, diagnostics: [{message: plainMessage(error.message)}]})
      this.exit(2)
    }
    if (error.message) error.message = redact(error.message, this.secrets)
    return super.catch(error)
  }
}

/** oclif's message without its terminal decoration (the `›` gutter and colours). */
function plainMessage(message: string): string {
  return stripVTControlCharacters(message)
    .split('\n')
    .map((line) => line.replace(/^\s*›\s*/, '').trim())
    .filter((line) => line && !line.startsWith('See more help'))
    .join('\n')
}

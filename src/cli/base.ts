import {Command, Flags} from '@oclif/core'
import {DiagnosticsError, formatDiagnostic} from '../core/diagnostics.js'
import {UserError} from '../core/errors.js'
import {redact} from '../core/redact.js'

/**
 * Base of every nodeset command: `--json`, secrets redacted from everything printed, and bad input
 * reported as diagnostics (file:line, hint) with exit code 2.
 */
export abstract class NodesetCommand extends Command {
  static baseFlags = {
    json: Flags.boolean({description: 'Print machine-readable JSON instead of text.', default: false}),
  }

  /** Values never to print; commands fill it once the nodeset is read. */
  protected secrets: string[] = []

  protected print(text: string): void {
    process.stdout.write(redact(text, this.secrets) + (text.endsWith('\n') ? '' : '\n'))
  }

  protected printJson(value: unknown): void {
    process.stdout.write(redact(JSON.stringify(value, null, 2), this.secrets) + '\n')
  }

  protected note(text: string): void {
    process.stderr.write(redact(text, this.secrets) + '\n')
  }

  protected async catch(error: Error & {exitCode?: number; oclif?: {exit?: number}}): Promise<unknown> {
    if (error instanceof DiagnosticsError) {
      const jsonMode = this.argv.includes('--json')
      if (jsonMode) this.printJson({ok: false, problems: error.diagnostics})
      else
        process.stderr.write(
          redact(
            error.diagnostics.map(formatDiagnostic).join('\n') +
              `\n${error.diagnostics.length} problem${error.diagnostics.length === 1 ? '' : 's'}; nothing was changed.\n`,
            this.secrets,
          ),
        )
      this.exit(2)
    }
    if (error instanceof UserError) {
      if (this.argv.includes('--json')) this.printJson({ok: false, error: error.message})
      else process.stderr.write(redact(`error: ${error.message}\n`, this.secrets))
      this.exit(error.exitCode)
    }
    if (error.message) error.message = redact(error.message, this.secrets)
    return super.catch(error)
  }
}

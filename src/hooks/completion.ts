/**
 * After `nodeset autocomplete` writes its bash function, replace it with nodeset's own
 * (src/cli/completion.ts): the generic one completes only command names and breaks on a path
 * argument. zsh and PowerShell keep the plugin's scripts.
 */
import fs from 'node:fs'
import path from 'node:path'
import type {Hook} from '@oclif/core'
import type {CompletedCommand} from '../cli/completion.js'

const hook: Hook<'postrun'> = async function (options) {
  // `autocomplete` writes the functions by calling its `create` command directly (no hooks of its own).
  if (!['autocomplete', 'autocomplete:create'].includes(options.Command.id)) return
  const {config} = options
  const file = path.join(config.cacheDir, 'autocomplete', 'functions', 'bash', `${config.bin}.bash`)
  if (!fs.existsSync(file)) return
  const commands: CompletedCommand[] = config.commands
    .filter((c) => !c.hidden)
    .map((c) => ({
      id: c.id,
      flags: Object.entries(c.flags ?? {})
        .filter(([, f]) => !f.hidden)
        .map(([name, f]) => ({
          name,
          char: f.char,
          takesValue: f.type === 'option',
          options: f.type === 'option' ? f.options : undefined,
        })),
    }))
  // Every command runs this hook: the completion's module is loaded only here.
  const {bashCompletion} = await import('../cli/completion.js')
  fs.writeFileSync(file, bashCompletion(config.bin, commands))
}

export default hook

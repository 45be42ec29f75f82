/**
 * Bash completion for nodeset: command names, each command's flags, the values of flags with a
 * fixed choice, and files everywhere else (a nodeset file, an app folder, `--values FILE`). Built
 * as text from the commands' own definitions; `nodeset autocomplete` installs it (see
 * src/hooks/completion.ts).
 */

export interface CompletedFlag {
  name: string
  char?: string
  /** A flag that takes a value (else a switch). */
  takesValue: boolean
  /** The values it accepts, when fixed. */
  options?: readonly string[]
}

export interface CompletedCommand {
  id: string
  flags: CompletedFlag[]
}

const WORD = /^[A-Za-z0-9][A-Za-z0-9:._-]*$/

/** The bash function and its `complete` line for the binary `bin`. */
export function bashCompletion(bin: string, commands: CompletedCommand[]): string {
  const safe = commands
    .filter((c) => WORD.test(c.id))
    .map((c) => ({
      id: c.id.replaceAll(':', ' '),
      flags: c.flags.filter((f) => WORD.test(f.name) && (f.options ?? []).every((o) => WORD.test(o))),
    }))
  const topLevel = [...new Set(safe.map((c) => c.id.split(' ')[0]))].sort()
  const cases = safe
    .filter((c) => !c.id.includes(' '))
    .map((c) => {
      const names = c.flags.flatMap((f) => [`--${f.name}`, ...(f.char ? [`-${f.char}`] : [])])
      const valued = c.flags
        .filter((f) => f.takesValue)
        .flatMap((f) => [`--${f.name}`, ...(f.char ? [`-${f.char}`] : [])])
      const choices = c.flags
        .filter((f) => f.options?.length)
        .map((f) => `        --${f.name}) words="${f.options!.join(' ')}" ;;`)
      return [
        `    ${c.id})`,
        `      flags="${[...names, '--help'].join(' ')}"`,
        `      valued=" ${valued.join(' ')} "`,
        ...(choices.length ? ['      case "$prev" in', ...choices, '      esac'] : []),
        '      ;;',
      ].join('\n')
    })
  const fn = `_${bin.replace(/[^A-Za-z0-9_]/g, '_')}_autocomplete`
  return `#!/usr/bin/env bash
# ${bin}: bash completion of commands, flags, flag values and file arguments.
${fn}()
{
  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="\${COMP_WORDS[COMP_CWORD-1]}" flags="" valued="" words=""
  local IFS=$'\\n'
  COMPREPLY=()
  if [[ $COMP_CWORD -eq 1 ]]; then
    mapfile -t COMPREPLY < <(IFS=' ' compgen -W "${topLevel.join(' ')}" -- "$cur")
    return 0
  fi
  case "\${COMP_WORDS[1]}" in
${cases.join('\n')}
  esac
  if [[ -n "$words" ]]; then
    IFS=' ' read -r -a words <<< "$words"
    mapfile -t COMPREPLY < <(compgen -W "\${words[*]}" -- "$cur")
    return 0
  fi
  if [[ "$cur" == -* && "$valued" != *" $prev "* ]]; then
    mapfile -t COMPREPLY < <(IFS=' ' compgen -W "$flags" -- "$cur")
    return 0
  fi
  # Any other word is a file or a folder: the nodeset file, an app, a flag's file.
  compopt -o filenames 2>/dev/null
  mapfile -t COMPREPLY < <(compgen -f -- "$cur")
  return 0
}
complete -F ${fn} ${bin}
`
}

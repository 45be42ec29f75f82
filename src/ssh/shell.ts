/**
 * Building POSIX sh command lines as data: every argument quoted, so a value can never become code.
 */
import {shellQuote} from '../core/quote.js'

export {shellQuote} from '../core/quote.js'

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/

/** A command line from an argument vector. */
export function shellJoin(args: readonly string[]): string {
  return args.map(shellQuote).join(' ')
}

/**
 * Export variables for a command. Values travel inside the command line, which other users of the
 * node can see while it runs: pass secrets on stdin or in an uploaded file (mode 0600), never here.
 */
export function withEnv(command: string, env: Record<string, string>): string {
  const names = Object.keys(env)
  if (names.length === 0) return command
  for (const name of names) {
    if (!ENV_NAME.test(name))
      throw new Error(`environment variable name "${name}" is not valid in sh: use letters, digits and _`)
  }
  return `export ${names.map((name) => `${name}=${shellQuote(env[name])}`).join(' ')}; ${command}`
}

/** Run as root: unchanged for root, else through `sudo -n` (never prompts; fails if a password is needed). */
export function asRoot(command: string, user: string): string {
  return user === 'root' ? command : shellJoin(['sudo', '-n', '--', '/bin/sh', '-c', command])
}

/**
 * Kill the command and everything it started when it runs longer than `ms` (rounded up to whole
 * seconds), with `timeout`, which signals its whole process group. sshd cannot signal a root
 * session's command itself, so the node does it. Where `timeout` is missing the command runs unbounded
 * there, and only the caller stops waiting.
 */
export function withTimeout(command: string, ms: number): string {
  const seconds = Math.max(1, Math.ceil(ms / 1000))
  const inner = shellJoin(['/bin/sh', '-c', command])
  return `if command -v timeout >/dev/null 2>&1; then exec timeout -s KILL ${seconds} ${inner}; else exec ${inner}; fi`
}

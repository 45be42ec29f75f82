/** POSIX sh quoting: the one function every command line and script nodeset builds quotes its values with. */

const SAFE = /^[A-Za-z0-9_@%+=:,./-]+$/

/**
 * One sh word that stands for exactly `value`: left as it is when it is plainly safe, else
 * single-quoted (a `'` is written `'\''`). With `always`, a safe value is single-quoted too, for
 * files that are read back with sed as well as by sh (the agent's settings, an app's env file).
 * sh cannot carry a NUL byte in a word.
 */
export function shellQuote(value: string): string
export function shellQuote(value: string, opts: {always: boolean}): string
export function shellQuote(value: string, opts: {always?: boolean} = {}): string {
  if (!opts.always && SAFE.test(value)) return value
  return `'${value.replaceAll("'", `'\\''`)}'`
}

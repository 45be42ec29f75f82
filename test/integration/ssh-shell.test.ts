import {execFileSync} from 'node:child_process'
import {constants} from 'node:os'
import fc from 'fast-check'
import {describe, expect, test} from 'vitest'
import {asRoot, shellJoin, shellQuote, withEnv, withTimeout} from '../../src/ssh/shell.js'

/** Run a command line with the real /bin/sh (dash on Debian), as a node would. */
function sh(command: string): {stdout: string; code: number} {
  try {
    return {
      stdout: execFileSync('/bin/sh', ['-c', command], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe']}),
      code: 0,
    }
  } catch (error) {
    const e = error as {status: number | null; signal: NodeJS.Signals | null; stdout: string}
    // Killed by a signal: the shell convention, as SshSession reports it.
    return {stdout: e.stdout, code: e.status ?? 128 + constants.signals[e.signal!]}
  }
}

// Any text sh can carry as an argument: no NUL.
const shellText = fc.string({unit: 'binary', maxLength: 40}).filter((s) => !s.includes('\0'))

describe('commands built as data', () => {
  test('quoting as data: safe words stay bare, everything else is single-quoted', () => {
    expect(shellQuote('/var/lib/nodeset/agent.sh')).toBe('/var/lib/nodeset/agent.sh')
    expect(shellQuote('')).toBe("''")
    expect(shellQuote("it's")).toBe("'it'\\''s'")
    expect(shellQuote('$(reboot)')).toBe("'$(reboot)'")
    expect(shellJoin(['rm', '-rf', '--', '/etc/nodeset'])).toBe('rm -rf -- /etc/nodeset')
  })

  test('any argument reaches the program unchanged through a real sh', () => {
    fc.assert(
      fc.property(fc.array(shellText, {minLength: 1, maxLength: 4}), (args) => {
        const {stdout} = sh(`printf '%s\\0' ${args.map(shellQuote).join(' ')}`)
        return stdout === args.map((a) => a + '\0').join('')
      }),
      {numRuns: 200},
    )
  })

  test('env values arrive unchanged, and bad names are refused', () => {
    fc.assert(
      fc.property(shellText, (value) => sh(withEnv('printf %s "$VALUE"', {VALUE: value})).stdout === value),
      {numRuns: 100},
    )
    expect(() => withEnv('true', {'BAD-NAME': 'x'})).toThrow(/BAD-NAME.*letters, digits and _/)
    expect(withEnv('true', {})).toBe('true')
  })

  test('asRoot leaves root alone and goes through sudo -n for anyone else', () => {
    expect(asRoot('id -u', 'root')).toBe('id -u')
    expect(asRoot("echo 'x'; id -u", 'admin')).toBe(`sudo -n -- /bin/sh -c 'echo '\\''x'\\''; id -u'`)
  })

  test('withTimeout keeps the exit code of a quick command and kills a slow one', () => {
    expect(sh(withTimeout("printf 'a b'; exit 4", 5000))).toEqual({stdout: 'a b', code: 4})
    const started = Date.now()
    expect(sh(withTimeout('sleep 20; echo late', 1000)).code).toBe(137)
    expect(Date.now() - started).toBeLessThan(5000)
  })
})

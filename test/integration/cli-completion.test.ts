/**
 * Bash completion as a user meets it: `nodeset autocomplete --refresh-cache` writes the function,
 * real bash sources it and completes words the way the shell would (COMP_WORDS/COMP_CWORD).
 */
import {execFileSync} from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {runCli} from '../helpers/cli.js'

const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-completion-'))
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-completion-cwd-'))
const functionFile = path.join(cache, 'nodeset', 'autocomplete', 'functions', 'bash', 'nodeset.bash')

/** What bash offers for the last word of `words` (the line typed so far, split as the shell does). */
function complete(words: string[]): {offers: string[]} {
  const script = `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _nodeset_autocomplete; printf '%s\\n' "\${COMPREPLY[@]}"`
  const out = execFileSync('bash', ['-c', script, 'bash', functionFile, ...words], {
    cwd: work,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  return {offers: out.split('\n').filter(Boolean).sort()}
}

describe('bash completion', () => {
  beforeAll(async () => {
    fs.mkdirSync(path.join(work, 'my app'))
    fs.writeFileSync(path.join(work, 'foobar.conf'), '')
    fs.writeFileSync(path.join(work, 'values.json'), '{}')
    const refresh = await runCli(['autocomplete', '--refresh-cache'], {env: {XDG_CACHE_HOME: cache}})
    expect(refresh.code, refresh.stderr).toBe(0)
  }, 60_000)
  afterAll(() => {
    fs.rmSync(cache, {recursive: true, force: true})
    fs.rmSync(work, {recursive: true, force: true})
  })

  it('is nodeset’s own function, written where the setup script sources it', () => {
    expect(fs.readFileSync(functionFile, 'utf8')).toContain('# nodeset: bash completion')
  })

  it('completes commands, then files for the nodeset file and the app', () => {
    expect(complete(['nodeset', 'cre']).offers).toEqual(['create-node'])
    expect(complete(['nodeset', 'up', 'foo']).offers).toEqual(['foobar.conf'])
    expect(complete(['nodeset', 'up', 'foobar.conf', 'my']).offers).toEqual(['my app'])
    // The user's order: the app first, the file after.
    expect(complete(['nodeset', 'update', 'my app', 'f']).offers).toEqual(['foobar.conf'])
  })

  it('completes flags after a path without errors, and flag values', () => {
    expect(complete(['nodeset', 'create-node', 'foobar.conf', '--pr']).offers).toEqual(['--profile', '--prune'])
    expect(complete(['nodeset', 'create-node', 'foobar.conf', '--values', 'v']).offers).toEqual(['values.json'])
    expect(complete(['nodeset', 'graph', 'foobar.conf', '--format', '']).offers).toEqual(
      expect.arrayContaining(['dot', 'svg']),
    )
    expect(complete(['nodeset', 'graph', 'foobar.conf', '--format', '']).offers).not.toContain('foobar.conf')
  })

  it('keeps a shell without bash-completion working (compopt missing is not an error)', () => {
    const result = execFileSync(
      'bash',
      [
        '-c',
        `source "$1"; COMP_WORDS=(nodeset plan fo); COMP_CWORD=2; _nodeset_autocomplete 2>&1; echo "\${COMPREPLY[*]}"`,
        'bash',
        functionFile,
      ],
      {cwd: work, encoding: 'utf8'},
    )
    expect(result.trim()).toBe('foobar.conf')
  })
})

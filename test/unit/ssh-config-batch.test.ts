/** lookupHost: the hosts asked for at once are answered by one shell, each with its own answer. */
import * as childProcess from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {afterAll, describe, expect, it, vi} from 'vitest'
import {lookupHost, SshConfigError} from '../../src/ssh/config.js'

vi.mock('node:child_process', async (original) => {
  const actual = await original<typeof import('node:child_process')>()
  return {...actual, execFile: vi.fn(actual.execFile)}
})

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-sshg-'))
afterAll(() => fs.rmSync(dir, {recursive: true, force: true}))

// An ssh that answers `-G` by the host asked for (the last argument), and refuses hosts named bad*.
const ssh = path.join(dir, 'ssh')
fs.writeFileSync(
  ssh,
  `#!/bin/sh
for last; do :; done
case "$last" in bad*) echo "config line 2: Bad port" >&2; echo "ssh: terminating, 1 bad configuration options" >&2; exit 255;; esac
printf 'user nodeset-no-user-given\\nhostname %s.example\\nport %s\\n' "$last" "\${#last}"
`,
  {mode: 0o755},
)
const configFile = path.join(dir, 'config')
fs.writeFileSync(configFile, '')
const source = {path: configFile, system: false, ssh}

describe('lookupHost', () => {
  it('answers every host asked at once from one shell, and a refused one alone fails', async () => {
    const execFile = vi.mocked(childProcess.execFile)
    execFile.mockClear()
    const names = Array.from({length: 20}, (_, i) => `node${i}`)
    const asked = [...names, 'bad1'].map((host) => lookupHost({host}, source))
    const answers = await Promise.allSettled(asked)
    expect(execFile).toHaveBeenCalledTimes(1)
    names.forEach((host, i) =>
      expect(answers[i]).toEqual({
        status: 'fulfilled',
        value: expect.objectContaining({alias: host, hostName: `${host}.example`, port: host.length, user: undefined}),
      }),
    )
    const refused = answers[names.length]
    expect(refused.status).toBe('rejected')
    expect((refused as PromiseRejectedResult).reason).toBeInstanceOf(SshConfigError)
    expect((refused as PromiseRejectedResult).reason.message).toBe(
      'OpenSSH refused the SSH configuration for bad1: config line 2: Bad port',
    )
    // Asked later, another shell.
    expect((await lookupHost({host: 'late'}, source)).hostName).toBe('late.example')
    expect(execFile).toHaveBeenCalledTimes(2)
  })

  it('says that ssh is missing', async () => {
    await expect(lookupHost({host: 'n1'}, {...source, ssh: path.join(dir, 'nonexistent')})).rejects.toThrow(
      /install openssh-client/,
    )
  })
})

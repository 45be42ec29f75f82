import {execFileSync} from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {beforeAll, describe, expect, it} from 'vitest'
import {DiagnosticsError, formatDiagnostic} from '../../src/core/diagnostics.js'
import {readNodeset} from '../../src/nodeset/read.js'

let dir: string
const minimal = '[general]\nname = demo\n[provider]\nprovider = local\n[appserver]\n'

function refusal(file: string): string[] {
  try {
    readNodeset(file)
  } catch (error) {
    if (error instanceof DiagnosticsError) return error.diagnostics.map(formatDiagnostic)
    throw error
  }
  throw new Error('expected a refusal')
}

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-files-'))
})

describe('files that are not nodeset files, read from disk', () => {
  it('says a directory is a directory', () => {
    fs.mkdirSync(path.join(dir, 'conf.d'))
    expect(refusal(path.join(dir, 'conf.d'))).toEqual([`${path.join(dir, 'conf.d')} is a directory, not a file`])
  })

  it('refuses a FIFO without opening it (a read would wait for a writer forever)', () => {
    const fifo = path.join(dir, 'pipe.conf')
    execFileSync('mkfifo', [fifo])
    expect(refusal(fifo)).toEqual([`${fifo} is a FIFO (named pipe), not a file`])
    // The same for a file it names.
    const main = path.join(dir, 'secret-fifo.conf')
    fs.writeFileSync(main, minimal.replace('provider = local', 'provider = local\nsecret_file = pipe.conf'))
    expect(refusal(main)).toEqual([
      `${main}:5: secret_file pipe.conf: it is a FIFO (named pipe), not a file\n  hint: check the path (relative paths start at the nodeset file) and its permissions`,
    ])
  })

  it('refuses a binary file in one line, without echoing its bytes', () => {
    const binary = path.join(dir, 'image.conf')
    fs.writeFileSync(binary, Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0x02, 0x01, 0x01, 0x00, 0xff, 0xfe]))
    expect(refusal(binary)).toEqual([`${binary} is a binary file (a NUL byte at offset 7), not text`])
    const latin1 = path.join(dir, 'latin1.conf')
    fs.writeFileSync(latin1, Buffer.from('[general]\nname = caf\xe9\n', 'latin1'))
    expect(refusal(latin1)).toEqual([`${latin1} is not UTF-8 text`])
  })

  it('refuses a file over 1 MiB before reading it', () => {
    const big = path.join(dir, 'big.conf')
    fs.writeFileSync(big, minimal + '#'.repeat(2 * 1024 * 1024))
    expect(refusal(big)).toEqual([`${big} is 2.0 MiB; a nodeset file is at most 1 MiB`])
  })

  it('names the file that extends a directory', () => {
    const main = path.join(dir, 'extends-dir.conf')
    fs.writeFileSync(main, '[general]\nextends = conf.d\n' + minimal.slice('[general]\n'.length))
    expect(refusal(main)).toEqual([`${main}:2: ${path.join(dir, 'conf.d')} is a directory, not a file`])
  })

  it('reads a file saved with a byte-order mark and CRLF line ends', () => {
    const bom = path.join(dir, 'bom.conf')
    fs.writeFileSync(bom, '\uFEFF' + minimal.replace(/\n/g, '\r\n'))
    expect(readNodeset(bom).nodeset.general.name).toBe('demo')
  })
})

/**
 * `nodeset plan` on broken files, as a user runs it (the built CLI: `npm run -s build` first): every
 * mistake is refused with exit code 2, its file:line and a hint, and never a stack trace.
 */
import {execFileSync} from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {describe, expect, it} from 'vitest'
import {ROOT, runCli} from '../helpers/cli.js'

const BROKEN = 'test/fixtures/broken'
const STACK = /^\s+at \S.*(:\d+:\d+\)?|\(native\))$/m

/** Each broken file: the line `plan` must print (file:line: message) and its hint. */
const expected: Record<string, Array<[string, string]>> = {
  'duplicate-section.conf': [
    [':9: [appserver] appears twice in this file (first at line 6)', 'put every key of [appserver] under one header'],
  ],
  'bare-size.conf': [[':7: size "256MB" does not say what kind of size it is', 'write "ram 256MB" for the memory']],
  'bad-boolean.conf': [[':4: set_etc_hosts must be true or false, not "sometimes"', 'write true or false']],
  'bad-duration.conf': [
    [':4: boot_timeout "15 minutes" is not a duration', 'a whole number with s, m or h: 90s, 15m, 1h'],
  ],
  'plus-equals.conf': [
    [
      `:5: nodes += changes the value set at ${BROKEN}/inherited/base.conf:4, but nodes takes one value`,
      'write "nodes = …" to replace the inherited value',
    ],
  ],
  'minus-equals.conf': [
    [
      `:5: hostnames -= ww.broken.test: the value set at ${BROKEN}/inherited/base.conf:6 has no such line`,
      'it has: broken.test, www.broken.test',
    ],
  ],
  'unknown-helper.conf': [
    [':10: param db_host of probe: {{outptu "service:mysql" "port"}}: unknown helper "outptu"', 'did you mean output?'],
  ],
  'param-scope.conf': [
    [':10: param db_host of probe: {{params.port}}: unknown variable "params"', "params is for a service's templates"],
  ],
  'param-object.conf': [
    [':10: param db_host of probe: {{facts}}: prints an object', 'print one of its keys: {{facts.KEY}}'],
  ],
  'param-syntax.conf': [
    [':10: param db_host of probe: {{ip "service:mysql" is not closed with }}', 'with every {{ closed by }}'],
  ],
  'input-partial.conf': [
    [
      ':10: "probe.db_host": {{input}} must be the whole value, not part of "db-{{input}}"',
      'write "probe.db_host = {{input}}" to give the whole param when launching',
    ],
  ],
  'input-default.conf': [
    [
      `${BROKEN}/svc-input/keyed/service.json:5: service keyed: param key is "input": true and has a default`,
      'drop its "default", or drop "input"',
    ],
  ],
  'node-name.conf': [
    [':8: node_name "app{{num}}.broken.test": {{num}}: unknown variable "num"', 'did you mean {{n}}?'],
  ],
  'template-typo.conf': [
    [
      `${BROKEN}/svc/typo/setup.sh.hbs:3: template of typo: {{params.prot}}: service typo has no param "prot"`,
      'did you mean {{params.port}}?',
    ],
    [
      `${BROKEN}/svc/typo/setup.sh.hbs:4: template of typo: {{parms.port}}: unknown variable "parms"`,
      'did you mean {{params.port}}?',
    ],
    [
      `${BROKEN}/svc/typo/setup.sh.hbs:5: template of typo: {{outptu "db" "port"}}: unknown helper "outptu"`,
      'did you mean output?',
    ],
  ],
  'template-partial.conf': [
    [
      `${BROKEN}/svc/partial/helper.hbs:2: template of partial: {{nmae}}: unknown variable "nmae"`,
      'did you mean {{name}}?',
    ],
    [
      `${BROKEN}/svc/partial/setup.sh.hbs:3: template of partial: {{> helpr}}: no partial "helpr"`,
      'did you mean {{> helper}}?',
    ],
  ],
  'template-blocks.conf': [
    [
      `${BROKEN}/svc/blocks/setup.sh.hbs:2: template of blocks: {{#each}}: each needs one list to go through`,
      '{{#each locations}}…{{/each}}',
    ],
    [
      `${BROKEN}/svc/blocks/setup.sh.hbs:3: template of blocks: {{each locations}}: each is a block helper`,
      'write {{#each …}}…{{/each}}',
    ],
    [`${BROKEN}/svc/blocks/setup.sh.hbs:4: template of blocks: {{params}}: prints an object`, '{{params.port}}'],
    [
      `${BROKEN}/svc/blocks/setup.sh.hbs:5: template of blocks: {{#ip "appserver"}}: ip is not a block helper`,
      'with no {{/ip}}',
    ],
  ],
  'template-syntax.conf': [
    [
      `${BROKEN}/svc/syntax/setup.sh.hbs:3: template of syntax: {{name" is not closed with }}`,
      'with every {{ closed by }}',
    ],
  ],
}

function refusedCleanly(result: {code: number; stdout: string; stderr: string}): void {
  expect(result.code, result.stderr).toBe(2)
  expect(result.stderr).not.toMatch(STACK)
  expect(result.stdout + result.stderr).not.toMatch(/\0|\uFFFD/)
  expect(result.stderr).toMatch(/\d+ problems?; nothing was changed\.\n$/)
}

describe('nodeset plan refuses broken files', () => {
  it('knows every broken file of the fixtures', () => {
    const files = fs.readdirSync(path.join(ROOT, BROKEN)).filter((f) => f.endsWith('.conf'))
    expect(files.sort()).toEqual(Object.keys(expected).sort())
  })

  it.each(Object.entries(expected))('%s: exit code 2, file:line and a hint, no stack', async (name, problems) => {
    const result = await runCli(['plan', `${BROKEN}/${name}`], {timeoutMs: 60_000})
    refusedCleanly(result)
    const lines = result.stderr.split('\n')
    for (const [line, hint] of problems) {
      const at = line.startsWith(':') ? `${BROKEN}/${name}${line}` : line
      const i = lines.indexOf(at)
      expect(i, `${at}\nin:\n${result.stderr}`).toBeGreaterThanOrEqual(0)
      const hintLine = lines.slice(i + 1).find((l) => l.startsWith('  hint: '))
      expect(hintLine).toContain(hint)
    }
    expect(result.stderr).toContain(
      `${problems.length} problem${problems.length === 1 ? '' : 's'}; nothing was changed.`,
    )
  })

  it('says in one line that a directory, a FIFO, a binary or a huge file is not a nodeset file', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-preflight-'))
    const fifo = path.join(dir, 'pipe.conf')
    execFileSync('mkfifo', [fifo])
    fs.writeFileSync(path.join(dir, 'binary.conf'), Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0, 0xff, 0xfe, 0x00]))
    fs.writeFileSync(path.join(dir, 'huge.conf'), '[general]\n' + '#'.repeat(1024 * 1024 + 16))
    const cases: Array<[string, string]> = [
      [dir, `${dir} is a directory, not a file`],
      [fifo, `${fifo} is a FIFO (named pipe), not a file`],
      [
        path.join(dir, 'binary.conf'),
        `${path.join(dir, 'binary.conf')} is a binary file (a NUL byte at offset 4), not text`,
      ],
      [path.join(dir, 'huge.conf'), `${path.join(dir, 'huge.conf')} is 1.0 MiB; a nodeset file is at most 1 MiB`],
    ]
    for (const [file, line] of cases) {
      const result = await runCli(['plan', file], {timeoutMs: 60_000})
      refusedCleanly(result)
      expect(result.stderr).toBe(`${line}\n1 problem; nothing was changed.\n`)
    }
  })

  it('plans the README-style file with inline comments', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-preflight-'))
    const file = path.join(dir, 'commented.conf')
    fs.writeFileSync(
      file,
      '\uFEFF[general]\nname = my-server-setup          # the name\nbase_domain = foobar.com  ; the domain\n' +
        '[provider]\nprovider = ec2   # ec2 | local | static\nimage = name debian-12-amd64-*   # the AMI\n' +
        '[appserver]\nsize = ram 256MB   # or id X\n',
    )
    const result = await runCli(['plan', file], {timeoutMs: 60_000})
    // The only thing said besides the plan: ec2 nodes cannot reach a server embedded on this machine.
    expect(result.stderr).toMatch(/^warning: [\s\S]*config_server = URL/)
    expect(
      result.stderr
        .trim()
        .split('\n')
        .filter((l) => l.startsWith('warning:')),
    ).toHaveLength(1)
    expect(result.code).toBe(0)
    expect(result.stdout).toContain('nodeset my-server-setup')
    expect(result.stdout).toMatch(/^app1\.foobar\.com\s+appserver\s+ram 256MB/m)
  })
})

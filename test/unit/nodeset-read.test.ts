import path from 'node:path'
import {describe, expect, it} from 'vitest'
import {DiagnosticsError, formatDiagnostic, type Diagnostic} from '../../src/core/diagnostics.js'
import {readNodeset} from '../../src/nodeset/read.js'
import type {ReaderIO} from '../../src/nodeset/merge.js'

const dir = '/conf'
function io(files: Record<string, string>, env: Record<string, string> = {}): ReaderIO {
  return {readFile: (f) => files[path.resolve(f)] ?? files[f], env: {HOME: '/home/u', ...env}}
}
const file = (name: string) => path.join(dir, name)

function problems(files: Record<string, string>, env: Record<string, string> = {}): Diagnostic[] {
  try {
    readNodeset(file('main.conf'), io(files, env))
  } catch (error) {
    if (error instanceof DiagnosticsError) return error.diagnostics
    throw error
  }
  throw new Error('expected the file to be refused')
}

const minimal = `[general]\nname = demo\nbase_domain = demo.test\n[provider]\nprovider = local\n`

describe('reading a nodeset file', () => {
  it('reads multi-line values by indentation, with comments between keys', () => {
    const {nodeset} = readNodeset(
      file('main.conf'),
      io({
        [file('main.conf')]:
          `${minimal}[appserver]\nlocations =\n  http://demo.test/ blog\n  http://api.demo.test/ api\n# a comment\nnodes = 2\n[balancer]\nhostnames = demo.test\n  www.demo.test\n`,
      }),
    )
    const app = nodeset.roles.find((r) => r.role === 'appserver')!
    expect(app.locations.map((l) => [l.url, l.app, l.source.line])).toEqual([
      ['http://demo.test/', 'blog', 7],
      ['http://api.demo.test/', 'api', 7],
    ])
    expect(app.nodes.value).toBe(2)
    expect(nodeset.roles.find((r) => r.role === 'balancer')!.hostnames).toEqual(['demo.test', 'www.demo.test'])
  })

  it('resolves ${section:key} through other values and keeps {{…}} for node time', () => {
    const text = `[general]\nname = shop\nbase_domain = \${general:name}.test\n[provider]\nprovider = local\nssh_key = \${HOME}/.ssh/id\nregion = \${REGION:-eu-west-1}\n[appserver]\nnode_name = web{{n}}.\${general:base_domain}\nnodes = 2\n`
    const {nodeset} = readNodeset(file('main.conf'), io({[file('main.conf')]: text}, {HOME: '/home/u'}))
    expect(nodeset.general.baseDomain).toBe('shop.test')
    expect(nodeset.provider.settings.ssh_key.value).toBe('/home/u/.ssh/id')
    expect(nodeset.provider.settings.region.value).toBe('eu-west-1')
    expect(nodeset.roles[0].nodeName!.value).toBe('web{{n}}.shop.test')
  })

  it('extends files relative to the including file, nested, later wins, with += and -=', () => {
    const files = {
      [file('base/common.conf')]:
        `[general]\nbase_domain = base.test\n[provider]\nprovider = local\n[balancer]\nhostnames = a.test\n  b.test\n`,
      [file('base/base.conf')]: `[general]\nextends = common.conf\nname = base\n[appserver]\nnodes = 2\n`,
      [file('other.conf')]: `[appserver]\nnodes = 3\n`,
      [file('main.conf')]:
        `[general]\nextends = base/base.conf other.conf\nname = main\n[balancer]\nhostnames += c.test\nhostnames -= a.test\n`,
    }
    const {nodeset} = readNodeset(file('main.conf'), io(files))
    expect(nodeset.general.name).toBe('main')
    expect(nodeset.general.baseDomain).toBe('base.test')
    expect(nodeset.roles.find((r) => r.role === 'appserver')!.nodes).toEqual({
      value: 3,
      source: {file: file('other.conf'), line: 2},
    })
    expect(nodeset.roles.find((r) => r.role === 'balancer')!.hostnames).toEqual(['b.test', 'c.test'])
    expect(nodeset.files).toEqual([
      file('main.conf'),
      file('base/base.conf'),
      file('base/common.conf'),
      file('other.conf'),
    ])
  })

  it('reports an unknown key, an unset ${VAR} and an extends loop at once, each with file:line', () => {
    const found = problems({
      [file('main.conf')]:
        `[general]\nextends = loop.conf\nname = x\n[provider]\nprovider = local\nregion = \${NOPE}\n[appserver]\nnodse = 2\n`,
      [file('loop.conf')]: `[general]\nextends = main.conf\n`,
    })
    const text = found.map(formatDiagnostic).join('\n')
    expect(found).toHaveLength(3)
    expect(text).toContain(`${file('loop.conf')}:2: extends loop: main.conf → loop.conf → main.conf`)
    expect(text).toContain(`${file('main.conf')}:6: \${NOPE}: the environment variable NOPE is not set`)
    expect(text).toContain(`${file('main.conf')}:8: unknown key "nodse" in [appserver]`)
    expect(text).toContain('did you mean "nodes"?')
  })

  it('points at the file that set a bad value, through extends', () => {
    const found = problems({
      [file('main.conf')]: `[general]\nextends = sub/base.conf\n[provider]\nprovider = local\n`,
      [file('sub/base.conf')]: `[appserver]\nnodes = 0\n`,
    })
    expect(found.map((d) => [d.source?.file, d.source?.line, d.message])).toEqual([
      [file('sub/base.conf'), 2, 'nodes must be a whole number from 1 to 1000, not "0"'],
    ])
  })

  it('refuses an interpolation loop, an unknown section, a bad hostname and wrong types', () => {
    const found = problems({
      [file('main.conf')]:
        `[general]\nname = \${general:base_domain}\nbase_domain = \${general:name}\nset_etc_hosts = maybe\n[provider]\nprovider = lokal\n[appservr]\nnodes = 1\n[balancer]\nhostnames = bad_host.test\n`,
    })
    const messages = found.map((d) => `${d.source?.line}: ${d.message}${d.hint ? ` (${d.hint})` : ''}`)
    expect(messages.some((m) => m.includes('interpolation loop'))).toBe(true)
    expect(messages).toContain(
      '4: set_etc_hosts must be true or false, not "maybe" (write true or false (yes/no, on/off and 1/0 are read too))',
    )
    expect(messages).toContain('6: unknown provider "lokal" (did you mean "local"?)')
    expect(messages).toContain('7: unknown section [appservr] (did you mean [appserver]?)')
    expect(messages.some((m) => m.startsWith('10: hostname "bad_host.test" is not a valid host name'))).toBe(true)
  })

  it('refuses a key set twice in one section', () => {
    const found = problems({[file('main.conf')]: `${minimal}[appserver]\nsize = id 1\nsize = ram 256MB\n`})
    expect(found.map((d) => `${d.source?.line}: ${d.message}`)).toEqual([
      '8: size is set twice in [appserver] (first at line 7)',
    ])
  })

  it('looks the provider up in ~/.nodeset.conf by name; the file wins', () => {
    const files = {
      [file('main.conf')]: `[general]\nname = x\n[provider]\nname = work\nregion = eu-central-1\n[appserver]\n`,
      '/home/u/.nodeset.conf': `[provider:work]\nprovider = ec2\nimage = id ami-123\nregion = us-east-1\nsecret = s3cr3t-value\n`,
    }
    const {nodeset} = readNodeset(file('main.conf'), io(files))
    expect(nodeset.provider.kind).toBe('ec2')
    expect(nodeset.provider.settings.region.value).toBe('eu-central-1')
    expect(nodeset.provider.settings.image).toEqual({
      value: 'id ami-123',
      source: {file: '/home/u/.nodeset.conf', line: 3},
    })
    expect(nodeset.secrets).toContain('s3cr3t-value')
  })

  it('reads secret_file and remembers every secret value', () => {
    const files = {
      [file('main.conf')]:
        `[general]\nname = x\n[provider]\nprovider = local\nsecret_file = secret.txt\n[service:mysql]\nmysql.admin_password = hunter22\n`,
      [file('secret.txt')]: 'from-the-file\n',
    }
    const {nodeset} = readNodeset(file('main.conf'), io(files))
    expect(nodeset.provider.settings.secret.value).toBe('from-the-file')
    expect(nodeset.secrets.sort()).toEqual(['from-the-file', 'hunter22'])
  })

  it('refuses a param the service does not have, with the closest name', () => {
    const found = problems({[file('main.conf')]: `${minimal}[service:mysql]\nmysql.prot = 3307\n`})
    expect(found.map((d) => [d.source?.line, d.message, d.hint])).toEqual([
      [7, 'service mysql has no param "prot"', 'did you mean "mysql.port"?'],
    ])
  })

  it('takes a # or ; after a blank as the start of a comment, on every kind of line', () => {
    const text =
      `[general]   # the deployment\nname = shop          # its name\nbase_domain = shop.test ; the domain\n` +
      `[provider]\nprovider = local\n[appserver]\nlocations =   # where apps go\n  http://shop.test/ blog   # the blog\n` +
      `  # a whole-line comment between lines\n  http://api.shop.test/ api\nnodes = 2 # two\n` +
      `appserver.port = 80#80 \\# literal "a # quoted" '{{x}} # y' {{! # in a template }}\n[balancer]\n`
    const {nodeset} = readNodeset(file('main.conf'), io({[file('main.conf')]: text}))
    expect(nodeset.general.name).toBe('shop')
    expect(nodeset.general.baseDomain).toBe('shop.test')
    const app = nodeset.roles.find((r) => r.role === 'appserver')!
    expect(app.locations.map((l) => `${l.url} ${l.app}`)).toEqual([
      'http://shop.test/ blog',
      'http://api.shop.test/ api',
    ])
    expect(app.nodes.value).toBe(2)
    expect(app.params.appserver.port.value).toBe(`80#80 # literal "a # quoted" '{{x}} # y' {{! # in a template }}`)
  })

  it('keeps an inline comment out of the provider settings (the AMI filter)', () => {
    const text = `[general]\nname = x\n[provider]\nprovider = ec2   # ec2 | local | static\nimage = name debian-12-amd64-*   # or: id ami-0123\n[appserver]\n`
    const {nodeset} = readNodeset(file('main.conf'), io({[file('main.conf')]: text}))
    expect(nodeset.provider.kind).toBe('ec2')
    expect(nodeset.provider.settings.image.value).toBe('name debian-12-amd64-*')
  })

  it('skips a UTF-8 byte-order mark', () => {
    const {nodeset} = readNodeset(file('main.conf'), io({[file('main.conf')]: `\uFEFF${minimal}[appserver]\n`}))
    expect(nodeset.general.name).toBe('demo')
  })

  it('refuses a section that appears twice in one file, citing both lines', () => {
    const found = problems({
      [file('main.conf')]: `${minimal}[appserver]\nnodes = 2\n[service:mysql]\n[appserver]\nsize = id 1\n`,
    })
    expect(found.map((d) => [d.source?.line, d.message, d.hint])).toEqual([
      [
        9,
        '[appserver] appears twice in this file (first at line 6)',
        'put every key of [appserver] under one header; to change an inherited section, use extends',
      ],
    ])
  })

  it('refuses a bare size with the ram form to write', () => {
    for (const [size, hint] of [
      ['256MB', 'write "ram 256MB" for the memory'],
      ['2 GB', 'write "ram 2GB" for the memory'],
      ['512', 'write "ram 512MB" for the memory'],
    ]) {
      const found = problems({[file('main.conf')]: `${minimal}[appserver]\nsize = ${size}\n`})
      expect(found.map((d) => [d.source?.line, d.message, d.hint])).toEqual([
        [7, `size "${size}" does not say what kind of size it is`, hint],
      ])
    }
    const {nodeset} = readNodeset(
      file('main.conf'),
      io({[file('main.conf')]: `${minimal}[appserver]\nsize = t3.small\n`}),
    )
    expect(nodeset.roles[0].size!.value).toEqual({kind: 'name', value: 't3.small'})
  })

  it('echoes a wrong boolean or duration and says what is allowed', () => {
    const found = problems({
      [file('main.conf')]:
        `[general]\nname = x\nboot_timeout = 15 minutes\n[provider]\nprovider = local\n[appserver]\nload_balancer = sometimes\n`,
    })
    expect(found.map((d) => [d.source?.line, d.message, d.hint])).toEqual([
      [
        3,
        'boot_timeout "15 minutes" is not a duration',
        'write seconds (900) or a whole number with s, m or h: 90s, 15m, 1h',
      ],
      [
        7,
        'load_balancer must be true or false, not "sometimes"',
        'write true or false (yes/no, on/off and 1/0 are read too)',
      ],
    ])
  })

  it('refuses += on a one-value key and -= of what is not inherited, citing both lines', () => {
    const files = {
      [file('base.conf')]:
        `[provider]\nprovider = local\n[appserver]\nnodes = 2\n[balancer]\nhostnames = a.test\n  b.test\n`,
      [file('main.conf')]:
        `[general]\nextends = base.conf\n[appserver]\nnodes += 3\n[balancer]\nhostnames -= c.test\nhostnames += bad_host\n`,
    }
    const found = problems(files)
    expect(found.map((d) => formatDiagnostic(d))).toEqual([
      `${file('main.conf')}:6: hostnames -= c.test: the value set at ${file('base.conf')}:6 has no such line\n    hostnames set at ${file('base.conf')}:6\n  hint: it has: a.test, b.test`,
      `${file('main.conf')}:4: nodes += changes the value set at ${file('base.conf')}:4, but nodes takes one value\n  hint: write "nodes = …" to replace the inherited value`,
      `${file('main.conf')}:7: hostname "bad_host" is not a valid host name\n    += changes the value set at ${file('main.conf')}:6\n  hint: use labels of letters, digits and "-", separated by dots`,
    ])
  })

  it('refuses -= on a key that is not set', () => {
    const found = problems({[file('main.conf')]: `${minimal}[balancer]\nhostnames -= a.test\n`})
    expect(found.map((d) => [d.source?.line, d.message])).toEqual([
      [7, 'hostnames -= removes from a value that is not set'],
    ])
  })

  it('says what a file is when it cannot be read as a nodeset file', () => {
    const refusedWith = (readFile: ReaderIO['readFile']) => {
      try {
        readNodeset(file('main.conf'), {readFile, env: {}})
      } catch (error) {
        return (error as DiagnosticsError).diagnostics.map(formatDiagnostic)
      }
      throw new Error('expected a refusal')
    }
    expect(refusedWith(() => 'a\0b')).toEqual([
      `${file('main.conf')} is a binary file (a NUL byte at offset 1), not text`,
    ])
    expect(refusedWith(() => 'x'.repeat(1024 * 1024 + 1))).toEqual([
      `${file('main.conf')} is 1.0 MiB; a nodeset file is at most 1 MiB`,
    ])
    expect(refusedWith(() => ({unreadable: 'is a directory, not a file'}))).toEqual([
      `${file('main.conf')} is a directory, not a file`,
    ])
  })
})

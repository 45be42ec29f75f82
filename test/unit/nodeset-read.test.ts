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
    expect(messages).toContain('4: set_etc_hosts must be true or false (write true or false)')
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
})

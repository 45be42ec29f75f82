import {execFile} from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {promisify} from 'node:util'
import {describe, expect, it} from 'vitest'

const root = path.resolve(__dirname, '../..')
const bin = path.join(root, 'bin/run.js')
const run = async (args: string[], env: Record<string, string> = {}) => {
  try {
    const {stdout, stderr} = await promisify(execFile)(process.execPath, [bin, ...args], {
      cwd: root,
      env: {...process.env, ...env},
    })
    return {code: 0, stdout, stderr}
  } catch (error) {
    const e = error as {code: number; stdout: string; stderr: string}
    return {code: e.code, stdout: e.stdout, stderr: e.stderr}
  }
}

describe('nodeset plan and graph, as a user runs them', () => {
  it('plans the seed file', async () => {
    const {code, stdout} = await run(['plan', 'examples/foobar.conf'])
    expect(code).toBe(0)
    for (let i = 1; i <= 10; i++) expect(stdout).toMatch(new RegExp(`^app${i}\\.foobar\\.com\\s+appserver`, 'm'))
    expect(stdout).toMatch(/^mysql\.foobar\.com\s+service:mysql/m)
    expect(stdout).toMatch(/^balancer\.foobar\.com\s+balancer/m)
    expect(stdout).toContain(
      'load balancing: on (10 appservers behind balancer.foobar.com); hostnames: foobar.com, baz.com',
    )
  })

  it('refuses the deadlock with the cycle, exit code 2', async () => {
    const {code, stderr} = await run(['plan', 'examples/deadlock.conf'])
    expect(code).toBe(2)
    expect(stderr).toContain('examples/deadlock.conf:13: deadlock')
    expect(stderr).toMatch(
      /i1\.example\.test\/consume needs .* i2\.example\.test\/consume {2}\(examples\/deadlock\.conf:13\)/,
    )
    expect(stderr).toMatch(
      /i2\.example\.test\/consume needs .* i1\.example\.test\/consume {2}\(examples\/deadlock\.conf:18\)/,
    )
  })

  it('reports an unknown key, an unset variable and an extends loop together, exit code 2', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-cli-'))
    fs.writeFileSync(
      path.join(dir, 'a.conf'),
      '[general]\nextends = b.conf\n[provider]\nprovider = local\nregion = ${NODESET_TEST_UNSET}\n[appserver]\nnodez = 1\n',
    )
    fs.writeFileSync(path.join(dir, 'b.conf'), '[general]\nextends = a.conf\n')
    const {code, stderr} = await run(['plan', path.join(dir, 'a.conf')])
    expect(code).toBe(2)
    expect(stderr).toContain(`${path.join(dir, 'b.conf')}:2: extends loop: a.conf → b.conf → a.conf`)
    expect(stderr).toContain(
      `${path.join(dir, 'a.conf')}:5: \${NODESET_TEST_UNSET}: the environment variable NODESET_TEST_UNSET is not set`,
    )
    expect(stderr).toContain(`${path.join(dir, 'a.conf')}:7: unknown key "nodez" in [appserver]`)
    expect(stderr).toContain('3 problems; nothing was changed.')
  })

  it('never prints a secret, in text or JSON', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-cli-'))
    fs.writeFileSync(path.join(dir, 'secret.txt'), 'file-secret-value\n')
    fs.writeFileSync(
      path.join(dir, 's.conf'),
      '[general]\nname = s\n[provider]\nprovider = local\nsecret_file = secret.txt\n[service:mysql]\nmysql.admin_password = inline-pass-value\n[appserver]\nappserver.port = inline-pass-value\n',
    )
    for (const args of [
      ['plan', path.join(dir, 's.conf')],
      ['plan', path.join(dir, 's.conf'), '--json'],
      ['graph', path.join(dir, 's.conf'), '--format', 'json'],
    ]) {
      const {code, stdout, stderr} = await run(args)
      expect(code).toBe(0)
      expect(stdout + stderr).not.toContain('inline-pass-value')
      expect(stdout + stderr).not.toContain('file-secret-value')
    }
    const json = JSON.parse((await run(['plan', path.join(dir, 's.conf'), '--json'])).stdout)
    expect(json.steps.find((s: {service: string}) => s.service === 'mysql').params.admin_password).toBe('********')
  })

  it('draws the graph as DOT and SVG without Graphviz', async () => {
    const dot = await run(['graph', 'examples/interdependent.conf', '--format', 'dot'])
    expect(dot.code).toBe(0)
    expect(dot.stdout).toContain('"i1.example.test/consume" -> "i2.example.test/produce" [label="value"]')
    const svg = await run(['graph', 'examples/interdependent.conf', '--format', 'svg'])
    expect(svg.code).toBe(0)
    expect(svg.stdout).toMatch(/^<\?xml[\s\S]*<svg[\s\S]*i2\.example\.test[\s\S]*<\/svg>\s*$/)
  })

  it('lists services with their metadata', async () => {
    const {code, stdout} = await run(['services', '--json'])
    expect(code).toBe(0)
    const names = JSON.parse(stdout).services.map((s: {name: string}) => s.name)
    expect(names).toEqual(expect.arrayContaining(['appserver', 'balancer', 'mysql']))
  })
})

import {execFileSync} from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {describe, expect, it} from 'vitest'
import {
  chainCommand,
  contentHash,
  parseOutputs,
  parseRecordedSteps,
  recordedStepsCommand,
  stepCommand,
} from '../../src/setup/commands.js'
import {mergeHostsBlock} from '../../src/core/hostsblock.js'
import {wiringScript} from '../../src/setup/render.js'
import {renderHostsBlock, renderRoleMap} from '../../src/plan/wiring.js'

const members = [
  {name: 'balancer.x.test', role: 'balancer', index: 1, ip: '10.0.0.9'},
  {name: 'app2.x.test', role: 'appserver', index: 2, ip: '10.0.0.3'},
  {name: 'mysql.x.test', role: 'service:mysql', index: 1, ip: '10.0.0.5'},
  {name: 'app1.x.test', role: 'appserver', index: 1, ip: '10.0.0.2'},
]

/** Run a generated script with its absolute paths moved under a temporary root, in a real sh. */
function runUnder(root: string, script: string, stdin = ''): string {
  const moved = script.replaceAll('/var/lib/nodeset', `${root}/var/lib/nodeset`).replaceAll('/etc/', `${root}/etc/`)
  // From a file: a command that skips its step exits without reading its input.
  const input = path.join(root, '.stdin')
  fs.writeFileSync(input, stdin)
  const fd = fs.openSync(input, 'r')
  try {
    return execFileSync('sh', ['-c', moved], {stdio: [fd, 'pipe', 'pipe'], encoding: 'utf8'})
  } finally {
    fs.closeSync(fd)
  }
}

describe('commands and files built as data', () => {
  it('writes the role map in the seed format, appservers first', () => {
    expect(renderRoleMap(members)).toBe(
      'appserver = app1.x.test 10.0.0.2\nappserver = app2.x.test 10.0.0.3\nservice.mysql = mysql.x.test 10.0.0.5\nbalancer = balancer.x.test 10.0.0.9\n',
    )
  })

  it('replaces only its own block of a hosts file', () => {
    const before = '127.0.0.1 localhost\n# BEGIN nodeset other\n1.1.1.1 a\n# END nodeset other\n'
    const once = mergeHostsBlock(before, 'x', renderHostsBlock('x', members))
    const twice = mergeHostsBlock(once, 'x', renderHostsBlock('x', members.slice(0, 2)))
    expect(once.startsWith(before)).toBe(true)
    expect(twice).toBe(
      before + '# BEGIN nodeset x\n10.0.0.3 app2.x.test app2\n10.0.0.9 balancer.x.test balancer\n# END nodeset x\n',
    )
  })

  it('the wiring script rewrites its hosts block where it is, in the same file, and leaves every other line', () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-wiring-'))
    fs.mkdirSync(path.join(root, 'etc'))
    const hosts = path.join(root, 'etc/hosts')
    fs.writeFileSync(
      hosts,
      '127.0.0.1 localhost\n# BEGIN nodeset x\n9.9.9.9 stale\n# END nodeset x\n::1 ip6-localhost\n',
    )
    const inode = fs.statSync(hosts).ino
    runUnder(root, wiringScript('x', members, true))
    expect(fs.readFileSync(hosts, 'utf8')).toBe(
      '127.0.0.1 localhost\n' + renderHostsBlock('x', members) + '::1 ip6-localhost\n',
    )
    expect(fs.statSync(hosts).ino).toBe(inode)
    expect(fs.readFileSync(path.join(root, 'etc/nodeset/roles'), 'utf8')).toBe(renderRoleMap(members))
    runUnder(root, wiringScript('x', members, false))
    expect(fs.readFileSync(hosts, 'utf8')).toContain('::1 ip6-localhost')
  })

  it('runs a step once, records its hash and outputs, skips it unchanged, and reruns a failure', () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-step-'))
    const env = {deployment: 'd', node: 'n1', role: 'r', service: 's'}
    const script =
      'echo "ran as $NODESET_NODE/$NODESET_SERVICE"\necho "port=5432" >> "$NODESET_OUTPUT"\necho "password=p w" >> "$NODESET_OUTPUT"\n'
    // The outputs come back in the same round trip, after the script's own output.
    const first = runUnder(root, stepCommand('s', 'a'.repeat(64), env, {force: false, marker: 'M'}), script)
    expect(first).toBe('ran as n1/s\nM:outputs\nport=5432\npassword=p w\n')
    const again = runUnder(root, stepCommand('s', 'a'.repeat(64), env, {force: false, marker: 'M'}), script)
    expect(again).toBe('M:unchanged\nport=5432\npassword=p w\n')
    expect(parseOutputs(again)).toEqual({port: '5432', password: 'p w'})
    expect(runUnder(root, stepCommand('s', 'a'.repeat(64), env, {force: true, marker: 'M'}), script)).toBe(first)
    // Another script (another hash) runs again.
    expect(runUnder(root, stepCommand('s', 'c'.repeat(64), env, {force: false, marker: 'M'}), script)).toBe(first)
    const failing = 'echo trying\nexit 4\n'
    expect(() => runUnder(root, stepCommand('t', 'b'.repeat(64), env, {force: false, marker: 'M'}), failing)).toThrow()
    expect(fs.existsSync(path.join(root, 'var/lib/nodeset/steps/t.sha256'))).toBe(false)
    expect(fs.statSync(path.join(root, 'var/lib/nodeset/steps/s.out')).mode & 0o777).toBe(0o600)
  })

  it('runs a chain of steps in one command, each from its part of the input, and stops at the first failure', () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-chain-'))
    const env = (service: string) => ({deployment: 'd', node: 'n', role: 'r', service})
    const scripts = ['echo one\n', 'echo "k=v" > "$NODESET_OUTPUT"; echo twö\n', 'echo three; exit 5\n', 'echo four\n']
    const steps = scripts.map((script, i) => ({
      step: `s${i}`,
      hash: contentHash(script),
      env: env(`s${i}`),
      bytes: Buffer.byteLength(script),
    }))
    const run = () => {
      try {
        return {code: 0, out: runUnder(root, chainCommand(steps, {force: false, marker: 'M'}), scripts.join(''))}
      } catch (error) {
        return {code: (error as {status: number}).status, out: String((error as {stdout: string}).stdout)}
      }
    }
    expect(run()).toEqual({
      code: 5,
      out: 'one\nM:outputs\nM:next\ntwö\nM:outputs\nk=v\nM:next\nthree\n',
    })
    expect(fs.readFileSync(path.join(root, 'var/lib/nodeset/steps/s1.sh'), 'utf8')).toBe(scripts[1])
    expect(fs.existsSync(path.join(root, 'var/lib/nodeset/steps/s2.sha256'))).toBe(false)
    expect(fs.existsSync(path.join(root, 'var/lib/nodeset/steps/s3.sh'))).toBe(false)
    // Again: what succeeded is unchanged, the failure runs again; the input is not left behind.
    expect(run().out).toBe('M:unchanged\nM:next\nM:unchanged\nk=v\nM:next\nthree\n')
    expect(fs.readdirSync(path.join(root, 'var/lib/nodeset/steps')).filter((f) => f.startsWith('.'))).toEqual([])
  })

  it('reads every recorded step in one command, as the per-step skip would see it, in a real sh', () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-recorded-'))
    const env = {deployment: 'd', node: 'n', role: 'r', service: 's'}
    const ok = 'echo "key=v a=l=ue"; echo "x=1" > "$NODESET_OUTPUT"; echo "pw=p q" >> "$NODESET_OUTPUT"\n'
    runUnder(root, stepCommand('service mysql', contentHash(ok), env, {force: false, marker: 'M'}), ok)
    runUnder(root, stepCommand('wiring', contentHash('true\n'), env, {force: false, marker: 'M'}), 'true\n')
    // A failure records nothing; a step whose outputs file is gone would run again, so it is left out.
    const bad = 'exit 3\n'
    expect(() =>
      runUnder(root, stepCommand('broken', contentHash(bad), env, {force: false, marker: 'M'}), bad),
    ).toThrow()
    fs.rmSync(path.join(root, 'var/lib/nodeset/steps/wiring.out'))
    const recorded = parseRecordedSteps(runUnder(root, recordedStepsCommand()))
    expect([...recorded.keys()]).toEqual(['service_mysql'])
    expect(recorded.get('service_mysql')).toEqual({hash: contentHash(ok), outputs: 'x=1\npw=p q\n'})
    // A node without base64 says so (non-zero), so that each step asks for itself instead.
    const noBase64 = () => execFileSync('/bin/sh', ['-c', recordedStepsCommand()], {env: {PATH: '/nonexistent'}})
    expect(noBase64).toThrow(expect.objectContaining({status: 3}))
    // The node's first step reads the same listing first, in its own round trip, before it changes anything.
    const first = runUnder(
      root,
      stepCommand('wiring', contentHash('true\n'), env, {force: false, marker: 'M', readRecorded: true}),
      'true\n',
    )
    const [listing, rest] = first.split('M:recorded\n')
    expect(parseRecordedSteps(listing)).toEqual(recorded)
    expect(rest).toBe('M:outputs\n')
    // Without base64 the listing is empty and the step goes on.
    const bare = runUnder(
      root,
      stepCommand('wiring', contentHash('true\n'), env, {force: false, marker: 'M', readRecorded: true}).replace(
        'command -v base64',
        'command -v nonexistent-base64',
      ),
      'true\n',
    )
    expect(bare).toBe('M:recorded\nM:unchanged\n')
    // Nothing recorded yet (no steps folder): nothing, and no error.
    expect(
      parseRecordedSteps(runUnder(fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-none-')), recordedStepsCommand())),
    ).toEqual(new Map())
  })
})

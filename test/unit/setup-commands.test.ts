import {execFileSync} from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {describe, expect, it} from 'vitest'
import {
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
  return execFileSync('sh', ['-c', moved], {input: stdin, encoding: 'utf8'})
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
    const first = runUnder(root, stepCommand('s', 'a'.repeat(64), env, {force: false, marker: 'SKIPPED'}), script)
    expect(first).toBe('ran as n1/s\n')
    const again = runUnder(root, stepCommand('s', 'a'.repeat(64), env, {force: false, marker: 'SKIPPED'}), script)
    expect(again.split('\n')[0]).toBe('SKIPPED')
    expect(parseOutputs(again)).toEqual({port: '5432', password: 'p w'})
    expect(runUnder(root, stepCommand('s', 'a'.repeat(64), env, {force: true, marker: 'SKIPPED'}), script)).toBe(
      'ran as n1/s\n',
    )
    const failing = 'echo trying\nexit 4\n'
    expect(() =>
      runUnder(root, stepCommand('t', 'b'.repeat(64), env, {force: false, marker: 'SKIPPED'}), failing),
    ).toThrow()
    expect(fs.existsSync(path.join(root, 'var/lib/nodeset/steps/t.sha256'))).toBe(false)
    expect(fs.statSync(path.join(root, 'var/lib/nodeset/steps/s.out')).mode & 0o777).toBe(0o600)
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
    // Nothing recorded yet (no steps folder): nothing, and no error.
    expect(
      parseRecordedSteps(runUnder(fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-none-')), recordedStepsCommand())),
    ).toEqual(new Map())
  })
})

import {execFileSync} from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import fc from 'fast-check'
import {afterAll, describe, expect, it} from 'vitest'
import {
  hasHostsBlock,
  hostsMarkers,
  hostsMergeScript,
  mergeHostsBlock,
  removeHostsBlock,
} from '../../src/core/hostsblock.js'

// A backslash in the path: awk -v would read `\t` as a tab, ENVIRON does not.
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-hosts-\\t-'))
afterAll(() => fs.rmSync(work, {recursive: true, force: true}))

const DEPLOYMENT = 'shop.prod-1'
const {begin, end} = hostsMarkers(DEPLOYMENT)

/** Run merge_hosts on files under `work` with a real sh; returns its exit status. */
function mergeWithSh(hosts: string, block: string, umask = '022'): number {
  fs.writeFileSync(path.join(work, 'block'), block)
  const script = `umask ${umask}\n${hostsMergeScript(DEPLOYMENT)}merge_hosts "$1" "$2" "$3"`
  try {
    execFileSync('sh', ['-c', script, 'sh', hosts, path.join(work, 'block'), path.join(work, 'hosts.new')])
    return 0
  } catch (error) {
    return (error as {status: number}).status
  }
}

const line = fc.constantFrom(
  begin,
  end,
  '# BEGIN nodeset other',
  '# END nodeset other',
  ` ${begin}`,
  '127.0.0.1 localhost',
  '10.0.0.2 app1.shop.test app1',
  "192.0.2.1 printer # it's \\ mine",
  '',
)
const file = fc.array(line, {maxLength: 8}).map((lines) => lines.map((l) => `${l}\n`).join(''))
const block = fc
  .array(fc.constantFrom('10.0.0.3 db.shop.test db', '10.0.0.9 balancer.shop.test balancer'), {maxLength: 3})
  .map((lines) => [begin, ...lines, end].join('\n') + '\n')

describe('the hosts block', () => {
  it('replaces the block where it is, appends one that is missing, and keeps every other line', () => {
    const other = '127.0.0.1 localhost\n# BEGIN nodeset other\n1.1.1.1 a\n# END nodeset other\n'
    const mine = `${begin}\n10.0.0.3 db\n${end}\n`
    const once = mergeHostsBlock(other, DEPLOYMENT, mine)
    expect(once).toBe(other + mine)
    const moved = `${begin}\n9.9.9.9 stale\n${end}\n::1 ip6-localhost\n`
    expect(mergeHostsBlock(moved, DEPLOYMENT, mine)).toBe(`${mine}::1 ip6-localhost\n`)
    expect(mergeHostsBlock('127.0.0.1 localhost', DEPLOYMENT, mine)).toBe(`127.0.0.1 localhost\n${mine}`)
    expect(mergeHostsBlock(`\n${mine}`, DEPLOYMENT, mine)).toBe(`\n${mine}`)
    expect(removeHostsBlock(once, DEPLOYMENT)).toBe(other)
    expect(hasHostsBlock(once, DEPLOYMENT)).toBe(true)
    expect(hasHostsBlock(other, DEPLOYMENT)).toBe(false)
  })

  it('merges on a node exactly as in TypeScript', () => {
    // Each run merges a batch of cases with one sh, so the property stays quick.
    const cases = fc.array(fc.tuple(file, block), {minLength: 1, maxLength: 15})
    fc.assert(
      fc.property(cases, (batch) => {
        const dir = fs.mkdtempSync(path.join(work, 'batch-'))
        batch.forEach(([existing, next], i) => {
          fs.writeFileSync(path.join(dir, `hosts-${i}`), existing)
          fs.writeFileSync(path.join(dir, `block-${i}`), next)
        })
        const loop = `i=0; while [ $i -lt ${batch.length} ]; do merge_hosts "$1/hosts-$i" "$1/block-$i" "$1/new" || exit 1; i=$((i + 1)); done`
        execFileSync('sh', ['-c', `${hostsMergeScript(DEPLOYMENT)}${loop}`, 'sh', dir])
        batch.forEach(([existing, next], i) =>
          expect(fs.readFileSync(path.join(dir, `hosts-${i}`), 'utf8')).toBe(
            mergeHostsBlock(existing, DEPLOYMENT, next),
          ),
        )
      }),
      {numRuns: 20},
    )
  })

  it('rewrites the file in place, creates a missing one 0644, and refuses a block without its markers', () => {
    const hosts = path.join(work, 'in-place')
    fs.writeFileSync(hosts, '127.0.0.1 localhost\n')
    const inode = fs.statSync(hosts).ino
    expect(mergeWithSh(hosts, `${begin}\n${end}\n`)).toBe(0)
    expect(fs.statSync(hosts).ino).toBe(inode)
    expect(fs.existsSync(path.join(work, 'hosts.new'))).toBe(false)

    const created = path.join(work, 'created')
    expect(mergeWithSh(created, `${begin}\n${end}\n`, '077')).toBe(0)
    expect(fs.readFileSync(created, 'utf8')).toBe(`${begin}\n${end}\n`)
    expect(fs.statSync(created).mode & 0o777).toBe(0o644)

    const before = fs.readFileSync(hosts, 'utf8')
    for (const bad of ['', '10.0.0.3 db\n', `${begin}\n10.0.0.3 db\n`, `# BEGIN nodeset other\n${end}\n`])
      expect(mergeWithSh(hosts, bad)).toBe(2)
    expect(fs.readFileSync(hosts, 'utf8')).toBe(before)
  })
})

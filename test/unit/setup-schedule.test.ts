import {describe, expect, it} from 'vitest'
import {schedule, type SchedulableStep} from '../../src/setup/schedule.js'
import type {StepStatus} from '../../src/setup/steps.js'

const step = (node: string, name: string, needs: string[] = []): SchedulableStep => ({node, name, needs})

const steps = [
  step('db', 'base'),
  step('db', 'wiring', ['db/base']),
  step('db', 'mysql', ['db/wiring']),
  step('app', 'base'),
  step('app', 'wiring', ['app/base']),
  step('app', 'web', ['app/wiring', 'db/mysql']),
  step('app', 'cron', ['app/web']),
]

/** The decisions for these states (every other step waiting), with steps as keys. */
function decide(
  status: Record<string, StepStatus>,
  opts: {missing?: Record<string, string[]>; concurrency?: number; of?: SchedulableStep[]} = {},
) {
  const d = schedule({
    steps: opts.of ?? steps,
    status: new Map(Object.entries(status)),
    missing: (s) => opts.missing?.[`${s.node}/${s.name}`] ?? [],
    concurrency: opts.concurrency ?? 16,
  })
  return {
    start: d.start.map((s) => `${s.node}/${s.name}`),
    blocked: Object.fromEntries(d.blocked.map(({step: s, message}) => [`${s.node}/${s.name}`, message])),
    settled: d.settled,
  }
}

describe('the setup scheduler', () => {
  it('starts what needs nothing, then what its needs made ready', () => {
    expect(decide({})).toEqual({start: ['db/base', 'app/base'], blocked: {}, settled: false})
    expect(decide({'db/base': 'done', 'app/base': 'running'})).toEqual({
      start: ['db/wiring'],
      blocked: {},
      settled: false,
    })
  })

  it('counts an unchanged step as done', () => {
    const d = decide({'db/base': 'skipped', 'db/wiring': 'skipped', 'app/base': 'done', 'app/wiring': 'skipped'})
    expect(d.start).toEqual(['db/mysql'])
    expect(
      decide({
        'db/base': 'skipped',
        'db/wiring': 'skipped',
        'db/mysql': 'skipped',
        'app/base': 'skipped',
        'app/wiring': 'skipped',
      }).start,
    ).toEqual(['app/web'])
  })

  it('waits for the values a step refers to, and does not start it before they are known', () => {
    const status: Record<string, StepStatus> = {
      'db/base': 'done',
      'db/wiring': 'done',
      'db/mysql': 'running',
      'app/base': 'done',
      'app/wiring': 'done',
    }
    const without = [step('app', 'base'), step('app', 'wiring', ['app/base']), step('app', 'probe', ['app/wiring'])]
    expect(decide(status, {of: [...steps.slice(0, 3), ...without], missing: {'app/probe': ['fact ip of db']}})).toEqual(
      {
        start: [],
        blocked: {},
        settled: false,
      },
    )
    expect(decide(status, {of: [...steps.slice(0, 3), ...without]}).start).toEqual(['app/probe'])
  })

  it('blocks what depends on a failed step, down the line, and nothing else', () => {
    const d = decide({'db/base': 'done', 'db/wiring': 'done', 'db/mysql': 'failed', 'app/base': 'done'})
    expect(d).toEqual({
      start: ['app/wiring'],
      blocked: {'app/web': 'blocked by db/mysql', 'app/cron': 'blocked by app/web'},
      settled: false,
    })
    // A node that failed its base: everything on it is blocked, the other node goes on.
    expect(decide({'app/base': 'failed'})).toEqual({
      start: ['db/base'],
      blocked: {
        'app/wiring': 'blocked by app/base',
        'app/web': 'blocked by app/wiring',
        'app/cron': 'blocked by app/web',
      },
      settled: false,
    })
  })

  it('blocks down the line whatever the order of the steps', () => {
    const dependentsFirst = [step('n', 'c', ['n/b']), step('n', 'b', ['n/a']), step('n', 'a')]
    expect(decide({'n/a': 'failed'}, {of: dependentsFirst}).blocked).toEqual({
      'n/b': 'blocked by n/a',
      'n/c': 'blocked by n/b',
    })
  })

  it('starts no more than the concurrency allows', () => {
    const many = Array.from({length: 5}, (_, i) => step(`n${i}`, 'base'))
    expect(decide({}, {of: many, concurrency: 2}).start).toEqual(['n0/base', 'n1/base'])
    expect(decide({'n0/base': 'running'}, {of: many, concurrency: 2}).start).toEqual(['n1/base'])
    expect(decide({'n0/base': 'running', 'n1/base': 'running'}, {of: many, concurrency: 2}).start).toEqual([])
    expect(decide({}, {of: many, concurrency: 0}).start).toEqual(['n0/base'])
  })

  it('settles when nothing runs and nothing can start, saying what each step still waits for', () => {
    const status: Record<string, StepStatus> = {
      'db/base': 'done',
      'db/wiring': 'done',
      'db/mysql': 'done',
      'app/base': 'done',
      'app/wiring': 'done',
    }
    expect(decide(status, {missing: {'app/web': ['output password of db/mysql']}})).toEqual({
      start: [],
      blocked: {
        'app/web': 'waiting for output password of db/mysql, which nothing provided',
        'app/cron': 'blocked by app/web',
      },
      settled: true,
    })
    const done = Object.fromEntries(steps.map((s): [string, StepStatus] => [`${s.node}/${s.name}`, 'done']))
    expect(decide(done)).toEqual({start: [], blocked: {}, settled: true})
  })

  it('blocks a step that needs a step that is not in the run', () => {
    expect(decide({}, {of: [step('a', 'web', ['b/mysql'])]})).toEqual({
      start: [],
      blocked: {'a/web': 'blocked by b/mysql'},
      settled: true,
    })
  })
})

/** The status page's live state: built from the config server's status, and the changes pushed to the page. */
import fc from 'fast-check'
import {describe, expect, it} from 'vitest'
import type {DeploymentStatus} from '../../src/configserver/protocol.js'
import {applyLive, diffLive, liveState, VERTEX_STATES, type LiveState} from '../../src/web/live.js'

const status = (services: Record<string, DeploymentStatus['instances'][number]['services']>): DeploymentStatus => ({
  deployment: 'd',
  state: 'pending',
  registeredAt: '2026-01-01T00:00:00.000Z',
  deadline: '2026-01-01T00:10:00.000Z',
  instances: Object.entries(services).map(([id, list]) => ({id, role: 'r', address: '10.0.0.2', services: list})),
})

describe('the live state', () => {
  it('is "not created" everywhere before the deployment is registered', () => {
    const live = liveState(['a/x', 'b/y'], undefined)
    expect(live).toEqual({
      phase: 'not created',
      vertices: {'a/x': {state: 'not created'}, 'b/y': {state: 'not created'}},
      nodes: {},
    })
  })

  it('takes states, what a service waits for and failure messages from the status, and only vertices of the plan', () => {
    const live = liveState(
      ['a/x', 'a/y', 'b/z'],
      status({
        a: [
          {name: 'x', status: 'waiting', waitingFor: ['output password of b/z']},
          {name: 'y', status: 'failed', exitCode: 3, message: 'boom'},
        ],
        ghost: [{name: 'q', status: 'ready'}],
      }),
    )
    expect(live.phase).toBe('pending')
    expect(live.deadline).toBe('2026-01-01T00:10:00.000Z')
    expect(live.vertices).toEqual({
      'a/x': {state: 'waiting', waitingFor: ['output password of b/z']},
      'a/y': {state: 'failed', message: 'boom', exitCode: 3},
      'b/z': {state: 'not created'},
    })
    expect(live.nodes.a).toEqual({address: '10.0.0.2'})
  })
})

describe('the changes pushed to the page', () => {
  const base = liveState(['a/x', 'a/y'], status({a: [{name: 'x', status: 'waiting', waitingFor: ['w']}]}))

  it('are nothing when nothing changed', () => {
    expect(diffLive(base, structuredClone(base))).toBeUndefined()
  })

  it('hold only what changed', () => {
    const next = liveState(['a/x', 'a/y'], {
      ...status({a: [{name: 'x', status: 'succeeded'}]}),
      state: 'failed',
      reason: 'why',
    })
    const patch = diffLive(base, next)!
    expect(patch).toEqual({phase: 'failed', reason: 'why', vertices: {'a/x': {state: 'succeeded'}}})
    expect(applyLive(base, patch)).toEqual(next)
  })

  it('say what is gone: a field or a node', () => {
    const gone = liveState(['a/x', 'a/y'], undefined)
    const patch = diffLive(base, gone)!
    expect(patch.nodes).toEqual({a: null})
    expect(patch.deadline).toBeNull()
    expect(applyLive(base, patch)).toEqual(gone)
  })

  it('bring any state to any other, applied in turn', () => {
    const ids = ['a/x', 'a/y', 'b/x']
    const vertex = fc.record(
      {
        state: fc.constantFrom(...VERTEX_STATES),
        message: fc.string({maxLength: 4}),
        waitingFor: fc.array(fc.string({maxLength: 3}), {minLength: 1, maxLength: 2}),
      },
      {requiredKeys: ['state']},
    )
    const state: fc.Arbitrary<LiveState> = fc.record(
      {
        phase: fc.constantFrom('not created' as const, 'pending' as const, 'settled' as const, 'failed' as const),
        reason: fc.string({maxLength: 4}),
        deadline: fc.constantFrom('t1', 't2'),
        vertices: fc.record(Object.fromEntries(ids.map((id) => [id, vertex]))),
        nodes: fc.dictionary(fc.constantFrom('a', 'b', 'c'), fc.record({address: fc.constantFrom('1', '2')})),
      },
      {requiredKeys: ['phase', 'vertices', 'nodes']},
    )
    fc.assert(
      fc.property(fc.array(state, {minLength: 2, maxLength: 5}), (states) => {
        let shown = states[0]
        for (const next of states.slice(1)) {
          const patch = diffLive(shown, next)
          if (patch) shown = applyLive(shown, JSON.parse(JSON.stringify(patch)))
          expect(JSON.parse(JSON.stringify(shown))).toEqual(JSON.parse(JSON.stringify(next)))
        }
      }),
    )
  })
})

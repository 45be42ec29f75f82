/**
 * The status page reads another process's config server state from its SQLite file: here a real config
 * server (its own connection) writes, and the page's read-only reader sees each commit, secrets listed.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {ConfigServerClient} from '../../src/configserver/client.js'
import {startConfigServer} from '../../src/configserver/server.js'
import {mergeStatuses} from '../../src/web/sites.js'
import {type Reading, SqliteStateSource} from '../../src/web/state.js'

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-web-state-'))
afterAll(() => fs.rmSync(dir, {recursive: true, force: true}))

describe('reading the state for the status page', () => {
  it('finds nothing, and creates nothing, before the state exists', async () => {
    const source = new SqliteStateSource(path.join(dir, 'none'), 'd')
    expect((await source.read(Date.now())).status).toBeUndefined()
    expect(fs.existsSync(path.join(dir, 'none'))).toBe(false)
    await source.close()
  })

  it('sees every commit of the process that writes, and lists the secrets it holds', async () => {
    const stateDir = path.join(dir, 'configserver')
    const server = await startConfigServer({stateDir, logger: false})
    const client = new ConfigServerClient({url: server.url, deployment: 'd', token: server.adminToken})
    const source = new SqliteStateSource(stateDir, 'd')
    try {
      expect((await source.read(Date.now())).status).toBeUndefined()
      await client.register({
        instances: [
          {id: 'db', role: 'service:mysql', services: [{name: 'mysql', provides: ['password']}]},
          {
            id: 'app',
            role: 'appserver',
            services: [{name: 'web', params: {pw: {template: '{{output "db" "mysql" "password"}}', secret: true}}}],
          },
        ],
      })
      let reading = await source.read(Date.now())
      const states = () =>
        reading.status!.instances.flatMap((i) => i.services.map((s) => `${i.id}/${s.name}=${s.status}`)).sort()
      expect(states()).toEqual(['app/web=waiting', 'db/mysql=ready'])
      await client.reportService('db', 'mysql', {state: 'succeeded', outputs: {password: 'hunter2-secret'}})
      reading = await source.read(Date.now())
      expect(states()).toEqual(['app/web=ready', 'db/mysql=succeeded'])
      expect(reading.secrets).toContain('hunter2-secret')
      await client.putFacts('db', {hostname: 'db'})
      expect((await source.read(Date.now())).facts('db')).toMatchObject({hostname: 'db'})
    } finally {
      await source.close()
      client.close()
      await server.close()
    }
  })
})

describe('the state of a deployment across sites', () => {
  const status = (state: 'pending' | 'settled' | 'failed', ids: string[], reason?: string) => ({
    status: {
      deployment: 'd',
      state,
      ...(reason ? {reason} : {}),
      registeredAt: 't',
      instances: ids.map((id) => ({id, role: 'r', services: [{name: 's', status: 'ready' as const}]})),
    },
  })
  const siteOf = (node: string) => (node.startsWith('e') ? 'east' : 'west')

  it("takes each node from its own site's server", () => {
    const merged = mergeStatuses(
      new Map([
        ['east', status('settled', ['e1', 'w1'])],
        ['west', status('pending', ['e1', 'w1'])],
      ]),
      siteOf,
    )!
    expect(merged.instances.map((i) => i.id)).toEqual(['e1', 'w1'])
    expect(merged.state).toBe('pending')
  })

  it('is failed when a site is, settled only when every site is', () => {
    const failed = mergeStatuses(
      new Map([
        ['east', status('failed', ['e1'], 'boom')],
        ['west', status('settled', ['w1'])],
      ]),
      siteOf,
    )!
    expect([failed.state, failed.reason]).toEqual(['failed', 'site east: boom'])
    const partly = mergeStatuses(
      new Map<string, Pick<Reading, 'status'>>([
        ['east', status('settled', ['e1'])],
        ['west', {}],
      ]),
      siteOf,
    )!
    expect(partly.state).toBe('pending')
    expect(mergeStatuses(new Map([['east', {}]]), siteOf)).toBeUndefined()
  })
})

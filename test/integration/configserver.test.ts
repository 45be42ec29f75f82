import {afterEach, beforeEach, describe, expect, it} from 'vitest'
import type {RegisterRequest} from '../../src/configserver/protocol.js'
import {failure, seed000, seed004, serverOn, stores, type TestServer} from './configserver-fixtures.js'

const STORES = await stores()

// The contract: every flow, on each store.
describe.each(STORES)('over %s', (kind) => {
  let server: TestServer
  beforeEach(async () => {
    server = await serverOn(kind)
  })
  afterEach(async () => {
    await server.close()
  })

  describe('config server: the seed 000 flow over real HTTP', () => {
    it('the app asks first and waits; the db phones home; the app gets the address the server saw', async () => {
      const admin = server.admin('wp')
      const {tokens} = await admin.register(seed000)
      expect(Object.keys(tokens).sort()).toEqual(['app.wp.test', 'db.wp.test'])

      const app = server.as('wp', tokens['app.wp.test'], '127.0.0.1')
      const db = server.as('wp', tokens['db.wp.test'], '127.0.0.7')

      // Without waiting: 202, what it waits for, and a Retry-After.
      const early = await app.getConfig('app.wp.test')
      expect(early.status).toBe(202)
      expect(early.retryAfter).toBeGreaterThan(0)
      expect(early.config.complete).toBe(false)
      expect(early.config.waiting).toEqual([
        {service: 'wordpress', param: 'db_host', kind: 'fact', instance: 'db.wp.test', key: 'ip'},
      ])
      expect(early.config.services.wordpress).toEqual({complete: false, params: {site: 'blog'}})

      let answered = false
      const waiting = app.getConfig('app.wp.test', {wait: 20}).then((answer) => ((answered = true), answer))
      await new Promise((resolve) => setTimeout(resolve, 300))
      expect(answered).toBe(false)

      const seen = await db.putFacts('db.wp.test', {hostname: 'db', ssh_host_keys: ['ssh-ed25519 AAAAC3Nza test']})
      expect(seen.ip).toBe('127.0.0.7')
      const answer = await waiting
      expect(answer.status).toBe(200)
      expect(answer.config.complete).toBe(true)
      expect(answer.config.services.wordpress.params).toEqual({db_host: '127.0.0.7', site: 'blog'})
      expect(answer.config.roles).toEqual({
        'service:mysql': [{name: 'db.wp.test', ip: '127.0.0.7'}],
        appserver: [{name: 'app.wp.test'}],
      })

      // The db's own config has nothing to wait for; it can do without the role map.
      const dbConfig = await db.getConfig('db.wp.test', {roles: false})
      expect(dbConfig.status).toBe(200)
      expect(dbConfig.config.roles).toEqual({})
      expect((await db.getConfig('db.wp.test')).config.roles['service:mysql']).toEqual([
        {name: 'db.wp.test', ip: '127.0.0.7'},
      ])
    })

    it('answers a long-poll within 50 ms of the completing phone-home', async () => {
      const {tokens} = await server.admin('wp').register(seed000)
      const app = server.as('wp', tokens['app.wp.test'])
      const db = server.as('wp', tokens['db.wp.test'])
      await app.getConfig('app.wp.test') // warm the connection
      const samples: number[] = []
      for (let round = 0; round < 5; round++) {
        if (round > 0) {
          await server.admin('wp').forgetInstance('db.wp.test')
          const again = await server.admin('wp').register({...seed000, reissueTokens: []})
          Object.assign(tokens, again.tokens)
        }
        const dbClient = round === 0 ? db : server.as('wp', tokens['db.wp.test'])
        let answeredAt = 0
        const waiting = app.getConfig('app.wp.test', {wait: 30}).then((a) => ((answeredAt = performance.now()), a))
        await new Promise((resolve) => setTimeout(resolve, 100))
        const before = performance.now()
        await dbClient.putFacts('db.wp.test', {hostname: 'db'})
        const answer = await waiting
        expect(answer.status).toBe(200)
        samples.push(answeredAt - before)
      }
      samples.sort((a, b) => a - b)
      // The median, so one scheduler hiccup on a loaded machine does not decide.
      expect(samples[2]).toBeLessThan(50)
    })

    it('long-polls one service: answers when that service completes, even if another still waits', async () => {
      const request: RegisterRequest = {
        instances: [
          {id: 'db', role: 'service:db', services: [{name: 'db', provides: ['password']}]},
          {
            id: 'app',
            role: 'appserver',
            services: [
              {name: 'web', params: {db: {template: '{{ip "db"}}'}}},
              {name: 'worker', params: {pw: {template: '{{output "db" "password"}}', secret: true}}},
            ],
          },
        ],
      }
      const {tokens} = await server.admin('d').register(request)
      const app = server.as('d', tokens.app)
      const web = app.getConfig('app', {service: 'web', wait: 20})
      await server.as('d', tokens.db).putFacts('db', {})
      const answer = await web
      expect(answer.status).toBe(200)
      expect(Object.keys(answer.config.services)).toEqual(['web'])
      const whole = await app.getConfig('app')
      expect(whole.status).toBe(202)
      expect(whole.config.waiting).toEqual([
        {service: 'worker', param: 'pw', kind: 'output', instance: 'db', outputService: 'db', key: 'password'},
      ])
      expect((await failure(app.getConfig('app', {service: 'nosuch'}))).message).toMatch(
        /404 instance app runs no service nosuch; it runs: web, worker/,
      )
    })

    it('gives a waiting long-poll a 202 when its time is up', async () => {
      const {tokens} = await server.admin('wp').register(seed000)
      const started = performance.now()
      const answer = await server.as('wp', tokens['app.wp.test']).getConfig('app.wp.test', {wait: 0.5})
      expect(answer.status).toBe(202)
      expect(performance.now() - started).toBeGreaterThanOrEqual(450)
    })
  })

  describe('config server: the seed 004 scenario', () => {
    it('I1.S1 needs I2.S2, I2.S1 needs I1.S2: every service completes as outputs are reported', async () => {
      const admin = server.admin('d4')
      const {tokens} = await admin.register(seed004)
      const i1 = server.as('d4', tokens.I1)
      const i2 = server.as('d4', tokens.I2)
      await i1.putFacts('I1', {})
      await i2.putFacts('I2', {})

      // S2 on both needs nothing: ready at once. S1 on both waits for the other's S2.
      expect((await i1.getConfig('I1', {service: 'S2'})).status).toBe(200)
      expect((await i2.getConfig('I2', {service: 'S2'})).status).toBe(200)
      const s1of1 = i1.getConfig('I1', {service: 'S1', wait: 20})
      const s1of2 = i2.getConfig('I2', {service: 'S1', wait: 20})
      let status = await admin.status()
      expect(status.state).toBe('pending')
      expect(status.instances.find((i) => i.id === 'I1')?.services).toEqual([
        {name: 'S1', status: 'waiting', waitingFor: ['output token of I2/S2']},
        {name: 'S2', status: 'ready'},
      ])

      await i2.reportService('I2', 'S2', {state: 'running'})
      await i2.reportService('I2', 'S2', {state: 'succeeded', exitCode: 0, outputs: {token: 'from-i2'}})
      const first = await s1of1
      expect(first.status).toBe(200)
      expect(first.config.services.S1.params.peer_token).toBe('from-i2')

      await i1.reportService('I1', 'S2', {state: 'succeeded', exitCode: 0, outputs: {token: 'from-i1'}})
      const second = await s1of2
      expect(second.config.services.S1.params.peer_token).toBe('from-i1')

      await i1.reportService('I1', 'S1', {state: 'succeeded', exitCode: 0})
      status = await admin.status()
      expect(status.state).toBe('pending')
      expect(status.instances.find((i) => i.id === 'I2')?.services.map((s) => s.status)).toEqual(['ready', 'succeeded'])
      await i2.reportService('I2', 'S1', {state: 'succeeded', exitCode: 0})
      status = await admin.status()
      expect(status.state).toBe('settled')
      expect(status.instances.flatMap((i) => i.services.map((s) => s.status))).toEqual([
        'succeeded',
        'succeeded',
        'succeeded',
        'succeeded',
      ])
    })

    it('refuses the deadlocked variant with the cycle, its sources and a hint', async () => {
      const deadlock: RegisterRequest = {
        instances: seed004.instances.map((instance) => ({
          ...instance,
          services: [
            {
              name: 'S1',
              params: {
                v: {
                  template: `{{output "${instance.id === 'I1' ? 'I2' : 'I1'}" "S1" "token"}}`,
                  source: {file: 'deploy.conf', line: instance.id === 'I1' ? 13 : 18},
                },
              },
              provides: ['token'],
            },
          ],
        })),
      }
      const error = await failure(server.admin('dl').register(deadlock))
      expect(error.status).toBe(400)
      expect(error.message).toContain('the deployment has 1 problem; nothing was registered')
      const [diagnostic] = error.diagnostics
      expect(diagnostic.message).toBe('deadlock: 2 services wait for each other in a cycle')
      expect(diagnostic.details).toEqual([
        'I1/S1 needs {{output "I2" "S1" "token"}} I2/S1  (deploy.conf:13)',
        'I2/S1 needs {{output "I1" "S1" "token"}} I1/S1  (deploy.conf:18)',
      ])
      expect(diagnostic.hint).toMatch(/break the cycle/)
      expect((await failure(server.admin('dl').status())).status).toBe(404)
    })

    it('refuses references that nothing provides, with did-you-mean', async () => {
      const dangling: RegisterRequest = {
        instances: [
          {id: 'db', role: 'service:mysql', services: [{name: 'mysql', provides: ['password']}]},
          {
            id: 'app',
            role: 'appserver',
            services: [
              {
                name: 'app',
                params: {
                  a: {template: '{{ip "service:mysq"}}', source: {file: 'f.conf', line: 3}},
                  b: {template: '{{output "db" "pasword"}}'},
                },
              },
            ],
          },
        ],
      }
      const error = await failure(server.admin('x').register(dangling))
      expect(error.status).toBe(400)
      expect(error.diagnostics.map((d) => [d.message, d.source, d.hint])).toEqual([
        [
          '{{ip "service:mysq"}} refers to "service:mysq", but no role or node has that name',
          {file: 'f.conf', line: 3},
          'did you mean "service:mysql"?',
        ],
        [
          '{{output "db" "pasword"}}: no service of db (role service:mysql) provides "pasword"',
          undefined,
          'did you mean "password"?',
        ],
      ])
    })

    it('refuses missing inputs listing them, and inputs for params that take none', async () => {
      const request: RegisterRequest = {
        instances: [
          {
            id: 'a',
            role: 'r',
            services: [{name: 's', params: {launch_time: {input: true}, other: {input: true}, c: {value: '1'}}}],
          },
        ],
        inputs: {a: {s: {other: 'x'}}},
      }
      const missing = await failure(server.admin('in').register(request))
      expect(missing.status).toBe(400)
      expect(missing.body?.missing).toEqual(['a/s/launch_time'])
      expect(missing.message).toContain('missing inputs: a/s/launch_time')

      const extra = await failure(
        server.admin('in').register({...request, inputs: {a: {s: {launch_time: 'now', other: 'x', c: 'y'}}}}),
      )
      expect(extra.status).toBe(400)
      expect(extra.message).toContain('inputs for params that are not inputs: a/s/c')

      await server.admin('in').register({...request, inputs: {a: {s: {launch_time: 'now', other: 'x'}}}})
      const {tokens} = await server
        .admin('in')
        .register({...request, inputs: {a: {s: {launch_time: 'later', other: 'x'}}}, reissueTokens: ['a']})
      const config = await server.as('in', tokens.a).getConfig('a')
      expect(config.status).toBe(200)
      expect(config.config.services.s.params).toEqual({launch_time: 'later', other: 'x', c: '1'})
    })
  })

  describe('config server: replacing a deployment', () => {
    it('keeps facts, outputs, contact times and tokens of instances that stay; adds and drops the others', async () => {
      const admin = server.admin('r')
      const first: RegisterRequest = {
        instances: [
          {id: 'db', role: 'service:db', services: [{name: 'db', provides: ['password']}]},
          {
            id: 'old',
            role: 'appserver',
            services: [{name: 'app', params: {pw: {template: '{{output "service:db" "password"}}'}}}],
          },
        ],
      }
      const {tokens} = await admin.register(first)
      const db = server.as('r', tokens.db)
      await db.putFacts('db', {hostname: 'db1'})
      await db.reportService('db', 'db', {state: 'succeeded', exitCode: 0, outputs: {password: 'pw1'}})
      const before = (await admin.status()).instances.find((i) => i.id === 'db')!

      const second: RegisterRequest = {
        instances: [
          first.instances[0],
          {
            id: 'new',
            role: 'appserver',
            services: [{name: 'app', params: {pw: {template: '{{output "service:db" "password"}}'}}}],
          },
        ],
      }
      const again = await admin.register(second)
      expect(Object.keys(again.tokens)).toEqual(['new'])

      // db's token still works, and its facts, outputs and contact times are still there.
      const state = await admin.state()
      expect(state.instances.map((i) => i.id).sort()).toEqual(['db', 'new'])
      const dbState = state.instances.find((i) => i.id === 'db')!
      expect(dbState.facts).toEqual({hostname: 'db1', ip: '127.0.0.1'})
      expect(dbState.outputs).toEqual({db: {password: 'pw1'}})
      expect(dbState.services).toEqual({db: {status: 'succeeded', exitCode: 0}})
      const after = (await admin.status()).instances.find((i) => i.id === 'db')!
      expect([after.firstContact, after.lastContact]).toEqual([before.firstContact, before.lastContact])
      expect((await db.putFacts('db', {hostname: 'db1'})).ip).toBe('127.0.0.1')

      // The new instance's config completes from what db reported before the replacement.
      const config = await server.as('r', again.tokens.new).getConfig('new')
      expect(config.status).toBe(200)
      expect(config.config.services.app.params.pw).toBe('pw1')

      // The dropped instance is gone, and so is its token.
      expect((await failure(admin.getConfig('old'))).status).toBe(404)
      expect((await failure(server.as('r', tokens.old).getConfig('old'))).status).toBe(401)

      // A reissued token replaces the old one.
      const reissued = await admin.register({...second, reissueTokens: ['db']})
      expect(Object.keys(reissued.tokens)).toEqual(['db'])
      expect((await failure(db.putFacts('db', {}))).status).toBe(401)
      expect((await server.as('r', reissued.tokens.db).putFacts('db', {})).ip).toBe('127.0.0.1')
    })

    it('answers a waiting long-poll with 404 when its instance is forgotten', async () => {
      const {tokens} = await server.admin('wp').register(seed000)
      const waiting = failure(server.admin('wp').getConfig('app.wp.test', {wait: 20}))
      await new Promise((resolve) => setTimeout(resolve, 100))
      await server.admin('wp').forgetInstance('app.wp.test')
      const error = await waiting
      expect(error.status).toBe(404)
      expect(error.message).toContain('unknown instance app.wp.test in deployment wp')
      expect(tokens['app.wp.test']).toBeTruthy()
    })

    it('deletes a deployment: its routes answer 404 and its tokens stop working', async () => {
      const {tokens} = await server.admin('wp').register(seed000)
      await server.admin('wp').deleteDeployment()
      expect((await failure(server.admin('wp').status())).message).toMatch(
        /404 unknown deployment wp; register it first/,
      )
      expect((await failure(server.as('wp', tokens['db.wp.test']).putFacts('db.wp.test', {}))).status).toBe(401)
      expect((await failure(server.admin('wp').deleteDeployment())).status).toBe(404)
    })
  })

  describe('config server: services, status and the startup deadline', () => {
    it('accepts only declared outputs', async () => {
      const {tokens} = await server.admin('d4').register(seed004)
      const error = await failure(
        server.as('d4', tokens.I1).reportService('I1', 'S2', {state: 'succeeded', outputs: {token: 't', extra: 'x'}}),
      )
      expect(error.status).toBe(400)
      expect(error.message).toContain('service S2 does not provide extra; it provides: token')
      expect((await server.admin('d4').state()).instances.find((i) => i.id === 'I1')?.outputs).toEqual({})
    })

    it('a failure fails the deployment, with the reason', async () => {
      const {tokens} = await server.admin('d4').register(seed004)
      await server
        .as('d4', tokens.I1)
        .reportService('I1', 'S2', {state: 'failed', exitCode: 3, message: 'apt-get failed'})
      const status = await server.admin('d4').status()
      expect(status.state).toBe('failed')
      expect(status.reason).toBe('1 service failed: I1/S2 (exit code 3)')
      expect(status.instances[0].services[1]).toEqual({
        name: 'S2',
        status: 'failed',
        exitCode: 3,
        message: 'apt-get failed',
      })
    })

    it('past the startup deadline, every service not started is timed out and the deployment failed', async () => {
      const {tokens} = await server.admin('t').register({startupTimeoutSec: 1, instances: seed004.instances})
      await server.as('t', tokens.I2).reportService('I2', 'S2', {state: 'running'})
      expect((await server.admin('t').status()).state).toBe('pending')
      await new Promise((resolve) => setTimeout(resolve, 1100))
      const status = await server.admin('t').status()
      expect(status.state).toBe('failed')
      expect(status.deadline).toBe(new Date(Date.parse(status.registeredAt) + 1000).toISOString())
      expect(status.reason).toBe(
        `the startup deadline ${status.deadline} passed with 3 services not started: I1/S1, I1/S2, I2/S1`,
      )
      const [i1, i2] = status.instances
      expect(i1.services[0]).toEqual({
        name: 'S1',
        status: 'timed out',
        message: `not started by the startup deadline ${status.deadline}; it was waiting for output token of I2/S2`,
      })
      expect(i1.services[1]).toEqual({
        name: 'S2',
        status: 'timed out',
        message: `not started by the startup deadline ${status.deadline}; it was ready but never reported`,
      })
      expect(i2.services[1].status).toBe('running')
    })

    it('serves the graph, the role map and the hosts block', async () => {
      const {tokens} = await server.admin('d4').register(seed004)
      const graph = await server.admin('d4').graph()
      expect(graph.vertices).toEqual(['I1/S1', 'I1/S2', 'I2/S1', 'I2/S2'])
      expect(graph.edges.map((e) => `${e.from} -> ${e.to}`)).toEqual(['I1/S1 -> I2/S2', 'I2/S1 -> I1/S2'])
      expect(graph.edges[0].label?.source).toEqual({file: 'deploy.conf', line: 10})

      const wp = await server.admin('wp').register(seed000)
      await server.as('wp', wp.tokens['db.wp.test'], '127.0.0.9').putFacts('db.wp.test', {})
      const app = server.as('wp', wp.tokens['app.wp.test'])
      expect(await app.roleMap('app.wp.test')).toBe('appserver = app.wp.test\nservice.mysql = db.wp.test 127.0.0.9\n')
      expect(await app.hostsBlock('app.wp.test')).toBe(
        '# BEGIN nodeset wp\n127.0.0.9 db.wp.test db\n# END nodeset wp\n',
      )
      expect(tokens.I1).toBeTruthy()
    })
  })
})

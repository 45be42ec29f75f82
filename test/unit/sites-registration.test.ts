/**
 * A deployment with sites, past the file: what each site's config server is registered with, the
 * federation keys the workspace keeps, a provider per site, and the status of all sites as one.
 */
import {createPrivateKey, createPublicKey, sign, verify} from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {sitesStatusText} from '../../src/cli/views.js'
import {registrationFor, siteRegistration} from '../../src/configserver/registration.js'
import type {ReaderIO} from '../../src/nodeset/merge.js'
import {readNodeset} from '../../src/nodeset/read.js'
import {combineStatus, type SiteReport} from '../../src/operations/sites.js'
import {Workspace} from '../../src/operations/workspace.js'
import {planNodeset} from '../../src/plan/plan.js'
import {openProvider, SitesProvider} from '../../src/providers/index.js'
import {LocalProvider} from '../../src/providers/local.js'
import {HostKeyStore} from '../../src/ssh/hostkeys.js'

const main = '/conf/main.conf'
const FILE = `[general]
name = fed
base_domain = fed.test
[site:inside]
provider = local
subnet = 10.86.1.0/24
broker = amqp://nodeset-inside:nodeset-inside-pw@127.0.0.1:5672/nodeset-inside
[site:outside]
provider = local
subnet = 10.86.2.0/24
broker = amqp://nodeset-outside:nodeset-outside-pw@127.0.0.1:5672/nodeset-outside
[appserver]
site = inside
nodes = 2
[service:mysql]
site = inside
mysql.admin_password = {{input}}
[balancer]
site = outside
`
const io: ReaderIO = {readFile: (f) => (f === main ? FILE : undefined), env: {}}
const {nodeset, catalog} = readNodeset(main, io)
const {plan} = planNodeset(nodeset, catalog)
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'nodeset-sites-'))
afterAll(() => fs.rmSync(work, {recursive: true, force: true}))

const keys = (site: string) => ({site, signingKey: `key of ${site}`, peers: {}, sealKey: 'seal'})

describe('registering a deployment with sites', () => {
  const inputs = {'mysql.fed.test': {mysql: {admin_password: 'pw-1234'}}}
  const body = registrationFor(plan, {inputs, reissueTokens: ['app1.fed.test', 'balancer.fed.test']})

  it('gives every instance its site; each server is given the whole deployment', () => {
    expect(body.instances.map((i) => [i.id, i.site])).toEqual([
      ['app1.fed.test', 'inside'],
      ['app2.fed.test', 'inside'],
      ['mysql.fed.test', 'inside'],
      ['balancer.fed.test', 'outside'],
    ])
    expect(siteRegistration(body, keys('outside')).instances).toHaveLength(4)
  })

  it("sends a site's server its own keys, and the inputs and reissued tokens of its own instances only", () => {
    const outside = siteRegistration(body, keys('outside'))
    expect(outside.federation).toEqual(keys('outside'))
    expect(outside.inputs).toEqual({})
    expect(outside.reissueTokens).toEqual(['balancer.fed.test'])
    const inside = siteRegistration(body, keys('inside'))
    expect(inside.inputs).toEqual(inputs)
    expect(inside.reissueTokens).toEqual(['app1.fed.test'])
  })

  it('leaves the body of a file without sites as it was: no site, no federation', () => {
    const plain = registrationFor({...plan, sites: undefined, nodes: plan.nodes.map(({site: _, ...n}) => n)})
    expect(plain.instances.every((i) => !('site' in i))).toBe(true)
    expect('federation' in plain).toBe(false)
  })
})

describe("the workspace's federation keys", () => {
  const workspace = new Workspace(path.join(work, 'fed.conf'), 'fed')
  const file = path.join(workspace.dir, 'federation-keys.json')

  it('makes an Ed25519 pair per site and one seal key on first use, mode 0600, and keeps them', () => {
    const ring = workspace.federationKeys(['inside', 'outside'])
    expect((fs.statSync(file).mode & 0o777).toString(8)).toBe('600')
    expect(Buffer.from(ring.sealKey, 'base64')).toHaveLength(32)
    const {privateKey, publicKey} = ring.sites.inside
    expect(createPrivateKey(privateKey).asymmetricKeyType).toBe('ed25519')
    const signature = sign(null, Buffer.from('facts'), privateKey)
    expect(verify(null, Buffer.from('facts'), createPublicKey(publicKey), signature)).toBe(true)
    expect(verify(null, Buffer.from('facts'), ring.sites.outside.publicKey, signature)).toBe(false)
    expect(workspace.federationKeys(['inside', 'outside'])).toEqual(ring)
  })

  it('gives a site added later its own pair and keeps the others', () => {
    const before = workspace.federationKeys(['inside', 'outside'])
    const after = workspace.federationKeys(['inside', 'outside', 'dr'])
    expect(after.sites.inside).toEqual(before.sites.inside)
    expect(after.sealKey).toBe(before.sealKey)
    expect(after.sites.dr.publicKey).not.toBe(before.sites.inside.publicKey)
  })
})

describe('a provider per site', () => {
  const provider = openProvider(nodeset, plan, {
    deployment: 'fed',
    stateDir: path.join(work, '.nodeset', 'fed'),
    hostKeys: new HostKeyStore(path.join(work, 'known_hosts')),
    sshKey: () => ({privateKeyPath: '/nonexistent', publicKey: 'ssh-ed25519 AAAA op'}),
  })

  it("builds each site's local provider on its own bridge, subnet and record of nodes", () => {
    expect(provider).toBeInstanceOf(SitesProvider)
    const [inside, outside] = (['inside', 'outside'] as const).map((s) => (provider as SitesProvider).of(s))
    expect(inside).toBeInstanceOf(LocalProvider)
    const [a, b] = [inside as LocalProvider, outside as LocalProvider]
    expect(a.bridge).not.toBe(b.bridge)
    expect([a.hostAddress, b.hostAddress]).toEqual(['10.86.1.1', '10.86.2.1'])
    expect(a.stateRoot).not.toBe(b.stateRoot)
  })

  it("reaches each node through its own site's provider, and refuses a node of no site", () => {
    const record = {deployment: 'fed', role: 'balancer', index: 1, id: 'x', state: 'running' as const}
    const target = provider.sshTarget({...record, name: 'balancer.fed.test', address: '10.86.2.2'})
    expect(target).toMatchObject({host: '10.86.2.2', user: 'root', nodeName: 'balancer.fed.test'})
    // Every site's nodes authorize the deployment's one operator key.
    expect(target.privateKeyPath).toBe(path.join(work, '.nodeset', 'fed', 'id_ed25519'))
    expect(() => provider.sshTarget({...record, name: 'other.fed.test'})).toThrow(
      /node other\.fed\.test belongs to no site of this deployment/,
    )
  })
})

describe('the status of a deployment with sites', () => {
  const instance = (id: string, site: string | undefined, extra: object = {}) => ({
    id,
    role: 'appserver',
    services: [],
    ...(site ? {site} : {}),
    ...extra,
  })
  const report = (state: SiteReport['state'], instances: SiteReport['instances'], lagMs = 40): SiteReport => ({
    deployment: 'fed',
    state,
    registeredAt: '2026-12-01T12:00:00.000Z',
    instances,
    federation: {
      site: 'x',
      links: [{site: 'peer', state: 'up', lastHeartbeatAt: '2026-12-01T12:00:01.000Z', lagMs, applied: 7}],
      refused: {badSignature: 0, notOwner: 1, replayed: 0},
    },
  })
  const owner = (id: string) => (id.startsWith('balancer') ? 'outside' : 'inside')

  it("takes each instance from its owner's report, and each site's links and remote instances", () => {
    const combined = combineStatus(
      [
        {
          site: 'inside',
          configServer: 'http://10.86.1.1:8000',
          report: report('settled', [
            instance('app1.fed.test', 'inside', {firstContact: 't1'}),
            instance('balancer.fed.test', 'outside', {factsAgeMs: 120}),
          ]),
        },
        {
          site: 'outside',
          configServer: 'http://10.86.2.1:8000',
          report: report('pending', [instance('app1.fed.test', undefined), instance('balancer.fed.test', undefined)]),
        },
      ],
      owner,
    )
    expect(combined.state).toBe('pending')
    expect(combined.instances.map((i) => [i.id, i.site, i.firstContact])).toEqual([
      ['app1.fed.test', 'inside', 't1'],
      ['balancer.fed.test', 'outside', undefined],
    ])
    expect(combined.sites.map((s) => [s.site, s.state, s.links[0].state, s.remote])).toEqual([
      ['inside', 'settled', 'up', [{id: 'balancer.fed.test', site: 'outside', factsAgeMs: 120}]],
      ['outside', 'pending', 'up', [{id: 'app1.fed.test', site: 'inside', factsAgeMs: undefined}]],
    ])
    const text = sitesStatusText(combined)
    expect(text).toMatch(/^SITE +CONFIG SERVER +STATE +LINK +LAST HEARTBEAT +LAG +REFUSED\n/)
    expect(text).toMatch(/inside +http:\/\/10\.86\.1\.1:8000 +settled +peer up +2026-12-01T12:00:01\.000Z +40 ms +1/)
    expect(text).toMatch(/inside +balancer\.fed\.test +outside +120 ms/)
  })

  it('is settled only when every site is, and failed when any site is', () => {
    const sites = (a: SiteReport['state'], b: SiteReport['state']) => [
      {site: 'inside', configServer: 'u', report: report(a, [])},
      {site: 'outside', configServer: 'v', report: {...report(b, []), reason: 'a step failed'}},
    ]
    expect(combineStatus(sites('settled', 'settled'), owner).state).toBe('settled')
    expect(combineStatus(sites('settled', 'pending'), owner).state).toBe('pending')
    expect(combineStatus(sites('pending', 'failed'), owner)).toMatchObject({
      state: 'failed',
      reason: 'site outside: a step failed',
    })
  })
})

/**
 * Sites in the nodeset file: reading `[site:NAME]` and `site =`, the checks made before anything is
 * created (each refusal at its file:line), the plan's sites, and a file without sites left as it was.
 */
import fs from 'node:fs'
import path from 'node:path'
import {describe, expect, it} from 'vitest'
import {DiagnosticsError, formatDiagnostic, type Diagnostic} from '../../src/core/diagnostics.js'
import type {ReaderIO} from '../../src/nodeset/merge.js'
import {readNodeset} from '../../src/nodeset/read.js'
import {planNodeset} from '../../src/plan/plan.js'
import {brokerShown, sitePart, sitesText, withSites} from '../../src/plan/sites.js'
import {planJson} from '../../src/plan/render.js'
import {checkProviderSettings, providerWarnings} from '../../src/providers/index.js'

const main = '/conf/main.conf'
const SITES = `[general]
name = fed
base_domain = fed.test

[site:inside]
provider = local
subnet = 10.86.1.0/24
broker = amqp://nodeset-inside:s3cret-in@127.0.0.1:5672/nodeset-inside

[site:outside]
provider = local
subnet = 10.86.2.0/24
broker = amqps://nodeset-outside:s3cret-out@broker.fed.test:5671/nodeset-outside

[appserver]
site = inside
nodes = 2

[service:mysql]
site = inside

[balancer]
site = outside
`

function io(files: Record<string, string>, env: Record<string, string> = {}): ReaderIO {
  return {readFile: (f) => files[f], env: {HOME: '/home/u', ...env}}
}

function read(text: string, files: Record<string, string> = {}) {
  const {nodeset, catalog} = readNodeset(main, io({[main]: text, ...files}))
  return {nodeset, ...planNodeset(nodeset, catalog)}
}

function refusal(text: string, files: Record<string, string> = {}): string[] {
  let found: Diagnostic[]
  try {
    const {nodeset, plan} = read(text, files)
    found = checkProviderSettings(nodeset, plan)
  } catch (error) {
    if (!(error instanceof DiagnosticsError)) throw error
    found = error.diagnostics
  }
  if (found.length === 0) throw new Error('expected the file to be refused')
  return found.map((d) => formatDiagnostic(d))
}

const lineOf = (text: string, needle: string) => text.split('\n').findIndex((l) => l.startsWith(needle)) + 1

describe('sites in the nodeset file', () => {
  it('gives every node its site and the plan its sites, each with its provider, config server and broker', () => {
    const {nodeset, plan} = read(SITES)
    expect(plan.nodes.map((n) => [n.name, n.site])).toEqual([
      ['app1.fed.test', 'inside'],
      ['app2.fed.test', 'inside'],
      ['mysql.fed.test', 'inside'],
      ['balancer.fed.test', 'outside'],
    ])
    expect(
      plan.sites!.map((s) => [
        s.name,
        s.source.line,
        s.provider.kind,
        s.provider.settings.subnet.value,
        s.configServer,
      ]),
    ).toEqual([
      ['inside', 5, 'local', '10.86.1.0/24', 'embedded'],
      ['outside', 10, 'local', '10.86.2.0/24', 'embedded'],
    ])
    expect(plan.sites![1].broker).toBe('amqps://nodeset-outside:s3cret-out@broker.fed.test:5671/nodeset-outside')
    // The broker's password is a secret of the file, so no output can print it.
    expect(nodeset.secrets).toEqual(expect.arrayContaining(['s3cret-in', 's3cret-out']))
    expect(checkProviderSettings(nodeset, plan)).toEqual([])
  })

  it('shows the sites in plan and plan --json, the broker without its password', () => {
    const {nodeset, ...result} = read(SITES)
    const text = sitesText(result.plan)
    expect(text).toMatch(/^sites \(2\):\nSITE +PROVIDER +CONFIG SERVER +BROKER +NODES\n/)
    expect(text).toMatch(/inside +local 10\.86\.1\.0\/24 +embedded +amqp:\/\/nodeset-inside:\*+@127\.0\.0\.1:5672/)
    expect(text).toMatch(/outside .* balancer\.fed\.test$/)
    const json = withSites(planJson(nodeset, result), result.plan) as {
      nodes: Array<{name: string; site: string}>
      sites: Array<{name: string; broker: string; nodes: string[]}>
    }
    expect(json.nodes.map((n) => n.site)).toEqual(['inside', 'inside', 'inside', 'outside'])
    expect(json.sites.map((s) => [s.name, s.nodes.length])).toEqual([
      ['inside', 3],
      ['outside', 1],
    ])
    expect(JSON.stringify(json)).not.toMatch(/s3cret/)
    expect(brokerShown('amqp://u:p%40ss@h/v')).toBe('amqp://u:********@h/v')
  })

  it("cuts out one site's part: its nodes, their steps and the references they make", () => {
    const {plan} = read(SITES)
    const outside = sitePart(plan, 'outside')
    expect(outside.nodes.map((n) => n.name)).toEqual(['balancer.fed.test'])
    expect(outside.steps.map((s) => s.node)).toEqual(['balancer.fed.test'])
    // A reference across sites is an edge like any other: the balancer needs the appservers' addresses.
    expect(new Set(outside.references.map((r) => r.to.node))).toEqual(new Set(['app1.fed.test', 'app2.fed.test']))
  })

  it('leaves a file without sites as it was: no site on nodes, no sites in the plan or its JSON', () => {
    const text = fs.readFileSync(path.resolve('examples/local.conf'), 'utf8')
    const {nodeset, ...result} = read(text)
    expect(nodeset.sites).toBeUndefined()
    expect(result.plan.sites).toBeUndefined()
    expect(result.plan.nodes.every((n) => !('site' in n))).toBe(true)
    expect(withSites(planJson(nodeset, result), result.plan)).toEqual(planJson(nodeset, result))
    expect(sitesText(result.plan)).toBe('')
  })

  it('refuses a site without nodes, at its section', () => {
    const text = SITES.replace('[balancer]\nsite = outside\n', '')
    expect(refusal(text)).toEqual([
      `/conf/main.conf:${lineOf(text, '[site:outside]')}: [site:outside] has no nodes\n  hint: add site = outside to the roles that run there, or remove [site:outside]`,
    ])
  })

  it('refuses a role naming a site the file lacks, at its site line', () => {
    const text = SITES.replace('site = outside', 'site = outsde')
    expect(refusal(text)).toEqual([
      `/conf/main.conf:${lineOf(text, 'site = outsde')}: site = outsde, but there is no [site:outsde]\n  hint: did you mean site = outside?`,
      `/conf/main.conf:10: [site:outside] has no nodes\n  hint: add site = outside to the roles that run there, or remove [site:outside]`,
    ])
  })

  it('refuses a role without site = when there are two sites; with one site, it runs there', () => {
    const text = SITES.replace('[service:mysql]\nsite = inside\n', '[service:mysql]\n')
    expect(refusal(text)).toEqual([
      `/conf/main.conf:${lineOf(text, '[service:mysql]')}: [service:mysql] does not say which site its nodes run in\n  hint: add site = inside or site = outside`,
    ])
    const one = SITES.replace(/\[site:outside\][^[]*/, '').replace(/site = \w+\n/g, '')
    expect(read(one).plan.nodes.map((n) => n.site)).toEqual(['inside', 'inside', 'inside', 'inside'])
  })

  it('refuses two sites on overlapping subnets, at the second one, before anything is made', () => {
    const text = SITES.replace('subnet = 10.86.2.0/24', 'subnet = 10.86.0.0/16')
    expect(refusal(text)).toEqual([
      `/conf/main.conf:${lineOf(text, 'subnet = 10.86.0.0/16')}: the subnets of [site:inside] (10.86.1.0/24) and [site:outside] (10.86.0.0/16) overlap\n  hint: give each site a network of its own, e.g. subnet = 10.78.1.0/24`,
    ])
    // Two local sites without a subnet would both take the default network.
    const defaults = SITES.replace(/subnet = .*\n/g, '')
    expect(refusal(defaults)[0]).toMatch(
      /^\/conf\/main\.conf:9: the subnets of \[site:inside\] \(10\.77\.0\.0\/24\) and \[site:outside\] \(10\.77\.0\.0\/24\) overlap/,
    )
  })

  it('refuses a site without a broker, and a broker that is not an amqp(s) URL', () => {
    const text = SITES.replace(/broker = amqps.*\n/, '')
    expect(refusal(text)).toEqual([
      "/conf/main.conf:10: [site:outside] has no broker\n  hint: add broker = amqp://USER:PASSWORD@HOST:5672/VHOST: the RabbitMQ through which this site's config server shares its nodes' facts with the other sites",
    ])
    const bad = SITES.replace('amqp://nodeset-inside', 'http://nodeset-inside')
    expect(refusal(bad)).toEqual([
      `/conf/main.conf:8: broker must be an amqp:// or amqps:// URL\n  hint: e.g. broker = amqps://nodeset-inside:PASSWORD@broker.example.com:5671/nodeset-inside`,
    ])
    // A standalone server has its own --broker: the file need not say it.
    const standalone = SITES.replace(/broker = amqps.*\n/, 'config_server = https://config.outside.fed.test:8443\n')
    expect(read(standalone).plan.sites![1]).toMatchObject({configServer: 'https://config.outside.fed.test:8443'})
  })

  it('refuses site = in a file without sites, a site name with a dot, and a key no site takes', () => {
    const local = fs
      .readFileSync(path.resolve('examples/local.conf'), 'utf8')
      .replace('[service:mysql]', '[service:mysql]\nsite = inside')
    expect(refusal(local)).toEqual([
      `/conf/main.conf:${lineOf(local, 'site = inside')}: site = inside, but there is no [site:inside]\n  hint: add a [site:inside] section (its provider, config_server and broker), or remove site =`,
    ])
    const dotted = SITES.replaceAll('outside', 'out.side').replace('boroker', '')
    expect(refusal(dotted)[0]).toMatch(
      /^\/conf\/main\.conf:10: \[site:out\.side\]: "out\.side" is not a valid site name/,
    )
    const unknown = SITES.replace('subnet = 10.86.2.0/24', 'subnet = 10.86.2.0/24\nnodes = 3')
    expect(refusal(unknown)[0]).toMatch(/^\/conf\/main\.conf:13: unknown key "nodes" in \[site:outside\]/)
  })

  it("checks each site's provider settings as [provider]'s, at their lines", () => {
    const text = SITES.replace('subnet = 10.86.2.0/24', 'subnet = 10.86.2.7/24\nhosts = a b')
    const found = refusal(text)
    expect(found).toHaveLength(2)
    expect(found[0]).toMatch(
      /^\/conf\/main\.conf:13: hosts is a key of the static provider: the local provider does not read it\n {2}hint: remove it; the local provider reads subnet, bridge/,
    )
    expect(found[1]).toBe(
      '/conf/main.conf:12: subnet 10.86.2.7/24 has host bits set: did you mean 10.86.2.0/24?\n' +
        '  hint: write subnet = 10.77.0.0/24, a network no other interface of this machine uses',
    )
  })

  it("looks provider = NAME up as [provider:NAME] in ~/.nodeset.conf, and takes [provider] as every site's defaults", () => {
    const text = SITES.replace('[site:inside]\nprovider = local', '[site:inside]\nprovider = lab').replace(
      '[site:outside]\nprovider = local\n',
      '[site:outside]\n',
    )
    const withDefaults = text.replace('[general]', '[provider]\nprovider = local\n\n[general]')
    const {plan} = read(withDefaults, {'/home/u/.nodeset.conf': '[provider:lab]\nprovider = local\nbridge = nsb-lab\n'})
    expect(plan.sites!.map((s) => [s.provider.kind, s.provider.settings.bridge?.value])).toEqual([
      ['local', 'nsb-lab'],
      ['local', undefined],
    ])
    expect(refusal(text)[0]).toMatch(
      /^\/conf\/main\.conf:6: provider "lab" is looked up in \/home\/u\/\.nodeset\.conf, which does not exist/,
    )
  })

  it('warns of an EC2 site whose config server is embedded, naming the site', () => {
    const text = SITES.replace(
      'provider = local\nsubnet = 10.86.2.0/24',
      'provider = ec2\nregion = eu-west-1\nimage = id ami-0123456789abcdef0\nsubnet = subnet-0123abcd',
    )
    const {nodeset} = read(text)
    expect(providerWarnings(nodeset).map((d) => formatDiagnostic(d))).toEqual([
      expect.stringMatching(
        /^\/conf\/main\.conf:11: the EC2 nodes of \[site:outside\] cannot reach a config server embedded in the command on your machine/,
      ),
    ])
  })
})

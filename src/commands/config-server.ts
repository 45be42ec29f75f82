import fs from 'node:fs'
import {Command} from '@oclif/core/command'
import * as Flags from '@oclif/core/flags'
import {adminTokenFrom} from '../configserver/auth.js'
import {startConfigServer} from '../configserver/server.js'
import {parseListen} from '../core/address.js'

export default class ConfigServer extends Command {
  static summary = 'Run a standalone config server: nodes phone home to it and get their configuration.'
  static description = `Serves the config server's HTTP API (docs/config-server.md) until SIGTERM or SIGINT, logging JSON lines on stdout. State lives in --state (SQLite, WAL) or, for several replicas behind a load balancer, in one PostgreSQL database (--store postgresql://…, with --admin-token-file); it survives restarts. With --site and --broker it is one site's server of deployments spanning sites: it publishes its own nodes' facts, service states and outputs (outputs sealed) to the broker and applies the other sites' (docs/federation.md). The admin token is read from --admin-token-file, or from DIR/admin-token; when the file does not exist a new token is written there (mode 0600). Behind a TLS-terminating proxy, pass --trust-proxy (or --trusted-proxies) so the address a node phones home from is taken from X-Forwarded-For: the right-most address your proxies did not add, and only a literal IP.`
  static examples = [
    '<%= config.bin %> config-server --listen 0.0.0.0:8470 --state /var/lib/nodeset',
    '<%= config.bin %> config-server --listen 0.0.0.0:8443 --state /var/lib/nodeset --tls-cert cert.pem --tls-key key.pem',
    '<%= config.bin %> config-server --listen 0.0.0.0:8470 --store postgresql://nodeset@db.internal/nodeset --admin-token-file /etc/nodeset/admin-token',
    '<%= config.bin %> config-server --listen 10.1.0.1:8470 --state /var/lib/nodeset --site inside --broker amqp://nodeset-inside:PASSWORD@127.0.0.1:5672/nodeset-inside',
    '<%= config.bin %> config-server --listen 0.0.0.0:8470 --state /var/lib/nodeset --site outside --broker amqps://nodeset-outside:PASSWORD@mq.example.com:5671/nodeset-outside --broker-ca /etc/nodeset/broker-ca.pem',
  ]
  static flags = {
    listen: Flags.string({description: 'Address and port to listen on (HOST:PORT).', default: '127.0.0.1:8470'}),
    state: Flags.string({description: 'Directory of the server state (created, mode 0700).'}),
    store: Flags.string({
      description:
        'Where the state is: sqlite:DIR (the same as --state DIR) or a postgresql://USER@HOST:PORT/DB URL that replicas share (needs --admin-token-file).',
      exactlyOne: ['state', 'store'],
    }),
    'tls-cert': Flags.string({description: 'PEM certificate (chain) to serve HTTPS with.', dependsOn: ['tls-key']}),
    'tls-key': Flags.string({description: 'PEM private key of --tls-cert.', dependsOn: ['tls-cert']}),
    'trust-proxy': Flags.boolean({
      description: 'Behind one proxy of your own: take the right-most X-Forwarded-For address as the client.',
      default: false,
    }),
    'trusted-proxies': Flags.string({
      description:
        'Behind several proxies: their count (2) or their addresses and ranges (10.0.0.5,10.1.0.0/16); the client is the right-most address not among them.',
      exclusive: ['trust-proxy'],
    }),
    'admin-token-file': Flags.string({
      description: 'File holding the admin token (created with a new token when missing).',
    }),
    site: Flags.string({
      description:
        "The site this server serves in deployments that span sites (docs/federation.md); its nodes phone home here, the other sites' state comes from --broker.",
      dependsOn: ['broker'],
    }),
    broker: Flags.string({
      description:
        "The site's RabbitMQ, amqp(s)://USER:PASSWORD@HOST:PORT/VHOST, through which the sites' servers share their instances (SQLite state only).",
      dependsOn: ['site'],
    }),
    'broker-ca': Flags.string({
      description: "PEM file of the CA that signed an amqps:// broker's certificate.",
      dependsOn: ['broker'],
    }),
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(ConfigServer)
    let listen: {host: string; port: number}
    let adminToken: string | undefined
    let ca: string | undefined
    try {
      listen = parseListen(flags.listen)
      if (flags['broker-ca']) ca = fs.readFileSync(flags['broker-ca'], 'utf8')
      if (flags['admin-token-file']) adminToken = await adminTokenFrom(undefined, flags['admin-token-file'])
    } catch (error) {
      this.error((error as Error).message, {exit: 2})
    }
    const server = await startConfigServer({
      listen,
      ...(flags.state ? {stateDir: flags.state} : {}),
      ...(flags.store ? {store: flags.store} : {}),
      ...(adminToken === undefined ? {} : {adminToken}),
      ...(flags['tls-cert'] && flags['tls-key'] ? {tls: {cert: flags['tls-cert'], key: flags['tls-key']}} : {}),
      trustProxy: flags['trusted-proxies'] ?? flags['trust-proxy'],
      ...(flags.site && flags.broker ? {site: flags.site, broker: {url: flags.broker, ...(ca ? {ca} : {})}} : {}),
      logger: true,
    }).catch((error: Error) => this.error(error.message, {exit: 1}))
    const tokenFile = flags['admin-token-file'] ?? server.adminTokenFile
    process.stderr.write(`nodeset config server at ${server.url}; admin token in ${tokenFile} (mode 0600)\n`)
    const signal = await new Promise<NodeJS.Signals>((resolve) => {
      process.once('SIGTERM', () => resolve('SIGTERM'))
      process.once('SIGINT', () => resolve('SIGINT'))
    })
    process.stderr.write(`${signal}: closing the config server\n`)
    await server.close()
  }
}

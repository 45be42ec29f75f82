/**
 * The operator's state for one deployment, in `.nodeset/<deployment>/` beside the nodeset file:
 * the embedded config server's SQLite state and admin token, pinned host keys, the SSH key the
 * local provider authorizes, and step logs. Everything secret is mode 0600 in a 0700 directory.
 */
import {execFileSync} from 'node:child_process'
import {generateKeyPairSync, randomBytes} from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'

/** Secrets, never printed: each site's key pair (PEM) and the deployment's seal key (base64 of 32 bytes). */
export interface FederationKeyring {
  sealKey: string
  sites: Record<string, {privateKey: string; publicKey: string}>
}

export class Workspace {
  readonly dir: string

  constructor(
    nodesetFile: string,
    readonly deployment: string,
  ) {
    this.dir = path.join(path.dirname(path.resolve(nodesetFile)), '.nodeset', deployment)
  }

  ensure(): this {
    fs.mkdirSync(this.dir, {recursive: true, mode: 0o700})
    const top = path.dirname(this.dir)
    fs.chmodSync(top, 0o700)
    // It holds a private key and tokens: never to be committed by accident.
    const ignore = path.join(top, '.gitignore')
    if (!fs.existsSync(ignore)) fs.writeFileSync(ignore, '*\n', {mode: 0o600})
    return this
  }

  /** Whether any command has kept state for this deployment here. */
  exists(): boolean {
    return fs.existsSync(this.dir)
  }

  get configServerDir(): string {
    return path.join(this.dir, 'configserver')
  }

  /** A site's own state (its config server's, its provider's): `.nodeset/<deployment>/<site>/`. */
  siteDir(site: string): string {
    return path.join(this.dir, site)
  }

  /** Where the embedded config server keeps its state: a site's own folder, or the deployment's without sites. */
  configServerDirOf(site?: string): string {
    return site ? path.join(this.siteDir(site), 'configserver') : this.configServerDir
  }

  /**
   * The federation keys of a deployment with sites: an Ed25519 key pair per site and one seal key,
   * made on first use and kept (mode 0600) in `federation-keys.json`; a site added later gets its pair.
   */
  federationKeys(sites: string[]): FederationKeyring {
    this.ensure()
    const file = path.join(this.dir, 'federation-keys.json')
    let ring: FederationKeyring | undefined
    try {
      ring = JSON.parse(fs.readFileSync(file, 'utf8')) as FederationKeyring
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
    }
    const next: FederationKeyring = {sealKey: ring?.sealKey ?? randomBytes(32).toString('base64'), sites: {}}
    let changed = !ring
    for (const site of sites) {
      const known = ring?.sites[site]
      if (known) next.sites[site] = known
      else {
        const pair = generateKeyPairSync('ed25519')
        next.sites[site] = {
          privateKey: pair.privateKey.export({type: 'pkcs8', format: 'pem'}).toString(),
          publicKey: pair.publicKey.export({type: 'spki', format: 'pem'}).toString(),
        }
        changed = true
      }
    }
    // Keys of sites the file no longer has are kept: a site put back keeps its identity.
    for (const [site, pair] of Object.entries(ring?.sites ?? {})) next.sites[site] ??= pair
    if (changed) {
      fs.writeFileSync(`${file}.tmp`, JSON.stringify(next, null, 2) + '\n', {mode: 0o600})
      fs.renameSync(`${file}.tmp`, file)
    }
    return next
  }

  get knownHostsFile(): string {
    return path.join(this.dir, 'known_hosts')
  }

  get settingsFile(): string {
    return path.join(this.dir, 'settings.json')
  }

  /** Where setup-node keeps a node's step logs. */
  logDir(node: string): string {
    return path.join(this.dir, 'logs', node)
  }

  logFile(node: string, step: string): string {
    return path.join(this.logDir(node), `${step.replace(/[^A-Za-z0-9._-]/g, '_')}.log`)
  }

  /** Small persistent settings (the embedded server's port), so nodes find it again run after run. */
  readSettings(): Record<string, unknown> {
    try {
      return JSON.parse(fs.readFileSync(this.settingsFile, 'utf8')) as Record<string, unknown>
    } catch {
      return {}
    }
  }

  writeSettings(settings: Record<string, unknown>): void {
    this.ensure()
    fs.writeFileSync(this.settingsFile, JSON.stringify(settings, null, 2) + '\n', {mode: 0o600})
  }

  /** The operator's key pair for nodes nodeset creates: generated once, ed25519, no passphrase. */
  sshKey(): {privateKeyPath: string; publicKey: string} {
    this.ensure()
    const privateKeyPath = path.join(this.dir, 'id_ed25519')
    if (!fs.existsSync(privateKeyPath)) {
      execFileSync(
        'ssh-keygen',
        ['-q', '-t', 'ed25519', '-N', '', '-C', `nodeset-${this.deployment}`, '-f', privateKeyPath],
        {stdio: 'ignore'},
      )
    }
    return {privateKeyPath, publicKey: fs.readFileSync(`${privateKeyPath}.pub`, 'utf8').trim()}
  }
}

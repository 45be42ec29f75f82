/**
 * The operator's state for one deployment, in `.nodeset/<deployment>/` beside the nodeset file:
 * the embedded config server's SQLite state and admin token, pinned host keys, the SSH key the
 * local provider authorizes, and step logs. Everything secret is mode 0600 in a 0700 directory.
 */
import {execFileSync} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'

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

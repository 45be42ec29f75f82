/**
 * A local node's files on the host: its /etc overlay (`/etc/netns/<ns>/`, which `ip netns exec`
 * mounts over /etc: hostname, hosts, resolv.conf, ssh/, nodeset/), its private directories
 * (`<node dir>/fs/{srv,var-lib,var-log,root}`), and the host's mount points shared by every local node.
 * What the overlay holds is data (`overlayFiles`); writing it is `writeNodeFiles`.
 */
import {chmod, chown, copyFile, mkdir, readdir, readFile, rm, rmdir, stat, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {generateHostKey} from './local-commands.js'
import type {LocalNodeState} from './local-state.js'
import {run, withLock} from './local-system.js'

export const NETNS_ETC = '/etc/netns'
/** Directories that must exist on the host so a node can have its own copy mounted over them. */
const HOST_MOUNTPOINTS = ['/etc/nodeset', '/srv/nodeset', '/var/lib/nodeset']
/** Lock and record of the host-side directories the provider made (shared by every deployment). */
const RUNTIME_DIR = '/run/nodeset-local'
const HOST_RECORD = join(RUNTIME_DIR, 'created.json')
const HOST_LOCK = join(RUNTIME_DIR, 'host.lock')

/** The node's /etc overlay on the host. */
export function etcDir(namespace: string): string {
  return join(NETNS_ETC, namespace)
}

/** One file of the overlay, its path relative to the overlay. */
export interface OverlayFile {
  path: string
  content: string
  mode: number
  /** Written only when the node has none yet (the agent keeps /etc/hosts up to date). */
  keep?: boolean
}

/** The node's /etc files the provider writes at every boot. */
export function overlayFiles(s: LocalNodeState, authorizedKeys: string[]): OverlayFile[] {
  const short = s.name.split('.')[0]
  const names = short === s.name ? s.name : `${s.name} ${short}`
  return [
    {path: 'hostname', content: `${s.name}\n`, mode: 0o644},
    {
      path: 'hosts',
      content: `127.0.0.1 localhost\n${s.address} ${names}\n::1 localhost ip6-localhost ip6-loopback\n`,
      mode: 0o644,
      keep: true,
    },
    // Nodes have no route to the host's DNS server: make lookups of unknown names fail at once
    // (nothing listens on the node's own port 53) instead of timing out; names come from /etc/hosts.
    {
      path: 'resolv.conf',
      content:
        '# local node: no DNS server; names come from /etc/hosts\nnameserver 127.0.0.1\noptions timeout:1 attempts:1\n',
      mode: 0o644,
    },
    // The node is not a cloud machine: its agent must not install boot hooks on this host's systemd or cron.
    {
      path: 'nodeset/no-boot-hook',
      content: 'local node: the local provider runs the agent at each start\n',
      mode: 0o644,
    },
    {path: 'ssh/authorized_keys/root', content: authorizedKeys.join('\n') + '\n', mode: 0o644},
    {path: 'ssh/sshd_config', content: sshdConfig(s), mode: 0o644},
  ]
}

export function sshdConfig(s: Pick<LocalNodeState, 'name' | 'deployment' | 'address'>): string {
  return [
    `# sshd of the nodeset local node ${s.name} (deployment ${s.deployment}); this file is private to the node.`,
    `ListenAddress ${s.address}:22`,
    'HostKey /etc/ssh/ssh_host_ed25519_key',
    'HostKey /etc/ssh/ssh_host_ecdsa_key',
    'PidFile none',
    'PermitRootLogin prohibit-password',
    'PubkeyAuthentication yes',
    'AuthorizedKeysFile /etc/ssh/authorized_keys/%u',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'UsePAM no',
    'PrintMotd no',
    'AcceptEnv LANG LC_*',
    'Subsystem sftp internal-sftp',
    '',
  ].join('\n')
}

/**
 * The node's files before it boots (after `claimOverlay`): private directories, the overlay, host keys
 * made once, and its user data (on a first boot) in its /var/lib/nodeset.
 */
export async function writeNodeFiles(
  s: LocalNodeState,
  nodeDir: string,
  authorizedKeys: string[],
  userData: string | undefined,
): Promise<void> {
  const etc = etcDir(s.namespace)
  const ssh = join(etc, 'ssh')
  await mkdir(join(ssh, 'authorized_keys'), {recursive: true, mode: 0o755})
  await Promise.all(
    ['fs/srv', 'fs/var-lib', 'fs/root'].map((d) => mkdir(join(nodeDir, d), {recursive: true, mode: 0o755})),
  )
  // Root's home is the node's own, as on any host: not the operator's (its keys, its shell's start-up files).
  await Promise.all(['fs/var-lib', 'fs/root'].map((d) => chmod(join(nodeDir, d), 0o700)))
  await copyDirectoryTree('/var/log', join(nodeDir, 'fs/var-log'), 2)
  for (const file of overlayFiles(s, authorizedKeys)) {
    if (file.keep && (await exists(join(etc, file.path)))) continue
    await writeFile(join(etc, file.path), file.content, {mode: file.mode})
  }
  if (!(await exists(join(ssh, 'moduli'))) && (await exists('/etc/ssh/moduli')))
    await copyFile('/etc/ssh/moduli', join(ssh, 'moduli'))
  await Promise.all(
    (['ed25519', 'ecdsa'] as const).map(async (type) => {
      const key = join(ssh, `ssh_host_${type}_key`)
      if (!(await exists(key))) await run(generateHostKey(type, s.name, key))
    }),
  )
  if (userData !== undefined) await writeFile(join(nodeDir, 'fs/var-lib/user-data.sh'), userData, {mode: 0o700})
}

/** The node's SSH host public keys (`type base64`), read from its /etc overlay. */
export function readHostKeys(namespace: string): Promise<string[]> {
  return readHostKeysIn(join(etcDir(namespace), 'ssh'))
}

/** The SSH host public keys (`type base64`) of an /etc/ssh directory. */
export async function readHostKeysIn(dir: string): Promise<string[]> {
  const files = (await readdir(dir)).filter((f) => /^ssh_host_.*_key\.pub$/.test(f)).sort()
  const keys = await Promise.all(
    files.map(async (f) => (await readFile(join(dir, f), 'utf8')).trim().split(/\s+/).slice(0, 2).join(' ')),
  )
  return keys.filter(Boolean)
}

/** The agent a boot runs again, as the node sees it: the copy it stored of itself, else the original user data. */
export async function storedAgent(nodeDir: string): Promise<string | undefined> {
  for (const name of ['agent.sh', 'user-data.sh']) {
    if (await exists(join(nodeDir, 'fs/var-lib', name))) return `/var/lib/nodeset/${name}`
  }
  return undefined
}

export async function removeOverlay(namespace: string): Promise<void> {
  await rm(etcDir(namespace), {recursive: true, force: true})
}

export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path)
    return true
  } catch {
    return false
  }
}

/** Copy a directory's tree of directories (no files) with their modes and owners, `depth` levels deep. */
async function copyDirectoryTree(from: string, to: string, depth: number): Promise<void> {
  const info = await stat(from).catch(() => undefined)
  await mkdir(to, {recursive: true})
  if (!info) return
  await chmod(to, info.mode & 0o7777)
  await chown(to, info.uid, info.gid)
  if (depth === 0) return
  const entries = await readdir(from, {withFileTypes: true}).catch(() => [])
  await Promise.all(
    entries
      .filter((e) => e.isDirectory())
      .map((e) => copyDirectoryTree(join(from, e.name), join(to, e.name), depth - 1)),
  )
}

// ---- host directories shared by every local node ----

interface HostRecord {
  /** Directories the provider made on the host, in the order made; removed (when empty) in reverse. */
  created: string[]
}

async function readHostRecord(): Promise<HostRecord> {
  return JSON.parse(await readFile(HOST_RECORD, 'utf8').catch(() => '{"created": []}')) as HostRecord
}

/**
 * Make the mount points nodes need (and the state root), recording those made, then run `claim`
 * under the same lock so a concurrent release never removes them in between.
 */
export async function ensureHostDirs(stateRoot: string, claim: () => Promise<unknown>): Promise<void> {
  await withLock(HOST_LOCK, async () => {
    const record = await readHostRecord()
    for (const dir of [NETNS_ETC, ...HOST_MOUNTPOINTS, stateRoot]) {
      const first = await mkdir(dir, {recursive: true, mode: 0o755})
      if (first === undefined) continue
      // Every level from the first one made down to `dir` is ours.
      const made: string[] = []
      for (let d = dir; d.length >= first.length; d = d.slice(0, d.lastIndexOf('/')) || '/') {
        made.unshift(d)
        if (d === first) break
      }
      record.created.push(...made.filter((d) => !record.created.includes(d)))
    }
    await writeFile(HOST_RECORD, JSON.stringify(record) + '\n', {mode: 0o600})
    await claim()
  })
}

/**
 * Make the host directories, and the node's overlay with its `nodeset/` directory, under the host lock:
 * from then on the host directories stay until the node is destroyed.
 */
export async function claimOverlay(stateRoot: string, namespace: string): Promise<void> {
  await ensureHostDirs(stateRoot, () => mkdir(join(etcDir(namespace), 'nodeset'), {recursive: true, mode: 0o755}))
}

/** Once no local node is left on this host (no /etc/netns/<ns>/nodeset), remove the directories we made. */
export async function releaseHostDirs(): Promise<void> {
  await withLock(HOST_LOCK, async () => {
    const overlays = await readdir(NETNS_ETC).catch(() => [] as string[])
    for (const ns of overlays) if (await exists(join(NETNS_ETC, ns, 'nodeset'))) return
    const record = await readHostRecord()
    const kept: string[] = []
    for (const dir of [...record.created].reverse()) {
      try {
        await rmdir(dir)
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') kept.unshift(dir)
      }
    }
    if (kept.length > 0) await writeFile(HOST_RECORD, JSON.stringify({created: kept}) + '\n', {mode: 0o600})
    else await rm(HOST_RECORD, {force: true})
  })
  await rmdir(RUNTIME_DIR).catch(() => undefined)
}

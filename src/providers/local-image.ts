/**
 * The Debian image that systemd-mode local nodes boot (`[provider] boot = systemd`), as data: the
 * pinned package list, the files nodeset puts in it, the mirror and suite taken from this machine's
 * apt sources, and the cache directory named by the hash of all that. Building it is
 * local-image-build.ts.
 */
import {createHash} from 'node:crypto'
import {join} from 'node:path'

/** Where built images are kept, one directory per recipe hash: `<hash>/root` is the tree. */
export const IMAGE_CACHE = '/var/cache/nodeset/images'

/** What debootstrap installs: a system that boots with systemd, its sshd, and what the agent needs. */
export const BOOTSTRAP_PACKAGES = [
  'systemd',
  'systemd-sysv',
  'dbus',
  'openssh-server',
  'curl',
  'iproute2',
  'ca-certificates',
]

/**
 * Installed with apt inside the image once it exists: cloud-init (many Python dependencies, and
 * maintainer scripts that want /proc), and what nodeset's services expect on a node without
 * installing it over a network the nodes do not have: nginx (balancer), MariaDB (mysql), Node.js
 * (appserver, the demo app).
 */
export const IMAGE_PACKAGES = ['cloud-init', 'nginx-light', 'mariadb-server', 'nodejs']

/** Units the packages enable that a node must not run: nodeset's services start their own daemons. */
export const DISABLED_UNITS = ['nginx.service', 'mariadb.service', 'mariadb.socket']
/** Timers and jobs with nothing to do on a short-lived node without a network beyond the host. */
export const MASKED_UNITS = [
  'apt-daily.timer',
  'apt-daily-upgrade.timer',
  'e2scrub_all.timer',
  'e2scrub_reap.service',
  'fstrim.timer',
  'dpkg-db-backup.timer',
]

/**
 * cloud-init as a local node needs it: the NoCloud seed is the only source (no probing of cloud
 * metadata services), the host has configured the network, root logs in with the seed's keys,
 * the hostname is the node's full name (as in fast mode), and /etc/hosts keeps the agent's block.
 */
export const CLOUD_CONFIG = `# nodeset local boot image: a NoCloud seed (meta-data, user-data) bind-mounted by the host.
datasource_list: [ NoCloud, None ]
network: {config: disabled}
disable_root: false
users: []
ssh_pwauth: false
ssh_genkeytypes: [ed25519, ecdsa]
prefer_fqdn_over_hostname: true
manage_etc_hosts: localhost
locale: C.UTF-8
`

/** Files nodeset writes into the image after the packages, relative to its root. */
export const IMAGE_FILES: Array<{path: string; content: string; mode: number}> = [
  {path: 'etc/cloud/cloud.cfg.d/90_nodeset.cfg', content: CLOUD_CONFIG, mode: 0o644},
  {path: 'etc/hosts', content: '127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n', mode: 0o644},
  {path: 'etc/hostname', content: 'localhost\n', mode: 0o644},
  // As in fast mode: no DNS server, so a lookup of an unknown name fails at once; names come from /etc/hosts.
  {
    path: 'etc/resolv.conf',
    content:
      '# local node: no DNS server; names come from /etc/hosts\nnameserver 127.0.0.1\noptions timeout:1 attempts:1\n',
    mode: 0o644,
  },
  // Empty: each node's systemd writes its own machine id at its first boot (into its own layer).
  {path: 'etc/machine-id', content: '', mode: 0o444},
]

/** Left by the build, made per node at its first boot: host keys (cloud-init), machine id, apt's lists. */
export const IMAGE_REMOVED = [
  'etc/ssh/ssh_host_*',
  'var/lib/dbus/machine-id',
  'usr/sbin/policy-rc.d',
  'var/lib/apt/lists/*',
  'var/cache/apt/*.bin',
]

export interface AptSource {
  mirror: string
  suite: string
}

/**
 * The Debian mirror and suite this machine's apt sources name (sources.list one-line entries and
 * deb822 .sources files, in the order given): the first `deb` entry of a plain suite (not
 * -updates, -security or -backports) of a /debian archive.
 */
export function aptSource(files: Array<{path: string; text: string}>): AptSource {
  for (const {path, text} of files) {
    const entries = path.endsWith('.sources') ? deb822Entries(text) : oneLineEntries(text)
    for (const e of entries) {
      const suite = e.suites.find((s) => /^[a-z]+$/.test(s))
      if (e.types.includes('deb') && suite && /^https?:\/\/\S+\/debian\/?$/.test(e.uri))
        return {mirror: e.uri.replace(/\/$/, ''), suite}
    }
  }
  throw new Error(
    'no Debian mirror in /etc/apt/sources.list or /etc/apt/sources.list.d/*: ' +
      'the local provider builds its boot image from the mirror apt uses (a "deb http://…/debian SUITE main" entry)',
  )
}

interface SourceEntry {
  types: string[]
  uri: string
  suites: string[]
}

function oneLineEntries(text: string): SourceEntry[] {
  return text
    .split('\n')
    .map((line) => line.replace(/#.*/, '').trim())
    .map((line) => /^(deb|deb-src)\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)/.exec(line))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({types: [m[1]], uri: m[2], suites: [m[3]]}))
}

function deb822Entries(text: string): SourceEntry[] {
  return text.split(/\n\s*\n/).flatMap((stanza) => {
    const field = (name: string): string[] => {
      const m = new RegExp(`^${name}:[ \\t]*(.*)$`, 'mi').exec(stanza.replace(/^#.*$/gm, ''))
      return m ? m[1].trim().split(/\s+/).filter(Boolean) : []
    }
    if (/^Enabled:\s*no\s*$/im.test(stanza)) return []
    return field('URIs').map((uri) => ({types: field('Types'), uri, suites: field('Suites')}))
  })
}

/** What an image is made of; its hash names the cache directory, so a change to any of it rebuilds. */
export interface ImageRecipe {
  suite: string
  mirror: string
  bootstrap: string[]
  packages: string[]
  hash: string
}

/** Bumped when the build steps change in a way the lists above do not show. */
const RECIPE_VERSION = 1

export function imageRecipe(source: AptSource): ImageRecipe {
  const pinned = {
    version: RECIPE_VERSION,
    suite: source.suite,
    bootstrap: BOOTSTRAP_PACKAGES,
    packages: IMAGE_PACKAGES,
    disabled: DISABLED_UNITS,
    masked: MASKED_UNITS,
    files: IMAGE_FILES,
  }
  const hash = createHash('sha256').update(JSON.stringify(pinned)).digest('hex').slice(0, 16)
  return {suite: source.suite, mirror: source.mirror, bootstrap: BOOTSTRAP_PACKAGES, packages: IMAGE_PACKAGES, hash}
}

/** `<cache>/<hash>`: `root/` (the tree nodes boot), `image.json` (the recipe and installed versions). */
export function imageDir(recipe: Pick<ImageRecipe, 'hash'>, cache = IMAGE_CACHE): string {
  return join(cache, recipe.hash)
}

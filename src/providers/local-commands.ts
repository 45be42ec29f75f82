/**
 * The commands the local provider runs on this machine, as data: `ip` for bridges, namespaces and
 * links, `ip netns exec … unshare` to start a node, `nsenter` to run something inside it, and
 * `ssh-keygen` for its host keys. Nothing here runs anything; local-system.ts executes them.
 */
import {hostAddress, macForAddress, networkOf, parseSubnet, subnetsOverlap, type Subnet} from './local-network.js'

/** One command, run without a shell. */
export interface Command {
  argv: string[]
}

/** What the provider needs to know of a node to plug it in and start it (a subset of its state file). */
export interface NodeNet {
  name: string
  namespace: string
  address: string
  /** The deployment's subnet, `10.77.0.0/24`. */
  subnet: string
  hostAddress: string
  bridge: string
  hostVeth: string
}

const cmd = (...argv: string[]): Command => ({argv})

// ---- the host side ----

/** Every IPv4 address of every interface, as JSON (`ip -j`). */
export const listAddresses = (): Command => cmd('ip', '-j', '-4', 'addr', 'show')
/** Succeeds when the interface exists. */
export const showLink = (dev: string): Command => cmd('ip', 'link', 'show', 'dev', dev)
export const deleteLink = (dev: string): Command => cmd('ip', 'link', 'del', dev)
export const addBridge = (bridge: string): Command => cmd('ip', 'link', 'add', bridge, 'type', 'bridge')
/** The ports of a bridge, one per line (none: empty output). */
export const bridgePorts = (bridge: string): Command => cmd('ip', '-o', 'link', 'show', 'master', bridge)

/** An interface and its IPv4 addresses, as `ip -j -4 addr show` prints them. */
export interface IpLink {
  ifname: string
  addr_info?: Array<{family: string; local: string; prefixlen: number}>
}

/**
 * Why the deployment's bridge cannot take this subnet: another interface has an address in it, or
 * the bridge itself has another address in it (its subnet changed). Undefined when it can.
 */
export function subnetConflict(links: IpLink[], bridge: string, subnet: Subnet): string | undefined {
  const hostCidr = `${hostAddress(subnet)}/${subnet.prefix}`
  for (const link of links) {
    for (const a of link.addr_info ?? []) {
      const net = a.family === 'inet' ? networkOf(a.local, a.prefixlen) : undefined
      if (!net || !subnetsOverlap(net, subnet)) continue
      if (link.ifname === bridge && `${a.local}/${a.prefixlen}` === hostCidr) continue
      return link.ifname === bridge
        ? `bridge ${bridge} already has ${a.local}/${a.prefixlen}, not ${hostCidr}: destroy the deployment's nodes before changing its subnet`
        : `subnet ${subnet.cidr} overlaps ${a.local}/${a.prefixlen} on ${link.ifname}: give this deployment another subnet (local provider option subnet)`
    }
  }
  return undefined
}

/**
 * Make an existing bridge the deployment's: a fixed MAC (otherwise a bridge takes its ports' lowest
 * one, which changes as nodes come and go), the host address unless `links` shows it already, up.
 */
export function configureBridge(bridge: string, subnet: Subnet, links: IpLink[]): Command[] {
  const host = hostAddress(subnet)
  const hostCidr = `${host}/${subnet.prefix}`
  const has = links.find((l) => l.ifname === bridge)?.addr_info?.some((a) => `${a.local}/${a.prefixlen}` === hostCidr)
  return [
    cmd('ip', 'link', 'set', 'dev', bridge, 'address', macForAddress(host)),
    ...(has ? [] : [cmd('ip', 'addr', 'replace', hostCidr, 'dev', bridge)]),
    cmd('ip', 'link', 'set', bridge, 'up'),
  ]
}

// ---- a node's network ----

export const addNamespace = (namespace: string): Command => cmd('ip', 'netns', 'add', namespace)
export const deleteNamespace = (namespace: string): Command => cmd('ip', 'netns', 'del', namespace)
/** The pids of every process in the namespace, separated by white space. */
export const namespacePids = (namespace: string): Command => cmd('ip', 'netns', 'pids', namespace)
/** The node's link: `hostVeth` on the host, paired with `eth0` inside the namespace. */
export const addVeth = (n: NodeNet): Command =>
  cmd('ip', 'link', 'add', n.hostVeth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', n.namespace)

/** Plug the node's link into the bridge, and give it its address (and MAC, made of it) and default route. */
export function configureNodeNetwork(n: NodeNet): Command[] {
  const inside = (...argv: string[]): Command => cmd('ip', '-n', n.namespace, ...argv)
  return [
    cmd('ip', 'link', 'set', n.hostVeth, 'master', n.bridge, 'up'),
    inside('link', 'set', 'lo', 'up'),
    inside('link', 'set', 'dev', 'eth0', 'address', macForAddress(n.address)),
    inside('addr', 'replace', `${n.address}/${parseSubnet(n.subnet).prefix}`, 'dev', 'eth0'),
    inside('link', 'set', 'eth0', 'up'),
    inside('route', 'replace', 'default', 'via', n.hostAddress, 'dev', 'eth0'),
  ]
}

// ---- starting a node and running things in it ----

/**
 * Runs inside the node's new UTS and mount namespaces (entered with `ip netns exec`, which has
 * already mounted the /etc/netns/<ns>/ overlays): hostname, private directories, then sshd.
 * $1 is the node's directory, $2 its name. /var/lib/nodeset goes last: the default state root (and
 * with it $1) is under it.
 */
export const LAUNCH_SCRIPT = `set -e
[ "$(cat /etc/hostname)" = "$2" ] && [ -e /etc/nodeset/no-boot-hook ] || { echo "the /etc/netns overlay of $2 is not mounted" >&2; exit 1; }
printf '%s\\n' "$2" >/proc/sys/kernel/hostname
mount --bind "$1/fs/srv" /srv/nodeset
mount --bind "$1/fs/var-log" /var/log
mount --bind "$1/fs/root" /root
mount --bind "$1/fs/var-lib" /var/lib/nodeset
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mkdir -m 0755 /run/sshd
exec /usr/sbin/sshd -D -f /etc/ssh/sshd_config -E /var/log/sshd.log
`

/** Start the node: its own UTS and mount namespaces inside its network namespace, then sshd (LAUNCH_SCRIPT). */
export function launchNode(n: NodeNet, nodeDir: string): Command {
  return cmd(
    'ip',
    'netns',
    'exec',
    n.namespace,
    'unshare',
    '--uts',
    '--mount',
    '--propagation',
    'private',
    '--',
    '/bin/sh',
    '-c',
    LAUNCH_SCRIPT,
    'nodeset-boot',
    nodeDir,
    n.name,
  )
}

/** The argv prefix that runs a command in every namespace of the node whose sshd has this pid. */
export const enterNode = (sshdPid: number): string[] => ['nsenter', '-t', String(sshdPid), '-n', '-m', '-u', '--']

/** Run a script inside the node (its user data, or the agent it stored), as a boot runs it. */
export const runInNode = (sshdPid: number, script: string): Command => ({
  argv: [...enterNode(sshdPid), '/bin/sh', script],
})

/** Generate one of the node's SSH host keys (on the host, into its /etc overlay). */
export const generateHostKey = (type: 'ed25519' | 'ecdsa', node: string, file: string): Command =>
  cmd('ssh-keygen', '-q', '-t', type, '-N', '', '-C', `root@${node}`, '-f', file)

import {execFileSync} from 'node:child_process'
import {describe, expect, it} from 'vitest'
import {
  addBridge,
  addNamespace,
  addVeth,
  bridgePorts,
  configureBridge,
  configureNodeNetwork,
  deleteLink,
  deleteNamespace,
  enterNode,
  generateHostKey,
  LAUNCH_SCRIPT,
  launchNode,
  listAddresses,
  namespacePids,
  runInNode,
  showLink,
  subnetConflict,
  type IpLink,
  type NodeNet,
} from '../../src/providers/local-commands.js'
import {parseSubnet} from '../../src/providers/local-network.js'

const subnet = parseSubnet('10.77.0.0/24')
const node: NodeNet = {
  name: 'app1.foobar.com',
  namespace: 'nodeset-foobar-app1-foobar-com-1a2b3c',
  address: '10.77.0.2',
  subnet: '10.77.0.0/24',
  hostAddress: '10.77.0.1',
  bridge: 'nsb-foobar-1a2b',
  hostVeth: 'nsv0123456789',
}
const link = (ifname: string, ...cidrs: string[]): IpLink => ({
  ifname,
  addr_info: cidrs.map((c) => ({family: 'inet', local: c.split('/')[0], prefixlen: Number(c.split('/')[1])})),
})

describe('the host side, as commands', () => {
  it('reads addresses as JSON, and adds, shows, lists and deletes links', () => {
    expect(listAddresses().argv).toEqual(['ip', '-j', '-4', 'addr', 'show'])
    expect(showLink('nsb-x').argv).toEqual(['ip', 'link', 'show', 'dev', 'nsb-x'])
    expect(addBridge('nsb-x').argv).toEqual(['ip', 'link', 'add', 'nsb-x', 'type', 'bridge'])
    expect(bridgePorts('nsb-x').argv).toEqual(['ip', '-o', 'link', 'show', 'master', 'nsb-x'])
    expect(deleteLink('nsv1').argv).toEqual(['ip', 'link', 'del', 'nsv1'])
  })

  it('gives a new bridge a fixed MAC, the host address and brings it up', () => {
    expect(configureBridge('nsb-x', subnet, [link('lo', '127.0.0.1/8')]).map((c) => c.argv)).toEqual([
      ['ip', 'link', 'set', 'dev', 'nsb-x', 'address', '02:4e:0a:4d:00:01'],
      ['ip', 'addr', 'replace', '10.77.0.1/24', 'dev', 'nsb-x'],
      ['ip', 'link', 'set', 'nsb-x', 'up'],
    ])
  })

  it('does not add the host address again to a bridge that has it', () => {
    expect(configureBridge('nsb-x', subnet, [link('nsb-x', '10.77.0.1/24')]).map((c) => c.argv)).toEqual([
      ['ip', 'link', 'set', 'dev', 'nsb-x', 'address', '02:4e:0a:4d:00:01'],
      ['ip', 'link', 'set', 'nsb-x', 'up'],
    ])
  })

  it('refuses a subnet another interface uses, or a bridge whose subnet changed; accepts its own bridge', () => {
    expect(subnetConflict([link('lo', '127.0.0.1/8'), link('nsb-x', '10.77.0.1/24')], 'nsb-x', subnet)).toBe(undefined)
    expect(subnetConflict([link('eth0', '10.77.0.200/16')], 'nsb-x', subnet)).toBe(
      'subnet 10.77.0.0/24 overlaps 10.77.0.200/16 on eth0: give this deployment another subnet (local provider option subnet)',
    )
    expect(subnetConflict([link('nsb-x', '10.77.0.1/25')], 'nsb-x', subnet)).toMatch(
      /^bridge nsb-x already has 10\.77\.0\.1\/25, not 10\.77\.0\.1\/24: destroy the deployment's nodes/,
    )
    expect(subnetConflict([link('eth0', '10.78.0.1/24')], 'nsb-x', subnet)).toBe(undefined)
  })
})

describe("a node's network, as commands", () => {
  it('makes and removes the namespace, and lists its processes', () => {
    expect(addNamespace(node.namespace).argv).toEqual(['ip', 'netns', 'add', node.namespace])
    expect(deleteNamespace(node.namespace).argv).toEqual(['ip', 'netns', 'del', node.namespace])
    expect(namespacePids(node.namespace).argv).toEqual(['ip', 'netns', 'pids', node.namespace])
  })

  it('pairs the host end with eth0 in the namespace', () => {
    expect(addVeth(node).argv).toEqual([
      'ip',
      'link',
      'add',
      'nsv0123456789',
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      node.namespace,
    ])
  })

  it('plugs the link into the bridge, then sets lo, the MAC made of the address, the address and the route', () => {
    const ns = node.namespace
    expect(configureNodeNetwork(node).map((c) => c.argv)).toEqual([
      ['ip', 'link', 'set', 'nsv0123456789', 'master', 'nsb-foobar-1a2b', 'up'],
      ['ip', '-n', ns, 'link', 'set', 'lo', 'up'],
      ['ip', '-n', ns, 'link', 'set', 'dev', 'eth0', 'address', '02:4e:0a:4d:00:02'],
      ['ip', '-n', ns, 'addr', 'replace', '10.77.0.2/24', 'dev', 'eth0'],
      ['ip', '-n', ns, 'link', 'set', 'eth0', 'up'],
      ['ip', '-n', ns, 'route', 'replace', 'default', 'via', '10.77.0.1', 'dev', 'eth0'],
    ])
  })
})

describe('starting a node and running things in it, as commands', () => {
  it('starts sshd in new UTS and mount namespaces inside the network namespace', () => {
    expect(launchNode(node, '/state/foobar/app1.foobar.com').argv).toEqual([
      'ip',
      'netns',
      'exec',
      node.namespace,
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
      '/state/foobar/app1.foobar.com',
      'app1.foobar.com',
    ])
  })

  it('the launch script checks the overlay, sets the hostname, mounts the private directories and execs sshd', () => {
    execFileSync('/bin/sh', ['-n', '-c', LAUNCH_SCRIPT])
    const lines = LAUNCH_SCRIPT.trim().split('\n')
    expect(lines[0]).toBe('set -e')
    expect(lines[1]).toContain('[ -e /etc/nodeset/no-boot-hook ]')
    expect(lines.slice(2, 9)).toEqual([
      `printf '%s\\n' "$2" >/proc/sys/kernel/hostname`,
      'mount --bind "$1/fs/srv" /srv/nodeset',
      'mount --bind "$1/fs/var-log" /var/log',
      'mount --bind "$1/fs/root" /root',
      'mount --bind "$1/fs/var-lib" /var/lib/nodeset',
      'mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run',
      'mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp',
    ])
    expect(lines.at(-1)).toBe('exec /usr/sbin/sshd -D -f /etc/ssh/sshd_config -E /var/log/sshd.log')
  })

  it('enters every namespace of the node through its sshd, for a command or a boot script', () => {
    expect(enterNode(4242)).toEqual(['nsenter', '-t', '4242', '-n', '-m', '-u', '--'])
    expect(runInNode(4242, '/var/lib/nodeset/agent.sh').argv).toEqual([
      'nsenter',
      '-t',
      '4242',
      '-n',
      '-m',
      '-u',
      '--',
      '/bin/sh',
      '/var/lib/nodeset/agent.sh',
    ])
  })

  it('generates host keys without a passphrase, named for the node', () => {
    expect(generateHostKey('ecdsa', 'app1.foobar.com', '/etc/netns/x/ssh/ssh_host_ecdsa_key').argv).toEqual([
      'ssh-keygen',
      '-q',
      '-t',
      'ecdsa',
      '-N',
      '',
      '-C',
      'root@app1.foobar.com',
      '-f',
      '/etc/netns/x/ssh/ssh_host_ecdsa_key',
    ])
  })
})

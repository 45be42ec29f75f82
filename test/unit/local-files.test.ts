import {describe, expect, it} from 'vitest'
import {overlayFiles, sshdConfig} from '../../src/providers/local-files.js'
import {parseSubnet} from '../../src/providers/local-network.js'
import {nodeState} from '../../src/providers/local-state.js'

const net = {deployment: 'foobar', subnet: parseSubnet('10.77.0.0/24'), bridge: 'nsb-foobar-1a2b'}
const request = {name: 'app1.foobar.com', role: 'appserver', index: 1}

describe("the node's /etc overlay, as data", () => {
  const s = nodeState(net, request, '10.77.0.2')

  it('names the node, lists it in hosts (kept once written), has no DNS server and no boot hook', () => {
    const files = Object.fromEntries(overlayFiles(s, ['ssh-ed25519 AAAA op@laptop']).map((f) => [f.path, f]))
    expect(Object.keys(files)).toEqual([
      'hostname',
      'hosts',
      'resolv.conf',
      'nodeset/no-boot-hook',
      'ssh/authorized_keys/root',
      'ssh/sshd_config',
    ])
    expect(files.hostname.content).toBe('app1.foobar.com\n')
    expect(files.hosts).toEqual({
      path: 'hosts',
      content: '127.0.0.1 localhost\n10.77.0.2 app1.foobar.com app1\n::1 localhost ip6-localhost ip6-loopback\n',
      mode: 0o644,
      keep: true,
    })
    expect(files['resolv.conf'].content).toContain('nameserver 127.0.0.1\noptions timeout:1 attempts:1\n')
    expect(files['ssh/authorized_keys/root'].content).toBe('ssh-ed25519 AAAA op@laptop\n')
    expect(
      Object.values(files)
        .filter((f) => f.keep)
        .map((f) => f.path),
    ).toEqual(['hosts'])
  })

  it('a node named without dots is listed once', () => {
    const hosts = overlayFiles({...s, name: 'db'}, ['ssh-ed25519 AAAA']).find((f) => f.path === 'hosts')!
    expect(hosts.content).toContain('\n10.77.0.2 db\n')
  })

  it("lets sshd listen on the node's address only, root by key only", () => {
    const config = sshdConfig(s).split('\n')
    expect(config).toContain('ListenAddress 10.77.0.2:22')
    expect(config).toContain('PermitRootLogin prohibit-password')
    expect(config).toContain('PasswordAuthentication no')
    expect(config).toContain('AuthorizedKeysFile /etc/ssh/authorized_keys/%u')
    expect(config).toContain('PidFile none')
  })
})

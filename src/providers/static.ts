/**
 * The `static` provider: servers you already have. Nothing is created or powered off; "create"
 * installs the node agent over SSH (instead of user data at boot) and starts it, with a boot hook so
 * it runs at every boot, and "destroy" removes everything it installed. Which servers belong to a
 * deployment is recorded in `static-nodes.json` in the deployment's state directory (its "tags").
 * See docs/ssh.md.
 */
import {mkdirSync, readFileSync, renameSync, writeFileSync} from 'node:fs'
import {join, posix} from 'node:path'
import pLimit from 'p-limit'
import {HostKeyStore, type HostKeyPolicy} from '../ssh/hostkeys.js'
import {connect, type ConnectOptions, type SshSession, type SshTarget} from '../ssh/ssh.js'
import {shellQuote} from '../ssh/shell.js'
import {removeHostsBlock} from '../plan/wiring.js'
import type {NodeRecord, NodeRequest, Provider} from './provider.js'

export interface StaticHost {
  name: string
  /** Address or resolvable name; defaults for the port and user come from ~/.ssh/config. */
  address: string
  port?: number
  role?: string
  index?: number
}

export interface StaticProviderOptions {
  hosts: StaticHost[]
  /** The deployment's state directory (`.nodeset/<deployment>/` beside the nodeset file). */
  stateDir: string
  /** How to reach a host; default its name and address, with user and key from ~/.ssh/config. */
  ssh?: (host: StaticHost) => SshTarget
  /** Pin an unknown host key on first use (the `--trust-on-first-use` flag); never the default. */
  trustOnFirstUse?: boolean
  /** Where the user's trusted host keys are; default ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts. */
  knownHostsPaths?: string[]
  /** Connection settings (retry deadline, agent, ~/.ssh/config path). */
  connectOptions?: Omit<ConnectOptions, 'hostKeys'>
  /** Install under this directory instead of / (a server shared with other uses, such as tests). */
  remoteRoot?: string
  /** Hosts handled at once. Default 8. */
  concurrency?: number
}

/** Where things go on a server, as data. */
export interface StaticLayout {
  root: string
  libDir: string
  agent: string
  pidFile: string
  output: string
  etcDir: string
  noBootHook: string
  hostsFile: string
  agentLog: string
  systemdUnit: string
  cronFile: string
}

export function staticLayout(root = '/'): StaticLayout {
  const at = (path: string): string => posix.join(root, path)
  return {
    root,
    libDir: at('/var/lib/nodeset'),
    agent: at('/var/lib/nodeset/agent.sh'),
    pidFile: at('/var/lib/nodeset/agent.pid'),
    output: at('/var/lib/nodeset/agent.out'),
    etcDir: at('/etc/nodeset'),
    noBootHook: at('/etc/nodeset/no-boot-hook'),
    hostsFile: at('/etc/hosts'),
    agentLog: at('/var/log/nodeset-agent.log'),
    systemdUnit: at('/etc/systemd/system/nodeset-agent.service'),
    cronFile: at('/etc/cron.d/nodeset-agent'),
  }
}

/** Stop the agent started from the pid file, if that process still is our agent (a pid can be reused). */
function stopAgentScript(l: StaticLayout): string {
  const q = shellQuote
  return `if [ -f ${q(l.pidFile)} ]; then
  pid=$(cat ${q(l.pidFile)})
  if [ -n "$pid" ] && tr '\\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- ${q(l.agent)}; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f ${q(l.pidFile)}
fi`
}

/** Whether the server boots with systemd (only where nodeset owns the whole server). */
const systemdTest = (l: StaticLayout): string =>
  `[ ${shellQuote(l.root)} = / ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1`

/**
 * Run after agent.sh is uploaded: stop a previous agent, install the boot hook (a systemd unit, or an
 * @reboot line in /etc/cron.d), tell the agent not to add its own, and start it detached.
 */
export function installScript(l: StaticLayout): string {
  const q = shellQuote
  const run = `/bin/sh ${q(l.agent)}`
  const env = l.root === '/' ? '' : `NODESET_AGENT_ROOT=${q(l.root)} `
  const unit = [
    '[Unit]',
    "Description=nodeset agent: phone home and fetch this node's configuration",
    'Wants=network-online.target',
    'After=network-online.target',
    '',
    '[Service]',
    'Type=simple',
    `ExecStart=${run}`,
    '',
    '[Install]',
    'WantedBy=multi-user.target',
  ]
  return `set -e
${stopAgentScript(l)}
mkdir -p ${q(l.etcDir)}
chmod 0755 ${q(l.etcDir)}
: >${q(l.noBootHook)}
if ${systemdTest(l)}; then
  printf '%s\\n' ${unit.map(q).join(' ')} >${q(l.systemdUnit)}
  systemctl daemon-reload
  systemctl enable nodeset-agent.service >/dev/null 2>&1
else
  mkdir -p ${q(posix.dirname(l.cronFile))}
  printf '%s\\n' ${q(`@reboot root ${env}${run} >/dev/null 2>&1`)} >${q(l.cronFile)}
fi
cd /
if command -v setsid >/dev/null 2>&1; then detach=setsid; else detach=; fi
${env}$detach nohup ${run} >${q(l.output)} 2>&1 </dev/null &
echo $! >${q(l.pidFile)}`
}

/** Remove what create installed, and the agent's own boot hooks should it have added any. */
export function uninstallScript(l: StaticLayout): string {
  const q = shellQuote
  return `${stopAgentScript(l)}
if [ -f ${q(l.systemdUnit)} ]; then
  if ${systemdTest(l)}; then systemctl disable nodeset-agent.service >/dev/null 2>&1 || true; fi
  rm -f ${q(l.systemdUnit)}
  if ${systemdTest(l)}; then systemctl daemon-reload || true; fi
fi
rm -f ${q(l.cronFile)}
if [ ${q(l.root)} = / ]; then
  if [ -f /etc/rc.local ] && grep -qF -- ${q(l.agent)} /etc/rc.local; then
    grep -vF -- ${q(l.agent)} /etc/rc.local >/etc/rc.local.nodeset-tmp && chmod 0755 /etc/rc.local.nodeset-tmp && mv -f /etc/rc.local.nodeset-tmp /etc/rc.local
  fi
  if command -v crontab >/dev/null 2>&1 && crontab -l 2>/dev/null | grep -qF -- ${q(l.agent)}; then
    crontab -l 2>/dev/null | grep -vF -- ${q(l.agent)} | crontab -
  fi
fi
rm -rf -- ${q(l.libDir)} ${q(l.etcDir)}
rm -f -- ${q(l.agentLog)}`
}

/**
 * `hosts = app1.example.com=203.0.113.10 db.example.com=[2001:db8::5]:2222 cache.example.com`:
 * name=address[:port] entries separated by spaces, commas or newlines; a name alone is its own address.
 */
export function parseStaticHosts(value: string): Array<{name: string; address: string; port?: number}> {
  const hosts: Array<{name: string; address: string; port?: number}> = []
  for (const entry of value.split(/[\s,]+/).filter(Boolean)) {
    const [name, target = name, ...extra] = entry.split('=')
    const fail = (why: string): never => {
      throw new Error(
        `hosts entry "${entry}" ${why}: write name=address or name=address:port, e.g. app1.example.com=203.0.113.10:2222`,
      )
    }
    if (extra.length > 0 || !name || !target) fail('is not name=address')
    if (!/^[A-Za-z0-9_][A-Za-z0-9._-]*$/.test(name)) fail(`has an invalid node name "${name}"`)
    const match =
      /^\[([0-9A-Fa-f:.]+)\](?::(\d+))?$/.exec(target) ??
      (target.split(':').length > 2 ? [target, target] : /^([A-Za-z0-9._-]+)(?::(\d+))?$/.exec(target))
    if (!match) return fail(`has an invalid address "${target}"`)
    const port = match[2] === undefined ? undefined : Number(match[2])
    if (port !== undefined && (port < 1 || port > 65535)) fail(`has port ${port}, outside 1-65535`)
    if (hosts.some((h) => h.name === name)) fail(`lists ${name} a second time`)
    hosts.push({name, address: match[1], ...(port ? {port} : {})})
  }
  if (hosts.length === 0)
    throw new Error('hosts is empty: list the servers as name=address, e.g. hosts = app1.example.com=203.0.113.10')
  return hosts
}

interface StateFile {
  nodes: NodeRecord[]
}

export class StaticProvider implements Provider {
  readonly name = 'static'
  readonly layout: StaticLayout
  private readonly hostKeys: HostKeyStore
  private readonly stateFile: string

  constructor(private readonly options: StaticProviderOptions) {
    this.layout = staticLayout(options.remoteRoot ?? '/')
    this.hostKeys = HostKeyStore.inStateDir(options.stateDir)
    this.stateFile = join(options.stateDir, 'static-nodes.json')
  }

  /** How every SSH connection to these servers verifies host keys (for setup and update too). */
  hostKeyPolicy(): HostKeyPolicy {
    return {
      mode: 'static',
      store: this.hostKeys,
      knownHostsPaths: this.options.knownHostsPaths,
      trustOnFirstUse: this.options.trustOnFirstUse === true,
    }
  }

  sshTarget(host: StaticHost): SshTarget {
    return this.options.ssh?.(host) ?? {nodeName: host.name, host: host.address, port: host.port}
  }

  /** The address the servers reach the operator at: where the first one sees our SSH connection come from. */
  async prepare(_deployment: string): Promise<{operatorAddress?: string}> {
    const first = this.options.hosts[0]
    if (!first) return {}
    return this.withSession(first, async (session) => {
      const {stdout} = await session.run('printf %s "$SSH_CLIENT"', {become: false, label: 'reading SSH_CLIENT'})
      const address = stdout.trim().split(/\s+/)[0]
      return address ? {operatorAddress: address} : {}
    })
  }

  async create(requests: NodeRequest[]): Promise<NodeRecord[]> {
    const byName = new Map(this.options.hosts.map((h) => [h.name, h]))
    const unlisted = requests.filter((r) => !byName.has(r.name)).map((r) => r.name)
    if (unlisted.length > 0) {
      throw new Error(
        `${unlisted.join(', ')} ${unlisted.length === 1 ? 'is' : 'are'} not in [provider] hosts: add ${unlisted.map((n) => `${n}=ADDRESS`).join(' ')} to it`,
      )
    }
    const created = await this.eachNode(requests, async (request) => {
      const host = byName.get(request.name)!
      return this.withSession(host, async (session) => {
        await session.upload(this.layout.agent, request.userData, 0o700)
        await session.run(installScript(this.layout), {label: 'installing the nodeset agent'})
        const record: NodeRecord = {
          deployment: request.deployment,
          name: request.name,
          role: request.role,
          index: request.index,
          id: request.name,
          address: host.address,
          state: 'running',
          sshUser: session.target.user,
          sshPort: session.target.port,
        }
        this.record((nodes) => [
          ...nodes.filter((n) => !(n.deployment === record.deployment && n.name === record.name)),
          record,
        ])
        return record
      })
    })
    return created
  }

  async list(deployment: string): Promise<NodeRecord[]> {
    return this.readState().nodes.filter((n) => n.deployment === deployment)
  }

  /** Stop and remove the agent, its boot hook, /etc/nodeset and the hosts block; never powers off. */
  async destroy(nodes: NodeRecord[]): Promise<void> {
    const byName = new Map(this.options.hosts.map((h) => [h.name, h]))
    await this.eachNode(nodes, async (node) => {
      const host = byName.get(node.name) ?? {name: node.name, address: node.address ?? node.name, port: node.sshPort}
      await this.withSession(host, async (session) => {
        await session.run(uninstallScript(this.layout), {label: 'removing the nodeset agent'})
        await this.removeHostsBlock(session, node.deployment)
      })
      this.record((recorded) => recorded.filter((n) => !(n.deployment === node.deployment && n.name === node.name)))
    })
  }

  private async removeHostsBlock(session: SshSession, deployment: string): Promise<void> {
    const hosts = this.layout.hostsFile
    const {code, stdout} = await session.exec(`cat -- ${shellQuote(hosts)}`)
    if (code !== 0) return
    const cleaned = removeHostsBlock(stdout, deployment)
    // In place, not renamed over: /etc/hosts is often a bind mount.
    if (cleaned !== stdout)
      await session.run(`cat > ${shellQuote(hosts)}`, {
        stdin: cleaned,
        label: `removing the ${deployment} block of ${hosts}`,
      })
  }

  private async withSession<T>(host: StaticHost, work: (session: SshSession) => Promise<T>): Promise<T> {
    const session = await connect(this.sshTarget(host), {
      ...this.options.connectOptions,
      hostKeys: this.hostKeyPolicy(),
    })
    try {
      return await work(session)
    } finally {
      session.close()
    }
  }

  /** Run for every node, a few at a time; all are tried, then every failure is reported together. */
  private async eachNode<I extends {name: string}, O>(items: I[], work: (item: I) => Promise<O>): Promise<O[]> {
    const limit = pLimit(this.options.concurrency ?? 8)
    const settled = await Promise.allSettled(items.map((item) => limit(() => work(item))))
    const failures = settled.flatMap((s, i) =>
      s.status === 'rejected' ? [`${items[i].name}: ${(s.reason as Error).message}`] : [],
    )
    if (failures.length > 0)
      throw new Error(`static provider: ${failures.length} of ${items.length} nodes failed\n${failures.join('\n')}`)
    return settled.map((s) => (s as PromiseFulfilledResult<O>).value)
  }

  private readState(): StateFile {
    try {
      return JSON.parse(readFileSync(this.stateFile, 'utf8')) as StateFile
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {nodes: []}
      throw new Error(
        `cannot read ${this.stateFile}: ${(error as Error).message}; fix or remove it (list-nodes shows what it held)`,
        {cause: error},
      )
    }
  }

  /** Read-modify-write of the record file; synchronous, so concurrent nodes cannot interleave. */
  private record(change: (nodes: NodeRecord[]) => NodeRecord[]): void {
    const nodes = change(this.readState().nodes)
    mkdirSync(this.options.stateDir, {recursive: true, mode: 0o700})
    const temporary = `${this.stateFile}.${process.pid}.tmp`
    writeFileSync(temporary, JSON.stringify({nodes}, null, 2) + '\n', {mode: 0o600})
    renameSync(temporary, this.stateFile)
  }
}

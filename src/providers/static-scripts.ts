/**
 * What the static provider does on a server, as data: where things go (`staticLayout`) and the
 * scripts that install the node agent with its boot hook, and remove all of it again.
 */
import {posix} from 'node:path'
import {shellQuote} from '../ssh/shell.js'

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

// Over 300 lines: every shell script a deploy runs on a node, kept as one set that is read and tested together.
/**
 * What `update`, `rollback` and `releases` run on nodes, as data: POSIX sh scripts built from
 * validated names and quoted values. They travel on the SSH channel's stdin (`sh -s`), never on a
 * command line, so the secrets some carry (database passwords, the app's environment) are not
 * visible in a process list.
 *
 * On an appserver, app APP lives in /srv/nodeset/apps/APP:
 *   releases/ID/          an unpacked release; ID/.nodeset/ holds run (the command), env, health (the
 *                         health-check path), sha256 and created
 *   current -> releases/ID   the active release, swapped atomically
 *   env                   the active release's environment (mode 0600), read by nodeset-app
 *   history               activated releases, oldest first: the last line is current, the one before it "previous"
 *   data/                 the app's own files (owned by the app's user), kept across releases
 */
import {posix} from 'node:path'
import {shellQuote} from '../core/quote.js'
import {APP_NAME_PATTERN, type HookStep} from './appini.js'
import {RELEASE_ID_PATTERN} from './release.js'

export const APPS_DIR = '/srv/nodeset/apps'
export const SUPERVISOR = '/var/lib/nodeset/bin/nodeset-app'
export const BALANCER_CONTROL = '/var/lib/nodeset/bin/nodeset-balancer'
export const APP_LOG_DIR = '/var/log/nodeset/apps'
export const MYSQL_APP_SECRETS = '/var/lib/nodeset/mysql/apps'
/** The user apps and their hooks run as. */
export const APP_USER = 'nobody'
/** The line of nodeset-app that says it runs apps the way these scripts expect. */
export const SUPERVISOR_PROTOCOL =
  '# nodeset-app protocol 1 (what `nodeset update` checks for before it stages a release)'

export const appDir = (app: string): string => posix.join(APPS_DIR, checkApp(app))
export const dataDir = (app: string): string => posix.join(appDir(app), 'data')

function checkApp(app: string): string {
  if (!APP_NAME_PATTERN.test(app)) throw new Error(`"${app}" is not a valid app name`)
  return app
}

function checkId(id: string): string {
  if (!RELEASE_ID_PATTERN.test(id)) throw new Error(`"${id}" is not a release id (like 20250102T030405Z-1a2b3c4d)`)
  return id
}

/** The app's environment file: KEY='value' lines, read by nodeset-app with `set -a; . env`. */
export function envFile(vars: Record<string, string>): string {
  return Object.entries(vars)
    .map(([key, value]) => {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) throw new Error(`environment variable name "${key}" is not valid`)
      // Always single-quoted, so nodeset-app can read a value back with sed.
      return `${key}=${shellQuote(value, {always: true})}\n`
    })
    .join('')
}

/** What every app gets from nodeset on a node, before its services' settings. */
export function baseEnv(opts: {app: string; node: string; release: string; port: number}): Record<string, string> {
  return {
    PORT: String(opts.port),
    NODESET_APP: opts.app,
    NODESET_NODE: opts.node,
    NODESET_RELEASE: opts.release,
    NODESET_DATA: dataDir(opts.app),
  }
}

export const incomingArchive = (app: string, id: string): string =>
  posix.join(appDir(app), 'incoming', `${checkId(id)}.tar.gz`)

export interface StageInput {
  app: string
  id: string
  sha256: string
  createdAt: Date
  command: string
  healthCheck: string
  env: Record<string, string>
}

/** Unpack an uploaded archive (its sha256 checked first) into releases/ID, not active. A re-run is a no-op. */
export function stageScript(s: StageInput): string {
  const A = appDir(s.app)
  const R = posix.join(A, 'releases', checkId(s.id))
  const archive = incomingArchive(s.app, s.id)
  if (!/^[0-9a-f]{64}$/.test(s.sha256)) throw new Error('sha256 must be 64 hex digits')
  return `set -eu
umask 022
if ! grep -qxF ${shellQuote(SUPERVISOR_PROTOCOL)} ${SUPERVISOR} 2>/dev/null; then
  echo "${SUPERVISOR} on this node cannot run apps yet, or is older than this nodeset: run nodeset setup-node, then update again" >&2
  exit 1
fi
A=${shellQuote(A)}
R=${shellQuote(R)}
ARCHIVE=${shellQuote(archive)}
mkdir -p "$A/releases" "$A/incoming"
[ -d "$A/data" ] || install -d -o ${APP_USER} -g "$(id -gn ${APP_USER})" -m 0750 "$A/data"
if [ ! -d "$R" ]; then
  if ! printf '%s  %s\\n' ${s.sha256} "$ARCHIVE" | sha256sum -c --status; then
    rm -f "$ARCHIVE"
    echo "the archive of release ${s.id} does not match its sha256 (${s.sha256}): it was damaged on the way; run the update again" >&2
    exit 1
  fi
  rm -rf "$R.partial"
  mkdir "$R.partial"
  tar -xzf "$ARCHIVE" -C "$R.partial" --no-same-owner --no-same-permissions
  rm -rf "$R.partial/.nodeset"
  mkdir -m 0700 "$R.partial/.nodeset"
  printf '%s\\n' ${shellQuote(s.command)} > "$R.partial/.nodeset/run"
  printf '%s\\n' ${shellQuote(s.healthCheck)} > "$R.partial/.nodeset/health"
  printf '%s\\n' ${s.sha256} > "$R.partial/.nodeset/sha256"
  printf '%s\\n' ${s.createdAt.toISOString()} > "$R.partial/.nodeset/created"
  mv "$R.partial" "$R"
fi
(umask 077 && printf '%s' ${shellQuote(envFile(s.env))} > "$R/.nodeset/env.new" && mv -f "$R/.nodeset/env.new" "$R/.nodeset/env")
rm -f "$ARCHIVE"
echo "staged ${s.id}"
`
}

/**
 * Make release ID current and restart the app on it. `forward` (an update) adds it to the history;
 * `back` (a rollback, or undoing a failed update) returns the history to its last activation of
 * ID, so "previous" stays the release that was active before it.
 */
export function switchScript(app: string, id: string, direction: 'forward' | 'back'): string {
  return `set -eu
A=${shellQuote(appDir(app))}
ID=${checkId(id)}
[ -d "$A/releases/$ID" ] || { echo "release $ID is not on this node" >&2; exit 1; }
install -m 0600 "$A/releases/$ID/.nodeset/env" "$A/env.new"
mv -f "$A/env.new" "$A/env"
ln -sfn "releases/$ID" "$A/current.new"
mv -fT "$A/current.new" "$A/current"
touch "$A/history"
${historyUpdate(direction)}
${SUPERVISOR} restart ${checkApp(app)} < /dev/null
`
}

/** The history change of an activation of $ID in $A (see switchScript). */
export function historyUpdate(direction: 'forward' | 'back'): string {
  if (direction === 'forward') return `[ "$(tail -n 1 "$A/history")" = "$ID" ] || echo "$ID" >> "$A/history"`
  return `awk -v id="$ID" '{ line[NR] = $0; if ($0 == id) last = NR } END { n = last ? last : NR; for (i = 1; i <= n; i++) print line[i]; if (!last) print id }' "$A/history" > "$A/history.new"
mv -f "$A/history.new" "$A/history"`
}

/** Undo the first activation of an app on a node (nothing was active before it): stop it, unset current. */
export function deactivateScript(app: string, id: string): string {
  return `set -eu
A=${shellQuote(appDir(app))}
${SUPERVISOR} stop ${checkApp(app)} < /dev/null
rm -f "$A/current" "$A/env"
if [ -f "$A/history" ]; then
  grep -vxF ${checkId(id)} "$A/history" > "$A/history.new" || true
  mv -f "$A/history.new" "$A/history"
fi
echo "${app} has no active release on this node"
`
}

/** Ask the app on this node for its health-check path until it answers 2xx, for at most `timeoutSec`. */
export function healthScript(opts: {app: string; port: number; path: string; timeoutSec: number}): string {
  const url = `http://127.0.0.1:${opts.port}${opts.path}`
  return `set -u
URL=${shellQuote(url)}
end=$(($(date +%s) + ${Math.max(1, Math.round(opts.timeoutSec))}))
while :; do
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$URL" < /dev/null) || true
  case "$code" in 2??) echo "healthy: $URL answered $code"; exit 0 ;; esac
  if [ "$(date +%s)" -ge "$end" ]; then
    case "$code" in 000 | '') what="gave no answer" ;; *) what="answered HTTP $code" ;; esac
    echo "health check: $URL $what for ${opts.timeoutSec} s; the end of ${APP_LOG_DIR}/${checkApp(opts.app)}.log:" >&2
    tail -n 15 ${APP_LOG_DIR}/${opts.app}.log >&2 2>/dev/null || true
    exit 1
  fi
  # A short pause: the app usually answers within a second of starting, and every wait here is the update's.
  sleep 0.1
done
`
}

/** The migration hook, each update_fetch line in turn: a command (as the app, in the new release) or a request to the app. */
export function hookScript(opts: {app: string; port: number; steps: HookStep[]; requestTimeoutSec: number}): string {
  const app = checkApp(opts.app)
  const lines = opts.steps.map((step) => {
    if (step.kind === 'command') {
      return `echo ${shellQuote(`update_fetch: ${step.command}`)}
${SUPERVISOR} run ${app} ${shellQuote(step.command)} < /dev/null`
    }
    const url = `http://127.0.0.1:${opts.port}${step.path}`
    return `echo ${shellQuote(`update_fetch: GET ${step.path}`)}
code=$(curl -s -o "$body" -w '%{http_code}' -H 'X-Nodeset-Update: 1' --max-time ${opts.requestTimeoutSec} ${shellQuote(url)} < /dev/null) || true
head -c 2000 "$body"
case "$code" in 2??) ;; *) echo ${shellQuote(`GET ${step.path}`)} "answered HTTP $code" >&2; head -c 2000 "$body" >&2; exit 1 ;; esac`
  })
  return `set -eu
body=$(mktemp)
trap 'rm -f "$body"' EXIT
${lines.join('\n')}
`
}

/** What `releases` and `rollback` read from a node: current, history and the releases on disk. */
export function listScript(app: string): string {
  return `set -u
A=${shellQuote(appDir(app))}
[ -d "$A" ] || exit 0
printf 'current %s\\n' "$(readlink "$A/current" 2>/dev/null | sed 's#^releases/##')"
if [ -f "$A/history" ]; then sed 's/^/history /' "$A/history"; fi
for r in "$A"/releases/*; do
  [ -d "$r" ] || continue
  id=\${r##*/}
  case "$id" in *.partial) continue ;; esac
  printf 'release %s %s %s %s\\n' "$id" "$(cat "$r/.nodeset/created" 2>/dev/null || echo -)" "$(cat "$r/.nodeset/health" 2>/dev/null || echo /)" "$(cat "$r/.nodeset/sha256" 2>/dev/null || echo -)"
done
if ${SUPERVISOR} status ${checkApp(app)} > /dev/null 2>&1; then echo 'running yes'; else echo 'running no'; fi
`
}

export interface NodeReleases {
  current?: string
  /** Activated releases, oldest first. */
  history: string[]
  releases: Array<{id: string; createdAt?: string; healthCheck: string; sha256?: string}>
  running: boolean
}

export function parseListing(text: string): NodeReleases {
  const listing: NodeReleases = {history: [], releases: [], running: false}
  for (const line of text.split('\n')) {
    const [kind, value = '', created, health, sha256] = line.trim().split(/\s+/)
    if (kind === 'current' && value) listing.current = value
    else if (kind === 'history' && value) listing.history.push(value)
    else if (kind === 'release' && RELEASE_ID_PATTERN.test(value))
      listing.releases.push({
        id: value,
        createdAt: created && created !== '-' ? created : undefined,
        healthCheck: health?.startsWith('/') ? health : '/',
        ...(sha256 && /^[0-9a-f]{64}$/.test(sha256) ? {sha256} : {}),
      })
    else if (kind === 'running') listing.running = value === 'yes'
  }
  listing.releases.sort((a, b) => a.id.localeCompare(b.id))
  return listing
}

/** The release active before the current one: the history line before current's last activation. */
export function previousRelease(listing: NodeReleases): string | undefined {
  if (!listing.current) return undefined
  const at = listing.history.lastIndexOf(listing.current)
  return at > 0 ? listing.history[at - 1] : undefined
}

/** Releases to delete: all but the newest `keep`, never the current one or the previous one. */
export function releasesToPrune(listing: NodeReleases, keep: number): string[] {
  const newestFirst = listing.releases
    .map((r) => r.id)
    .sort()
    .reverse()
  const kept = new Set([...newestFirst.slice(0, keep), listing.current, previousRelease(listing)])
  return newestFirst.filter((id) => !kept.has(id)).reverse()
}

export function pruneScript(app: string, ids: string[]): string {
  return `set -eu
A=${shellQuote(appDir(app))}
${ids.map((id) => `rm -rf "$A/releases/${checkId(id)}"`).join('\n')}
if [ -f "$A/history" ]; then
  while read -r id; do [ -d "$A/releases/$id" ] && echo "$id" || true; done < "$A/history" > "$A/history.new"
  mv -f "$A/history.new" "$A/history"
fi
`
}

export interface MysqlPrepareInput {
  app: string
  /** Used only when the node has no password for this app yet. */
  newPassword: string
  port: string
  adminUser: string
  adminPassword: string
}

/**
 * On the mysql node: a database and a user named after the app. The user's password is kept on the
 * node (mode 0600), so a re-run keeps it; the script prints it as `password=…` for the app's env.
 */
export function mysqlPrepareScript(m: MysqlPrepareInput): string {
  const app = checkApp(m.app)
  if (!/^[A-Za-z0-9]{16,}$/.test(m.newPassword))
    throw new Error('a generated password must be 16 or more letters and digits')
  if (!/^\d+$/.test(m.port)) throw new Error(`mysql port "${m.port}" is not a number`)
  return `set -eu
umask 077
mkdir -p ${MYSQL_APP_SECRETS}
F=${MYSQL_APP_SECRETS}/${app}.password
[ -s "$F" ] || printf '%s' ${m.newPassword} > "$F"
PW=$(cat "$F")
case "$PW" in '' | *[!A-Za-z0-9]*) echo "$F must hold only letters and digits" >&2; exit 1 ;; esac
CLIENT=$(command -v mariadb || command -v mysql) || { echo "there is no mariadb or mysql client on this node" >&2; exit 1; }
MYSQL_PWD=${shellQuote(m.adminPassword)} "$CLIENT" --protocol=tcp -h 127.0.0.1 -P ${m.port} -u ${shellQuote(m.adminUser)} --batch <<NODESET_SQL
CREATE DATABASE IF NOT EXISTS \\\`${app}\\\`;
CREATE USER IF NOT EXISTS '${app}'@'%' IDENTIFIED BY '$PW';
ALTER USER '${app}'@'%' IDENTIFIED BY '$PW';
GRANT ALL PRIVILEGES ON \\\`${app}\\\`.* TO '${app}'@'%';
NODESET_SQL
printf 'password=%s\\n' "$PW"
`
}

/** Take an appserver out of the balancer's rotation, or put it back. */
export function balancerCommand(action: 'drain' | 'restore', member: {ip: string; port: number}): string {
  if (!/^[0-9A-Fa-f:.]+$/.test(member.ip)) throw new Error(`"${member.ip}" is not an IP address`)
  return `${BALANCER_CONTROL} ${action} ${member.ip}:${member.port}`
}

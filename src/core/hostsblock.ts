/**
 * The deployment's managed block of /etc/hosts: the lines from `# BEGIN nodeset <deployment>` to
 * `# END nodeset <deployment>`. Every other line of the file is left exactly as it was. The same
 * merge exists twice, with one meaning: in TypeScript for a file nodeset holds (the operator's own
 * /etc/hosts, a static server's on destroy), and as a POSIX sh function for the nodes (the wiring
 * step and the agent run it).
 */
import {shellQuote} from './quote.js'

export const hostsMarkers = (deployment: string): {begin: string; end: string} => ({
  begin: `# BEGIN nodeset ${deployment}`,
  end: `# END nodeset ${deployment}`,
})

/**
 * Replace the deployment's block (its first BEGIN line to the first END line after it) with `block`,
 * or append `block` when there is no such block.
 */
export function mergeHostsBlock(existing: string, deployment: string, block: string): string {
  const {begin, end} = hostsMarkers(deployment)
  const lines = existing.split('\n')
  const start = lines.indexOf(begin)
  const stop = start >= 0 ? lines.indexOf(end, start) : -1
  if (start >= 0 && stop > start) {
    const before = lines.slice(0, start).map((line) => `${line}\n`)
    return before.join('') + block + lines.slice(stop + 1).join('\n')
  }
  const base = existing === '' || existing.endsWith('\n') ? existing : existing + '\n'
  return base + block
}

/** Remove the deployment's block, for destroy. */
export function removeHostsBlock(existing: string, deployment: string): string {
  return mergeHostsBlock(existing, deployment, '')
}

/** Whether a hosts file's text has the deployment's block. */
export function hasHostsBlock(existing: string, deployment: string): boolean {
  return existing.split('\n').includes(hostsMarkers(deployment).begin)
}

/**
 * A POSIX sh function, `merge_hosts HOSTS BLOCK TMP`, that does what `mergeHostsBlock` does to the
 * file HOSTS with the block in the file BLOCK, building the result in TMP. HOSTS is then rewritten in
 * place, never renamed over, because it may be a bind mount (containers, network namespaces); a
 * missing HOSTS is created 0644. It returns 2, and changes nothing, when BLOCK does not begin and end
 * with the deployment's markers, and 1 when a file cannot be read or written. Needs only sh and awk.
 */
export function hostsMergeScript(deployment: string): string {
  const {begin, end} = hostsMarkers(deployment)
  // Values reach awk through ENVIRON: `awk -v` would interpret backslashes in them.
  return `# merge_hosts HOSTS BLOCK TMP: the deployment's block of HOSTS replaced by BLOCK (or BLOCK appended).
merge_hosts() {
  hosts_begin=${shellQuote(begin, {always: true})}
  hosts_end=${shellQuote(end, {always: true})}
  [ "$(head -n 1 "$2")" = "$hosts_begin" ] && [ "$(tail -n 1 "$2")" = "$hosts_end" ] || return 2
  [ -e "$1" ] || { : >"$1" && chmod 0644 "$1"; } || return 1
  NODESET_B=$hosts_begin NODESET_E=$hosts_end NODESET_BLOCK=$2 awk '
    function put(line) { while ((getline line < blk) > 0) print line; close(blk) }
    BEGIN { b = ENVIRON["NODESET_B"]; e = ENVIRON["NODESET_E"]; blk = ENVIRON["NODESET_BLOCK"] }
    merged { print; next }
    !inside && $0 == b { inside = 1; held[++n] = $0; next }
    inside && $0 == e { inside = 0; merged = 1; put(); next }
    inside { held[++n] = $0; next }
    { print }
    END { if (inside) for (i = 1; i <= n; i++) print held[i]; if (!merged) put() }' "$1" >"$3" || return 1
  cat "$3" >"$1" || return 1
  rm -f "$3"
}
`
}

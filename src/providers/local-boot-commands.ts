/**
 * systemd mode of the local provider, as data: the `systemd-nspawn` command that boots a node from
 * the shared image over its own writable layer, in its network namespace, with its NoCloud seed;
 * the seed's meta-data; and the wrapper every nspawn run goes through. Nothing here runs anything.
 *
 * The wrapper gives each nspawn run a private mount namespace and a cgroup of its own. This host
 * runs no systemd: nspawn cannot ask for a scope unit, so it makes `payload`/`supervisor` cgroups
 * under its own (one per machine, not the root shared by all), and it wants a tmpfs at
 * /run/systemd/nspawn. The overlay of a node's layer on the image is mounted there too, so the
 * host's mount table never holds it: when the machine stops, its mounts go with it.
 */
import {createHash} from 'node:crypto'
import {join} from 'node:path'
import type {Command} from './local-commands.js'

/** nspawn's runtime directory: a tmpfs is mounted over it in each run's private mount namespace. */
export const NSPAWN_RUNTIME = '/run/systemd/nspawn'
/** Each machine's cgroup: `<hierarchy>/nodeset-local/<machine>` in every hierarchy nspawn uses. */
export const CGROUP_PARENT = 'nodeset-local'
/** Mounted (hybrid, v1) or the root itself (unified): where a run's own cgroup is made. */
export const CGROUP_HIERARCHIES = ['/sys/fs/cgroup/systemd', '/sys/fs/cgroup/unified', '/sys/fs/cgroup']

/** Where a node's systemd-mode files are, under its node directory. */
export function machinePaths(nodeDir: string): {layer: string; work: string; root: string; seed: string} {
  return {
    // The node's writable files: the overlay's upper directory, or the whole copy of the image.
    layer: join(nodeDir, 'layer'),
    // overlayfs's work directory: on the same file system as the layer, as overlayfs requires.
    work: join(nodeDir, 'overlay-work'),
    // The overlay's mount point (seen only by the machine's own mount namespace).
    root: join(nodeDir, 'root'),
    seed: join(nodeDir, 'seed'),
  }
}

/**
 * $1 machine name, $2 the image's root to overlay (empty: the directory nspawn is given is a copy),
 * $3 the node directory; then nspawn's arguments.
 */
export const MACHINE_SCRIPT = `set -eu
m=$1 lower=$2 dir=$3
shift 3
for h in ${CGROUP_HIERARCHIES.join(' ')}; do
  [ -f "$h/cgroup.procs" ] || continue
  mkdir -p "$h/${CGROUP_PARENT}/$m"
  echo $$ > "$h/${CGROUP_PARENT}/$m/cgroup.procs"
done
mount -t tmpfs -o mode=0755,size=4m nodeset-nspawn ${NSPAWN_RUNTIME}
[ -z "$lower" ] || mount -t overlay -o "lowerdir=$lower,upperdir=$dir/layer,workdir=$dir/overlay-work" nodeset-layer "$dir/root"
exec systemd-nspawn "$@"
`

/** Run systemd-nspawn with these arguments through MACHINE_SCRIPT. */
export function machineCommand(
  machine: string,
  nspawnArgs: string[],
  overlay?: {lower: string; nodeDir: string},
): Command {
  return {
    argv: [
      'unshare',
      '--mount',
      '--propagation',
      'private',
      '--',
      '/bin/sh',
      '-c',
      MACHINE_SCRIPT,
      'nodeset-machine',
      machine,
      overlay?.lower ?? '',
      overlay?.nodeDir ?? '',
      ...nspawnArgs,
    ],
  }
}

export interface MachineSpec {
  /** Machine name: the node's namespace name. */
  machine: string
  hostname: string
  namespace: string
  /** The tree nspawn boots: the overlay's mount point, or the node's copy of the image. */
  directory: string
  seed: string
}

/** A real boot: systemd as PID 1, in the node's network namespace, the seed where NoCloud looks for it. */
export function bootArgs(m: MachineSpec): string[] {
  return [
    '--boot',
    '--register=no',
    '--keep-unit',
    `--network-namespace-path=/run/netns/${m.namespace}`,
    `--directory=${m.directory}`,
    `--machine=${m.machine}`,
    `--hostname=${m.hostname}`,
    '--resolv-conf=off',
    '--timezone=off',
    '--link-journal=no',
    // The machine's console is nspawn's output: the node's console log, as EC2's get-console-output.
    '--console=read-only',
    `--bind-ro=${m.seed}:/var/lib/cloud/seed/nocloud`,
  ]
}

/** One command in a stopped image tree (no boot, the host's network): used to build the image. */
export function runInTreeArgs(directory: string, argv: string[]): string[] {
  return [
    '--quiet',
    '--register=no',
    '--keep-unit',
    `--directory=${directory}`,
    '--pipe',
    '--setenv=DEBIAN_FRONTEND=noninteractive',
    '--',
    ...argv,
  ]
}

/** An instance id like EC2's, new for each node made (a node made again is a new instance). */
export function instanceId(namespace: string, createdAt: string): string {
  return `i-${createHash('sha256').update(`${namespace}\0${createdAt}`).digest('hex').slice(0, 17)}`
}

/** The NoCloud meta-data: instance id, hostname and the operator's keys (JSON strings are YAML). */
export function metaData(id: string, hostname: string, authorizedKeys: string[]): string {
  return [
    `instance-id: ${JSON.stringify(id)}`,
    `local-hostname: ${JSON.stringify(hostname)}`,
    'public-keys:',
    ...authorizedKeys.map((k) => `  - ${JSON.stringify(k)}`),
    '',
  ].join('\n')
}

/** Whether overlayfs can stack a layer on the image: the kernel has it, and the image is not on one. */
export function overlayUsable(procFilesystems: string, imageFsType: string): boolean {
  return /\boverlay$/m.test(procFilesystems) && !/overlay/i.test(imageFsType)
}

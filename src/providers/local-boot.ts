/**
 * systemd mode of the local provider (`[provider] boot = systemd`): each node is a real boot of the
 * shared Debian image (local-image.ts) under systemd-nspawn, over a writable layer of its own that
 * survives a reboot, in the network namespace fast mode uses, with a NoCloud seed that carries the
 * node's user data byte for byte. cloud-init runs it; the agent installs its own systemd unit.
 * Commands are built in local-boot-commands.ts.
 */
import {mkdir, readdir, readFile, rmdir, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {
  bootArgs,
  CGROUP_HIERARCHIES,
  CGROUP_PARENT,
  instanceId,
  machineCommand,
  machinePaths,
  metaData,
  NSPAWN_RUNTIME,
  overlayUsable,
} from './local-boot-commands.js'
import {claimOverlay, ensureHostDirs, exists, readHostKeysIn} from './local-files.js'
import {plugNetwork} from './local-machine.js'
import type {LocalNodeState, LocalStateFiles} from './local-state.js'
import {killNamespaceProcesses, processAlive, run, spawnDetached, sshGreets} from './local-system.js'

/** Until the image's sshd answers: systemd, then cloud-init's first stage, which makes the host keys. */
const BOOT_TIMEOUT_MS = 120_000
/** An orderly poweroff (nspawn passes SIGTERM on to systemd as SIGRTMIN+3), then SIGKILL. */
const STOP_GRACE_MS = 30_000

/**
 * Boot a recorded node: its layer (made at the first boot), its seed (written when user data is
 * given: a first boot), its network, then the machine; returns once the image's sshd answers.
 */
export async function bootMachine(
  state: LocalNodeState,
  states: LocalStateFiles,
  imageRoot: string,
  authorizedKeys: string[],
  userData: string | undefined,
): Promise<void> {
  const dir = states.nodeDir(state.name)
  const paths = machinePaths(dir)
  // The /etc/netns marker says "a local node lives here" to releaseHostDirs, as in fast mode.
  await claimOverlay(states.stateRoot, state.namespace)
  await ensureHostDirs(NSPAWN_RUNTIME, async () => undefined)
  if (!state.layer || !state.image) {
    state.layer = (await overlayOnImage(imageRoot)) ? 'overlay' : 'copy'
    state.image = imageRoot
    await states.write(state)
  }
  const image = state.image
  if (state.layer === 'overlay' && !(await exists(join(image, 'etc/os-release'))))
    throw new Error(
      `the image ${image} that local node ${state.name} was made on is gone: destroy the node and create it again`,
    )
  await mkdir(paths.layer, {recursive: true, mode: 0o755})
  if (state.layer === 'overlay') {
    await Promise.all([paths.work, paths.root].map((d) => mkdir(d, {recursive: true, mode: 0o755})))
  } else if (!(await exists(join(paths.layer, 'etc/os-release')))) {
    await run({argv: ['cp', '-a', '--reflink=auto', `${image}/.`, paths.layer]}, {timeoutMs: 10 * 60_000})
  }
  if (userData !== undefined) await writeSeed(state, paths.seed, authorizedKeys, userData)
  else if (!(await exists(join(paths.seed, 'meta-data'))))
    throw new Error(`local node ${state.name} has no NoCloud seed in ${paths.seed}: destroy it and create it again`)
  await plugNetwork(state)
  const machine = await spawnDetached(
    machineCommand(
      state.namespace,
      bootArgs({
        machine: state.namespace,
        hostname: state.name,
        namespace: state.namespace,
        directory: state.layer === 'overlay' ? paths.root : paths.layer,
        seed: paths.seed,
      }),
      state.layer === 'overlay' ? {lower: image, nodeDir: dir} : undefined,
    ),
    join(dir, 'console.log'),
  )
  await states.writePid(state.name, 'machine', machine.pid)
  let exited = false
  machine.once('exit', () => (exited = true))
  const deadline = Date.now() + BOOT_TIMEOUT_MS
  while (!(await sshGreets(state.address))) {
    if (exited || Date.now() > deadline) {
      const consoleLog = (await readFile(join(dir, 'console.log'), 'utf8').catch(() => '')).trim()
      await stopMachine(state, states)
      throw new Error(
        `the boot of ${state.name} ${exited ? 'ended' : `did not reach sshd within ${BOOT_TIMEOUT_MS / 1000}s`}` +
          `${consoleLog ? `; console: ${consoleLog.slice(-800)}` : ''}`,
      )
    }
    await sleep(100)
  }
  if (state.phase !== 'created') {
    state.phase = 'created'
    await states.write(state)
  }
}

/** meta-data (instance id, hostname, keys) and user-data, exactly the bytes EC2 would be given. */
async function writeSeed(s: LocalNodeState, seed: string, keys: string[], userData: string): Promise<void> {
  await mkdir(seed, {recursive: true, mode: 0o700})
  await writeFile(join(seed, 'meta-data'), metaData(instanceId(s.namespace, s.createdAt), s.name, keys), {mode: 0o600})
  await writeFile(join(seed, 'user-data'), userData, {mode: 0o600})
}

async function overlayOnImage(imageRoot: string): Promise<boolean> {
  const filesystems = await readFile('/proc/filesystems', 'utf8').catch(() => '')
  const fsType = await run({argv: ['stat', '-f', '-c', '%T', imageRoot]}).catch(() => '')
  return overlayUsable(filesystems, fsType.trim())
}

/** The nspawn process of the node, if it runs for this node's namespace (a reused pid does not count). */
export async function machinePid(state: LocalNodeState, states: LocalStateFiles): Promise<number | undefined> {
  const pid = await states.readPid(state.name, 'machine')
  if (pid === undefined || !processAlive(pid)) return undefined
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')
  return cmdline.split('\0').includes(`--network-namespace-path=/run/netns/${state.namespace}`) ? pid : undefined
}

/** The machine's PID 1 (its systemd), whose namespaces `nsenter` enters to run something inside. */
export async function machineLeader(nspawnPid: number): Promise<number | undefined> {
  const children = await readFile(`/proc/${nspawnPid}/task/${nspawnPid}/children`, 'utf8').catch(() => '')
  const leader = Number(children.trim().split(/\s+/)[0])
  return leader > 0 ? leader : undefined
}

/**
 * Power the machine off (SIGTERM to nspawn: an orderly shutdown), SIGKILL after the grace period;
 * then end anything left in the namespace and remove the machine's cgroups. Its layer and seed stay.
 */
export async function stopMachine(state: LocalNodeState, states: LocalStateFiles): Promise<void> {
  const pid = await machinePid(state, states)
  if (pid !== undefined) {
    process.kill(pid, 'SIGTERM')
    const deadline = Date.now() + STOP_GRACE_MS
    while (processAlive(pid) && Date.now() < deadline) await sleep(50)
    if (processAlive(pid)) process.kill(pid, 'SIGKILL')
    while (processAlive(pid)) await sleep(20)
  }
  await killNamespaceProcesses(state.namespace)
  await removeMachineCgroups(state.namespace)
}

/** Remove `<hierarchy>/nodeset-local/<machine>` and what nspawn and the machine's systemd made in it. */
export async function removeMachineCgroups(machine: string): Promise<void> {
  for (const hierarchy of CGROUP_HIERARCHIES) {
    const parent = join(hierarchy, CGROUP_PARENT)
    const dir = join(parent, machine)
    if (!(await exists(dir))) continue
    await removeCgroupTree(dir)
    await rmdir(parent).catch(() => undefined) // another machine's cgroup may still be in it
  }
}

/** cgroups are removed with rmdir, children first; one that still holds a process refuses (EBUSY). */
async function removeCgroupTree(dir: string): Promise<void> {
  const entries = await readdir(dir, {withFileTypes: true}).catch(() => [])
  for (const e of entries) if (e.isDirectory()) await removeCgroupTree(join(dir, e.name))
  for (let i = 0; ; i++) {
    try {
      await rmdir(dir)
      return
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      if (code === 'ENOENT') return
      // A process that just died may still be counted for a moment.
      if (code !== 'EBUSY' || i >= 50) throw new Error(`could not remove the cgroup ${dir}: ${code}`, {cause: error})
      await sleep(20)
    }
  }
}

/** The node's SSH host public keys, as cloud-init made them in its layer. */
export function machineHostKeys(nodeDir: string): Promise<string[]> {
  return readHostKeysIn(join(machinePaths(nodeDir).layer, 'etc/ssh'))
}

/** The argv prefix that runs a command in every namespace of the machine whose PID 1 is `leader`. */
export const enterMachine = (leader: number): string[] => ['nsenter', '-t', String(leader), '-a', '--']

/**
 * What the local provider does to this machine: the deployment's bridge, and one node brought up
 * (files, network, sshd, then its agent) and taken down again. Each step runs commands built in
 * local-commands.ts.
 */
import {readFile} from 'node:fs/promises'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {
  addBridge,
  addNamespace,
  addVeth,
  bridgePorts,
  configureBridge,
  configureNodeNetwork,
  deleteLink,
  deleteNamespace,
  launchNode,
  listAddresses,
  runInNode,
  showLink,
  subnetConflict,
  type IpLink,
} from './local-commands.js'
import {claimOverlay, exists, removeOverlay, storedAgent, writeNodeFiles} from './local-files.js'
import type {Subnet} from './local-network.js'
import type {LocalNodeState, LocalStateFiles} from './local-state.js'
import {killNamespaceProcesses, run, runAll, spawnDetached, sshGreets, tryRun} from './local-system.js'

const SSH_READY_TIMEOUT_MS = 10_000

/** The bridge exists, with the host address and a fixed MAC, and is up; refuses a subnet in use elsewhere. */
export async function ensureBridge(bridge: string, subnet: Subnet): Promise<void> {
  const links = JSON.parse(await run(listAddresses())) as IpLink[]
  const conflict = subnetConflict(links, bridge, subnet)
  if (conflict) throw new Error(conflict)
  if (!(await tryRun(showLink(bridge)))) {
    await run(addBridge(bridge)).catch(async (error: unknown) => {
      if (!(await tryRun(showLink(bridge)))) throw error
    })
  }
  await runAll(configureBridge(bridge, subnet, links))
}

/** Delete the bridge if it exists and no port is left on it. */
export async function deleteUnusedBridge(bridge: string): Promise<void> {
  const ports = await run(bridgePorts(bridge)).catch(() => undefined)
  if (ports !== undefined && ports.trim() === '') await run(deleteLink(bridge))
}

/**
 * Bring a recorded node up: files, network, sshd, then its user data (a first boot) or the agent it
 * stored (a boot again); records it `created`.
 */
export async function bootNode(
  state: LocalNodeState,
  states: LocalStateFiles,
  authorizedKeys: string[],
  userData: string | undefined,
): Promise<void> {
  const dir = states.nodeDir(state.name)
  await claimOverlay(states.stateRoot, state.namespace)
  await writeNodeFiles(state, dir, authorizedKeys, userData)
  await plugNetwork(state)
  const sshd = await startSshd(state, dir)
  await states.writePid(state.name, 'sshd', sshd)
  const script = userData !== undefined ? '/var/lib/nodeset/user-data.sh' : await storedAgent(dir)
  if (script) {
    const agent = await spawnDetached(runInNode(sshd, script), join(dir, 'fs/var-log/nodeset-agent.log'))
    await states.writePid(state.name, 'agent', agent.pid)
  }
  if (state.phase !== 'created') {
    state.phase = 'created'
    await states.write(state)
  }
}

/** The node's namespace and link, made if missing, with its address and route. */
export async function plugNetwork(s: LocalNodeState): Promise<void> {
  if (!(await exists(`/run/netns/${s.namespace}`))) {
    // A stale host end (from a namespace that is gone) would block the new pair.
    await tryRun(deleteLink(s.hostVeth))
    await run(addNamespace(s.namespace))
  }
  if (!(await tryRun(showLink(s.hostVeth)))) await run(addVeth(s))
  await runAll(configureNodeNetwork(s))
}

/** Start the node's sshd in its namespaces and wait until it greets on port 22; returns its pid. */
async function startSshd(s: LocalNodeState, dir: string): Promise<number> {
  const log = join(dir, 'boot.log')
  const child = await spawnDetached(launchNode(s, dir), log)
  let exited = false
  child.once('exit', () => (exited = true))
  const deadline = Date.now() + SSH_READY_TIMEOUT_MS
  while (Date.now() < deadline && !exited) {
    if (await sshGreets(s.address)) return child.pid
    await sleep(20)
  }
  const [bootLog, sshdLog] = await Promise.all(
    [log, join(dir, 'fs/var-log/sshd.log')].map(async (f) => (await readFile(f, 'utf8').catch(() => '')).trim()),
  )
  if (!exited) child.kill('SIGKILL')
  throw new Error(
    `sshd of ${s.name} did not answer on ${s.address}:22 ${exited ? '(it exited)' : `within ${SSH_READY_TIMEOUT_MS / 1000}s`}` +
      `${bootLog ? `; boot: ${bootLog.slice(-500)}` : ''}${sshdLog ? `; sshd: ${sshdLog.slice(-500)}` : ''}`,
  )
}

/** Kill everything in the node's namespaces, then delete its namespace, link, overlay and directory. */
export async function removeNode(s: LocalNodeState, states: LocalStateFiles): Promise<void> {
  await killNamespaceProcesses(s.namespace)
  if (await exists(`/run/netns/${s.namespace}`)) await run(deleteNamespace(s.namespace))
  // Deleting the namespace takes its veth end with it, asynchronously; make sure the host end goes too.
  for (let i = 0; i < 100 && (await tryRun(showLink(s.hostVeth))); i++) {
    await tryRun(deleteLink(s.hostVeth))
    await sleep(20)
  }
  await removeOverlay(s.namespace)
  await states.removeNode(s.name)
}

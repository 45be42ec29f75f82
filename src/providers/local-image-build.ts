/**
 * Building the boot image of systemd-mode local nodes once per recipe (local-image.ts): debootstrap
 * from this machine's apt mirror, the rest of the packages with apt inside the tree, nodeset's files,
 * then an atomic rename into the cache. Concurrent builders wait on one lock; a cached image is used
 * as it is. Each step prints progress.
 */
import {spawn} from 'node:child_process'
import {createInterface} from 'node:readline'
import {mkdir, readdir, readFile, rename, rm, writeFile} from 'node:fs/promises'
import {dirname, join} from 'node:path'
import {machineCommand, NSPAWN_RUNTIME, runInTreeArgs} from './local-boot-commands.js'
import {removeMachineCgroups} from './local-boot.js'
import type {Command} from './local-commands.js'
import {ensureHostDirs, exists, releaseHostDirs} from './local-files.js'
import {
  aptSource,
  DISABLED_UNITS,
  IMAGE_CACHE,
  IMAGE_FILES,
  IMAGE_REMOVED,
  imageDir,
  imageRecipe,
  MASKED_UNITS,
  type ImageRecipe,
} from './local-image.js'
import {CommandError, SYSTEM_ENV, withLock} from './local-system.js'

export interface BootImage {
  recipe: ImageRecipe
  /** The tree nodes boot: `<cache>/<hash>/root`. */
  root: string
}

export type Progress = (line: string) => void

const BUILD_TIMEOUT_MS = 30 * 60_000
const BUILD_TOOLS = [
  {path: '/usr/sbin/debootstrap', what: 'debootstrap', pkg: 'debootstrap'},
  {path: '/usr/bin/systemd-nspawn', what: 'systemd-nspawn', pkg: 'systemd-container'},
]

/** Why systemd mode cannot run here (its tools are missing), or undefined. `present` says if a path exists. */
export async function bootModeProblem(
  present: (path: string) => Promise<boolean> = exists,
): Promise<string | undefined> {
  const missing = []
  for (const tool of BUILD_TOOLS) if (!(await present(tool.path))) missing.push(tool)
  if (missing.length === 0) return undefined
  return (
    `the local provider's systemd mode needs ${missing.map((t) => `${t.what} (Debian package ${t.pkg})`).join(' and ')}: ` +
    `install with apt-get install ${missing.map((t) => t.pkg).join(' ')}`
  )
}

/** The recipe this machine builds: its apt mirror and suite, the pinned lists. */
export async function localImageRecipe(): Promise<ImageRecipe> {
  const files = [{path: '/etc/apt/sources.list', text: await readFile('/etc/apt/sources.list', 'utf8').catch(() => '')}]
  const dir = '/etc/apt/sources.list.d'
  for (const name of (await readdir(dir).catch(() => [] as string[])).sort()) {
    if (name.endsWith('.list') || name.endsWith('.sources'))
      files.push({path: join(dir, name), text: await readFile(join(dir, name), 'utf8').catch(() => '')})
  }
  return imageRecipe(aptSource(files))
}

/** The cached image of this machine's recipe, built first if it is not there. */
export async function ensureImage(progress: Progress, cache = IMAGE_CACHE): Promise<BootImage> {
  const problem = await bootModeProblem()
  if (problem) throw new Error(problem)
  const recipe = await localImageRecipe()
  const dir = imageDir(recipe, cache)
  const image = {recipe, root: join(dir, 'root')}
  if (await exists(join(dir, 'image.json'))) return image
  await mkdir(cache, {recursive: true, mode: 0o755})
  await withLock(
    join(cache, `${recipe.hash}.lock`),
    async () => {
      if (await exists(join(dir, 'image.json'))) return
      const build = join(cache, `.build-${recipe.hash}`)
      // A failed build leaves nothing: no image, and not its half-made tree.
      await buildImage(recipe, build, dir, progress).catch(async (error: unknown) => {
        await rm(build, {recursive: true, force: true})
        throw error
      })
    },
    BUILD_TIMEOUT_MS,
  )
  return image
}

async function buildImage(recipe: ImageRecipe, build: string, dir: string, progress: Progress): Promise<void> {
  const started = Date.now()
  const root = join(build, 'root')
  const say = (line: string): void => progress(`image ${recipe.hash}: ${line}`)
  await rm(build, {recursive: true, force: true})
  await mkdir(build, {recursive: true, mode: 0o755})
  say(
    `building the Debian ${recipe.suite} image for systemd-mode local nodes from ${recipe.mirror} (once; a few minutes)`,
  )
  say(`1/4 debootstrap ${recipe.bootstrap.join(' ')}`)
  const debootstrap = [
    ...['debootstrap', '--variant=minbase', `--include=${recipe.bootstrap.join(',')}`],
    ...[recipe.suite, root, recipe.mirror],
  ]
  // Its stages, not its line per package.
  const stage =
    /^I: (Retrieving (InRelease|Packages)|Resolving|Installing|Unpacking (required|the base)|Configuring (required|the base)|Base system)/
  await runShown({argv: debootstrap}, (line) => stage.test(line), say)
  // Installing must not start the services it installs (invoke-rc.d asks policy-rc.d).
  await writeFile(join(root, 'usr/sbin/policy-rc.d'), '#!/bin/sh\nexit 101\n', {mode: 0o755})
  say(`2/4 apt-get install ${recipe.packages.join(' ')}`)
  const machine = `nodeset-image-${recipe.hash}`
  const inTree = (script: string): Command => machineCommand(machine, runInTreeArgs(root, ['/bin/sh', '-ec', script]))
  // nspawn's runtime directory must exist to be mounted over; made (and recorded) as for nodes.
  await ensureHostDirs(NSPAWN_RUNTIME, async () => undefined)
  try {
    const install = `apt-get update -q && apt-get install -y -q --no-install-recommends ${recipe.packages.join(' ')}`
    const named = (line: string): boolean =>
      line.startsWith('Fetched ') || recipe.packages.some((p) => line.startsWith(`Setting up ${p} `))
    await runShown(inTree(install), named, say)
    say('3/4 units and files')
    const units = `systemctl disable ${DISABLED_UNITS.join(' ')} && systemctl mask ${MASKED_UNITS.join(' ')} && apt-get clean`
    await runShown(inTree(units), () => false, say)
    const versions = await runShown(inTree("dpkg-query -W -f '${Package} ${Version}\\n'"), () => false, say)
    await removeBuildLeftovers(root)
    for (const f of IMAGE_FILES) {
      await rm(join(root, f.path), {force: true})
      await writeFile(join(root, f.path), f.content, {mode: f.mode})
    }
    const manifest = {recipe, builtAt: new Date().toISOString(), installed: versions.trim().split('\n')}
    await writeFile(join(build, 'image.json'), JSON.stringify(manifest, null, 2) + '\n', {mode: 0o644})
  } finally {
    await removeMachineCgroups(machine)
    await releaseHostDirs() // the directories made for it, unless a local node uses them
  }
  say('4/4 into the cache')
  await rm(dir, {recursive: true, force: true})
  await rename(build, dir)
  say(`ready in ${Math.round((Date.now() - started) / 1000)} s: ${dir}`)
}

/** IMAGE_REMOVED: exact paths, or a directory and a name prefix ending in `*`. */
async function removeBuildLeftovers(root: string): Promise<void> {
  for (const pattern of IMAGE_REMOVED) {
    if (!pattern.endsWith('*')) {
      await rm(join(root, pattern), {recursive: true, force: true})
      continue
    }
    const at = join(root, dirname(pattern))
    const prefix = pattern.slice(pattern.lastIndexOf('/') + 1, -1)
    for (const name of await readdir(at).catch(() => [] as string[]))
      if (name.startsWith(prefix)) await rm(join(at, name), {recursive: true, force: true})
  }
}

/**
 * Run a build step, its output lines that `shown` picks passed to `say`; returns its stdout. A
 * failure carries the last lines of its output.
 */
function runShown({argv}: Command, shown: (line: string) => boolean, say: Progress): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), {env: SYSTEM_ENV, stdio: ['ignore', 'pipe', 'pipe']})
    let stdout = ''
    const tail: string[] = []
    const keep = (line: string): void => {
      tail.push(line)
      if (tail.length > 20) tail.shift()
      if (shown(line)) say(line)
    }
    createInterface({input: child.stdout}).on('line', (line) => {
      stdout += `${line}\n`
      keep(line)
    })
    createInterface({input: child.stderr}).on('line', keep)
    const timer = setTimeout(() => child.kill('SIGKILL'), BUILD_TIMEOUT_MS)
    child.once('error', reject)
    child.once('close', (code) => {
      clearTimeout(timer)
      if (code === 0) resolve(stdout)
      else reject(new CommandError(argv.slice(0, 12), code ?? 'killed', tail.join('\n')))
    })
  })
}

/**
 * A release: the app directory as a gzipped tar, named by when it was made and what it holds
 * (`20250102T030405Z-1a2b3c4d`: sortable by time, the suffix the start of the archive's sha256).
 */
import {createHash} from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import {gzipSync} from 'node:zlib'
import tar from 'tar-stream'
import {UserError} from '../core/errors.js'

export const RELEASE_ID_PATTERN = /^\d{8}T\d{6}Z-[0-9a-f]{8}$/

export interface ReleaseArchive {
  id: string
  sha256: string
  archive: Buffer
  createdAt: Date
}

export function releaseId(createdAt: Date, sha256: string): string {
  const stamp = createdAt
    .toISOString()
    .replace(/\.\d+Z$/, 'Z')
    .replace(/[-:]/g, '')
  return `${stamp}-${sha256.slice(0, 8)}`
}

/** When a release was made, read back from its id. */
export function releaseTime(id: string): Date | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z-/.exec(id)
  return m ? new Date(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}Z`) : undefined
}

/** What is never part of a release: version control and nodeset's own workspace. */
const LEFT_OUT = new Set(['.git', '.hg', '.svn', '.bzr', 'CVS', '.nodeset'])

interface Entry {
  name: string
  kind: 'directory' | 'file' | 'symlink'
  mode: number
  content?: Buffer
  target?: string
}

/**
 * The app directory's entries in name order, each as a release holds it: owned by root, readable by
 * everyone and writable by no one else (the app runs unprivileged and must not change its own code),
 * with no time stamps, so the same content gives the same bytes, whenever and wherever it is packed.
 */
export function releaseEntries(appDir: string): Entry[] {
  const entries: Entry[] = []
  const walk = (dir: string, prefix: string) => {
    for (const name of fs.readdirSync(dir).sort()) {
      if (LEFT_OUT.has(name)) continue
      const full = path.join(dir, name)
      const rel = prefix + name
      const stat = fs.lstatSync(full)
      const executable = stat.isDirectory() || (stat.mode & 0o111) !== 0
      const mode = (stat.mode & 0o7777 & ~0o022) | 0o444 | (executable ? 0o111 : 0)
      if (stat.isSymbolicLink()) entries.push({name: rel, kind: 'symlink', mode: 0o777, target: fs.readlinkSync(full)})
      else if (stat.isDirectory()) {
        entries.push({name: `${rel}/`, kind: 'directory', mode})
        walk(full, `${rel}/`)
      } else if (stat.isFile()) entries.push({name: rel, kind: 'file', mode, content: fs.readFileSync(full)})
    }
  }
  walk(appDir, './')
  return entries
}

/** Pack APP_DIR as a gzipped tar (tar-stream, gzip by zlib: no time stamp in either). */
export async function packRelease(appDir: string, createdAt = new Date()): Promise<ReleaseArchive> {
  let entries: Entry[]
  try {
    entries = releaseEntries(appDir)
  } catch (error) {
    throw new UserError(`cannot pack ${appDir}: ${(error as Error).message}`, 2)
  }
  const archive = gzipSync(await tarOf(entries))
  const sha256 = createHash('sha256').update(archive).digest('hex')
  return {id: releaseId(createdAt, sha256), sha256, archive, createdAt}
}

async function tarOf(entries: Entry[]): Promise<Buffer> {
  const pack = tar.pack()
  const chunks: Buffer[] = []
  const done = new Promise<Buffer>((resolve, reject) => {
    pack.on('data', (chunk: unknown) => {
      chunks.push(chunk as Buffer)
    })
    pack.on('end', () => resolve(Buffer.concat(chunks)))
    pack.on('error', reject)
  })
  const epoch = new Date(0)
  for (const e of entries) {
    const header = {name: e.name, type: e.kind, mode: e.mode, uid: 0, gid: 0, mtime: epoch}
    if (e.kind === 'symlink') pack.entry({...header, linkname: e.target})
    else if (e.kind === 'file') pack.entry({...header, size: e.content!.length}, e.content!)
    else pack.entry(header)
  }
  pack.finalize()
  return done
}

/**
 * A release: the app directory as a gzipped tar, named by when it was made and what it holds
 * (`20250102T030405Z-1a2b3c4d`: sortable by time, the suffix the start of the archive's sha256).
 */
import {spawn} from 'node:child_process'
import {createHash} from 'node:crypto'
import {gzipSync} from 'node:zlib'
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

/**
 * The tar arguments: version control directories and nodeset's own workspace left out, entries in
 * name order with root as owner and files readable by everyone (the app runs unprivileged and must
 * not be able to change its own code), so the same tree gives the same bytes.
 */
export function tarArguments(appDir: string): string[] {
  return [
    '-C',
    appDir,
    '--exclude-vcs',
    '--exclude=./.nodeset',
    '--sort=name',
    '--owner=0',
    '--group=0',
    '--numeric-owner',
    '--mode=go-w,a+rX',
    '-cf',
    '-',
    '.',
  ]
}

/** Pack APP_DIR (GNU tar, gzip by zlib: no time stamp in the header). */
export async function packRelease(appDir: string, createdAt = new Date()): Promise<ReleaseArchive> {
  const tarball = await runTar(tarArguments(appDir))
  const archive = gzipSync(tarball)
  const sha256 = createHash('sha256').update(archive).digest('hex')
  return {id: releaseId(createdAt, sha256), sha256, archive, createdAt}
}

function runTar(args: string[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn('tar', args, {stdio: ['ignore', 'pipe', 'pipe']})
    const out: Buffer[] = []
    let err = ''
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk))
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()))
    child.on('error', (error: NodeJS.ErrnoException) =>
      reject(
        error.code === 'ENOENT'
          ? new UserError(
              'packing the app needs GNU tar on this machine: install it (apt-get install tar, or brew install gnu-tar and put it first in PATH)',
            )
          : error,
      ),
    )
    child.on('close', (code) => {
      if (code === 0) return resolve(Buffer.concat(out))
      reject(
        new UserError(
          `tar could not pack ${args[1]}: ${err.trim().split('\n').slice(-3).join('; ')}${/unrecognized option|sort/.test(err) ? ' (nodeset needs GNU tar)' : ''}`,
        ),
      )
    })
  })
}

/**
 * Reading the files a nodeset names (the file itself, what it extends, ~/.nodeset.conf, secret_file):
 * only regular text files up to MAX_FILE_BYTES. A directory, a FIFO or device (which would block a
 * read), a binary file or an oversized one is refused with one line saying which, never read.
 */
import fs from 'node:fs'

export const MAX_FILE_BYTES = 1024 * 1024

/** Why a file was not read. */
export interface Unreadable {
  unreadable: string
}

/** A file's text; undefined when it does not exist; Unreadable when it is there but not a text file to read. */
export type ReadOutcome = string | undefined | Unreadable

export interface ReaderIO {
  readFile(file: string): ReadOutcome
  env: Record<string, string | undefined>
}

function kindOf(stat: fs.Stats): string {
  if (stat.isDirectory()) return 'a directory'
  if (stat.isFIFO()) return 'a FIFO (named pipe)'
  if (stat.isSocket()) return 'a socket'
  if (stat.isCharacterDevice() || stat.isBlockDevice()) return 'a device'
  return 'not a regular file'
}

const size = (bytes: number) => (bytes >= 1024 * 1024 ? `${(bytes / 1024 / 1024).toFixed(1)} MiB` : `${bytes} bytes`)

/** Read a file from disk, refusing what is not a regular text file of reasonable size. */
export function readTextFile(file: string): ReadOutcome {
  let stat: fs.Stats
  try {
    stat = fs.statSync(file)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined
    return {unreadable: `cannot be read (${code ?? (error as Error).message})`}
  }
  if (!stat.isFile()) return {unreadable: `is ${kindOf(stat)}, not a file`}
  if (stat.size > MAX_FILE_BYTES) return {unreadable: `is ${size(stat.size)}; a nodeset file is at most 1 MiB`}
  let bytes: Buffer
  try {
    bytes = fs.readFileSync(file)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    return {
      unreadable: `cannot be read (${code === 'EACCES' ? 'permission denied' : (code ?? (error as Error).message)})`,
    }
  }
  return textOf(bytes)
}

/** UTF-8 text, or why these bytes are not a text file. */
export function textOf(bytes: Buffer): ReadOutcome {
  if (bytes.length > MAX_FILE_BYTES) return {unreadable: `is ${size(bytes.length)}; a nodeset file is at most 1 MiB`}
  const nul = bytes.indexOf(0)
  if (nul >= 0) return {unreadable: `is a binary file (a NUL byte at offset ${nul}), not text`}
  try {
    return new TextDecoder('utf-8', {fatal: true}).decode(bytes)
  } catch {
    return {unreadable: 'is not UTF-8 text'}
  }
}

/** What an I/O's answer means: the text, or a problem to report (undefined text and problem: no such file). */
export function outcome(read: ReadOutcome): {text?: string; problem?: string} {
  if (read === undefined) return {}
  if (typeof read === 'string') {
    const checked = read.length > MAX_FILE_BYTES || read.includes('\0') ? textOf(Buffer.from(read)) : read
    return typeof checked === 'string' ? {text: checked} : {problem: (checked as Unreadable).unreadable}
  }
  return {problem: read.unreadable}
}

export const defaultIO = (): ReaderIO => ({readFile: readTextFile, env: process.env})

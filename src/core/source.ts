/** Where a value came from: the file that set it (through `extends`) and its line. */
export interface Source {
  file: string
  line: number
}

/** `file:line`, the file relative to the working directory when it is below it. */
export function formatSource(source: Source | undefined): string {
  if (!source) return '<unknown>'
  const cwd = typeof process === 'undefined' ? '' : process.cwd() + '/'
  const file = cwd && source.file.startsWith(cwd) ? source.file.slice(cwd.length) : source.file
  return `${file}:${source.line}`
}

/** A node size as the user wrote it: `id t3.small`, `name t3.small`, `ram 256MB`, or a bare type name. */
export type SizeSpec = {kind: 'id'; value: string} | {kind: 'name'; value: string} | {kind: 'ram'; megabytes: number}

/** `HOST:PORT`, `[v6]:PORT` or `:PORT` (all addresses). */
export function parseListen(value: string): {host: string; port: number} {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(value)
  const port = Number(match?.[3])
  if (!match || port > 65535)
    throw new Error(`--listen ${value}: expected HOST:PORT, e.g. 127.0.0.1:8470, 0.0.0.0:8470 or [::1]:8470`)
  return {host: match[1] ?? (match[2] || '0.0.0.0'), port}
}

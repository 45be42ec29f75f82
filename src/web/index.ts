/** The status page (`nodeset status --web`) and the picture it shares with `nodeset graph`. */
import {UserError} from '../core/errors.js'
export {openStatusPage, type StatusPage, type StatusPageOptions} from './page.js'
export {graphSvg, planDot} from './draw.js'

/** `HOST:PORT` (`[::1]:PORT` for IPv6), port 0 for any free one. */
export function parseListen(value: string): {host: string; port: number} {
  const match = /^(?:\[([0-9a-fA-F:]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value)
  const port = match ? Number(match[3]) : NaN
  if (!match || port > 65535)
    throw new UserError(`--listen must be HOST:PORT (127.0.0.1:8765, or port 0 for any free one), not ${value}`)
  return {host: match[1] ?? match[2], port}
}

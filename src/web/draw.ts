/** The plan's picture as DOT and as SVG (laid out here by @viz-js/viz, no Graphviz needed): `nodeset graph`. */
import type {GraphData} from '../plan/render.js'
import {pictureDot} from './dot.js'
import {picture} from './picture.js'

export function planDot(data: GraphData, name: string, options: {collapse?: boolean} = {}): string {
  return pictureDot(picture(data, {collapse: options.collapse ?? false}), data, name)
}

export async function graphSvg(dot: string): Promise<string> {
  const {instance} = await import('@viz-js/viz')
  const viz = await instance()
  return viz.renderString(dot, {format: 'svg', engine: 'dot'})
}

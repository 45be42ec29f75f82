/** Plan → the config server's registration body. Pure. */
import type {ParamSpec, RegisterRequest} from './protocol.js'
import type {Inputs, Plan} from '../plan/types.js'

export function registrationFor(
  plan: Plan,
  /** `inputs`: the values of the plan's launch-time params (collectInputs), inputs[node][service][param]. */
  opts: {startupTimeoutSec?: number; reissueTokens?: string[]; inputs?: Inputs} = {},
): RegisterRequest {
  return {
    startupTimeoutSec: opts.startupTimeoutSec,
    reissueTokens: opts.reissueTokens ?? [],
    inputs: opts.inputs ?? {},
    instances: plan.nodes.map((node) => ({
      id: node.name,
      role: node.role,
      index: node.index,
      services: plan.steps
        .filter((s) => s.node === node.name)
        .map((s) => ({
          name: s.service,
          provides: s.provides,
          after: s.after,
          params: Object.fromEntries(
            s.params.map((p): [string, ParamSpec] => [
              p.name,
              p.input
                ? {input: true, secret: p.secret, source: p.source}
                : p.value.includes('{{')
                  ? {template: p.value, secret: p.secret, source: p.source}
                  : {value: p.value, secret: p.secret, source: p.source},
            ]),
          ),
        })),
    })),
  }
}

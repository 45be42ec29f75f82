/**
 * Plan → the config server's registration body. Pure. With sites, every server is given the whole
 * deployment (each instance with its site), and `siteRegistration` makes the body one site's server
 * gets: its federation keys, and the inputs and reissued tokens of its own instances only.
 */
import type {ParamSpec, RegisterRequest} from './protocol.js'
import type {Inputs, Plan} from '../plan/types.js'

/** What a site's server is given to federate (secrets: its signing key and the seal key; never print them). */
export interface FederationKeys {
  /** The site of the server the body is sent to. */
  site: string
  /** This site's Ed25519 private key, PKCS#8 PEM. */
  signingKey: string
  /** Every other site → its Ed25519 public key, SPKI PEM. */
  peers: Record<string, string>
  /** Base64 of 32 random bytes: the deployment's key for secret outputs, the same at every site. */
  sealKey: string
}

type Instance = RegisterRequest['instances'][number] & {site?: string}

/** The registration body, with the federation fields of the contract (absent for a plan without sites). */
export type Registration = Omit<RegisterRequest, 'instances'> & {instances: Instance[]; federation?: FederationKeys}

export function registrationFor(
  plan: Plan,
  /** `inputs`: the values of the plan's launch-time params (collectInputs), inputs[node][service][param]. */
  opts: {startupTimeoutSec?: number; reissueTokens?: string[]; inputs?: Inputs} = {},
): Registration {
  return {
    startupTimeoutSec: opts.startupTimeoutSec,
    reissueTokens: opts.reissueTokens ?? [],
    inputs: opts.inputs ?? {},
    instances: plan.nodes.map((node) => ({
      id: node.name,
      role: node.role,
      index: node.index,
      ...(node.site ? {site: node.site} : {}),
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

/**
 * The body for one site's server: the whole deployment, its keys, and only what concerns its own
 * instances: inputs never cross to another site, and tokens are issued only by the owner.
 */
export function siteRegistration(body: Registration, federation: FederationKeys): Registration {
  const own = new Set(body.instances.filter((i) => i.site === federation.site).map((i) => i.id))
  const inputs = Object.fromEntries(Object.entries(body.inputs ?? {}).filter(([node]) => own.has(node)))
  const reissueTokens = (body.reissueTokens ?? []).filter((node) => own.has(node))
  return {...body, inputs, reissueTokens, federation}
}

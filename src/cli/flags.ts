import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'

/** The nodeset file argument every deployment command takes. */
/** Params given at launch (create-node, setup-node, up): collectInputs in src/operations/inputs.ts. */
export const inputFlags = {
  set: Flags.string({
    description: 'A param given at launch: ROLE.SERVICE.PARAM=VALUE, ROLE as the section of the file (repeatable).',
    multiple: true,
  }),
  values: Flags.string({
    description: 'A file of params given at launch: [ROLE] sections of SERVICE.PARAM = value lines.',
  }),
}

export const fileArg = Args.string({description: 'The nodeset file.', required: true})

/** For static servers whose host key is in no known_hosts file: pin the key they offer on first contact. */
export const trustOnFirstUseFlag = Flags.boolean({
  description:
    'Static servers only: pin the host key a server offers when none is known yet (check it out of band first).',
  default: false,
})

/** How update, rollback and up switch the appservers. */
export const rolloutFlags = {
  'batch-size': Flags.integer({description: 'Appservers switched at once after the first one.', default: 1, min: 1}),
  'health-timeout': Flags.integer({
    description: "Seconds an appserver has to answer 2xx on the app's health_check once restarted.",
    default: 30,
    min: 1,
  }),
}

export const forceReleaseFlag = Flags.boolean({
  description: "Deploy a new release even when the app's content equals the current one.",
  default: false,
})

export const hookTimeoutFlag = Flags.integer({
  description: "Seconds an app's update_fetch (its migration hook) may run.",
  default: 600,
  min: 1,
})

/** Where the ec2 provider's credentials and region come from, over the file's profile and region. */
export const awsFlags = {
  profile: Flags.string({description: 'ec2: the AWS profile (of ~/.aws/config) to use, over the file\'s "profile".'}),
  region: Flags.string({description: 'ec2: the AWS region, over the file\'s "region".'}),
}

/** The flags every command that opens a deployment takes. */
export const deploymentFlags = {...awsFlags}

export interface DeploymentFlagValues {
  profile?: string
  region?: string
  'trust-on-first-use'?: boolean
}

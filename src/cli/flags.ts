import {Flags} from '@oclif/core'

/** For static servers whose host key is in no known_hosts file: pin the key they offer on first contact. */
export const trustOnFirstUseFlag = Flags.boolean({
  description:
    'Static servers only: pin the host key a server offers when none is known yet (check it out of band first).',
  default: false,
})

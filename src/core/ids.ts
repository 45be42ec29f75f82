/** Ids of deployments, instances and services: safe in paths, file names, tags and logs. */
export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,252}$/

/** What ID_PATTERN allows, in words, for error messages. */
export const ID_RULE = 'must be 1-253 of A-Z a-z 0-9 . _ : - and start with a letter or digit'

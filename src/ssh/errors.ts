/**
 * Why an SSH connection failed, as classes the CLI can tell apart without loading ssh2 (a command
 * that reports an error need not pay for the SSH client it never used).
 */
export class SshAuthError extends Error {
  override name = 'SshAuthError'
}

export class SshUnreachableError extends Error {
  override name = 'SshUnreachableError'
}

/** A jump host could not open the connection onward (the node's sshd may not be up yet): retried. */
export class JumpForwardError extends Error {
  override name = 'JumpForwardError'
}

/** A private key or certificate that cannot be used (unreadable, encrypted without an agent…). */
export class SshKeyError extends Error {
  override name = 'SshKeyError'
}

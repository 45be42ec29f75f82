/**
 * The AWS SDK for EC2, loaded on first use. Importing it costs about 1.5 s and 100 MiB, which a
 * command that never calls EC2 (help, plan, a local or static deployment) must not pay.
 */
type Ec2Sdk = typeof import('@aws-sdk/client-ec2')

let loading: Promise<Ec2Sdk> | undefined

export function ec2Sdk(): Promise<Ec2Sdk> {
  loading ??= import('@aws-sdk/client-ec2')
  return loading
}

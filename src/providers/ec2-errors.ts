/** What the provider was doing when EC2 refused, so the message can name the offending setting. */
export interface Ec2ErrorContext {
  /** The EC2 action, e.g. `RunInstances`. */
  operation?: string
  region?: string
  image?: string
  instanceType?: string
  keyName?: string
  subnetId?: string
  securityGroupIds?: string[]
  iamInstanceProfile?: string
  /** Node names the failing call was about. */
  nodes?: string[]
  /** Texts that must never reach a message (user data carries a node's token). */
  secrets?: string[]
}

/** An EC2 failure explained: `code` is EC2's error code, the message says what to do about it. */
export class Ec2Error extends Error {
  override readonly name = 'Ec2Error'

  constructor(
    readonly code: string,
    message: string,
    options?: {cause?: unknown},
  ) {
    super(message, options)
  }
}

type Explain = (context: Ec2ErrorContext, awsMessage: string, attempts: number) => string

const EXPLANATIONS: Record<string, Explain> = {
  UnauthorizedOperation: (c) =>
    `the AWS credentials in use may not call ec2:${c.operation ?? 'this action'}` +
    (c.operation === 'RunInstances' && c.iamInstanceProfile
      ? `, or may not pass the role of instance profile ${c.iamInstanceProfile} (iam:PassRole)`
      : '') +
    '. Grant it to the IAM user or role (docs/ec2.md lists the actions nodeset calls), or pick other credentials with "profile = NAME" in [provider]',
  AuthFailure: () =>
    'AWS did not accept the credentials. Check the access key, refresh an expired session ("aws sso login"), or pick other credentials with "profile = NAME" in [provider]',
  ExpiredToken: () =>
    'the AWS session has expired. Refresh it ("aws sso login" or new temporary credentials) and run the command again',
  'InvalidAMIID.NotFound': (c) =>
    `image ${c.image ?? ''} does not exist${inRegion(c)}. AMI ids differ from region to region: use this region's id, or "image = name PATTERN" with image_owners`,
  'InvalidAMIID.Malformed': (c) =>
    `image "${c.image ?? ''}" is not an AMI id. Write "image = id ami-0123456789abcdef0", or "image = name PATTERN"`,
  InsufficientInstanceCapacity: (c) =>
    `AWS has no spare capacity for ${c.instanceType ?? 'this instance type'} in the subnet's availability zone right now. ` +
    'Try again in a few minutes, choose another size, or a subnet in another availability zone; nodes already created are kept and reused',
  VcpuLimitExceeded: (c) =>
    `the account's vCPU quota for ${c.instanceType ?? 'this instance type'}'s family is used up. ` +
    'Ask for a higher "Running On-Demand … instances" quota in Service Quotas, or create fewer or smaller nodes',
  InstanceLimitExceeded: () =>
    "the account's instance quota is used up. Ask for a higher quota in Service Quotas, or create fewer nodes",
  RequestLimitExceeded: (_c, _m, attempts) =>
    `EC2 throttled the requests${attempts > 1 ? ` even after ${attempts} attempts` : ''}. ` +
    'Wait a minute and run the command again; nodes already created are kept and reused',
  'InvalidKeyPair.NotFound': (c) =>
    `key pair "${c.keyName ?? ''}" does not exist${inRegion(c)}. Import your public key ("aws ec2 import-key-pair") in this region, or fix key_name in [provider]`,
  'InvalidSubnetID.NotFound': (c) =>
    `subnet ${c.subnetId ?? ''} does not exist${inRegion(c)}. Fix subnet in [provider] (a subnet-… id of this region)`,
  'InvalidGroup.NotFound': (c) =>
    `security group ${(c.securityGroupIds ?? []).join(', ')} was not found in the subnet's VPC. ` +
    'Fix security_groups in [provider]: sg-… ids from the same VPC as the subnet',
  'InvalidInstanceID.NotFound': () =>
    'EC2 does not know one of these instances any more. Run the command again; it lists what exists first',
  Unsupported: (c, m) =>
    `${m} Choose another size, or a subnet in an availability zone that offers ${c.instanceType ?? 'it'}`,
  IdempotentParameterMismatch: (c) =>
    `${listNodes(c)} were already launched by an earlier run with other settings (image, size, key, subnet or user data). ` +
    'Delete those instances, or put the settings back, and run the command again',
}

/**
 * Turn an error from the EC2 client (or from the SDK's credential and region chain) into an
 * `Ec2Error` whose message says what went wrong and what to do. Unknown EC2 codes keep EC2's
 * own message. Texts in `context.secrets` are masked wherever they would appear.
 */
export function explainEc2Error(error: unknown, context: Ec2ErrorContext = {}): Ec2Error {
  if (error instanceof Ec2Error) return error
  const err = (error ?? {}) as {name?: string; Code?: string; message?: string; $metadata?: {attempts?: number}}
  const code = err.Code ?? err.name ?? 'Error'
  const awsMessage = err.message ?? String(error)
  const action = context.operation ? `EC2 ${context.operation} failed` : 'EC2 request failed'
  let text: string
  if (EXPLANATIONS[code])
    text = `${action} (${code}): ${EXPLANATIONS[code](context, awsMessage, err.$metadata?.attempts ?? 1)}`
  else if (code === 'CredentialsProviderError')
    text =
      'no AWS credentials found. Set "profile = NAME" in [provider] (a profile of ~/.aws/config), set AWS_PROFILE or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run "aws sso login"'
  else if (/Region is missing/i.test(awsMessage))
    text =
      'no AWS region is set. Set "region = eu-west-1" (for example) in [provider], AWS_REGION, or a region in your AWS profile'
  else text = `${action} (${code}): ${awsMessage}`
  return new Ec2Error(code, mask(text, context.secrets ?? []), {cause: error})
}

function inRegion(c: Ec2ErrorContext): string {
  return c.region ? ` in region ${c.region}` : ' in this region'
}

function listNodes(c: Ec2ErrorContext): string {
  return c.nodes?.length ? `nodes ${c.nodes.join(', ')}` : 'these nodes'
}

/** Hide every secret, and its base64 form (the way user data travels), behind a fixed mask. */
export function mask(text: string, secrets: readonly string[]): string {
  let out = text
  const forms = secrets.flatMap((s) => [s, Buffer.from(s, 'utf8').toString('base64')]).filter((s) => s.length >= 8)
  for (const secret of forms.sort((a, b) => b.length - a.length)) out = out.split(secret).join('********')
  return out
}

/** The error of a failed create, naming the nodes launched before it failed. */
export function withLaunchedNote(reason: unknown, launched: string[]): Error {
  const error = reason instanceof Error ? reason : new Error(String(reason))
  if (launched.length)
    error.message += ` (launched before the failure, and reused by the next run: ${launched.join(', ')})`
  return error
}

/** EC2's error code of an SDK error. */
export function errorCode(error: unknown): string | undefined {
  const e = error as {Code?: string; name?: string} | undefined
  return e?.Code ?? e?.name
}

/** Instances by id: described in chunks, waited for until running or terminated, and who did not get there, why. */
import type {EC2Client, Instance} from '@aws-sdk/client-ec2'
import {Ec2Error, explainEc2Error, type Ec2ErrorContext} from './ec2-errors.js'
import type {WaiterTiming} from './ec2-options.js'
import {ec2Sdk} from './ec2-sdk.js'
import {chunk, ID_CHUNK} from './ec2-requests.js'

export class Ec2Instances {
  constructor(
    /** The client, made on first use. */
    private readonly client: () => Promise<EC2Client>,
    private readonly waiter: Required<WaiterTiming>,
    /** What the provider was doing, for error messages. */
    private readonly context: (operation: string, extra?: Partial<Ec2ErrorContext>) => Ec2ErrorContext,
  ) {}

  async describe(ids: string[]): Promise<Map<string, Instance>> {
    const byId = new Map<string, Instance>()
    for (const part of chunk(ids, ID_CHUNK)) {
      try {
        const {DescribeInstancesCommand} = await ec2Sdk()
        const out = await (await this.client()).send(new DescribeInstancesCommand({InstanceIds: part}))
        for (const r of out.Reservations ?? [])
          for (const i of r.Instances ?? []) if (i.InstanceId) byId.set(i.InstanceId, i)
      } catch (error) {
        throw explainEc2Error(error, this.context('DescribeInstances'))
      }
    }
    return byId
  }

  /** Wait until every instance is `goal`; else say which are not, by their node names. */
  async waitFor(goal: 'running' | 'terminated', ids: string[], nameOf: (id: string) => string): Promise<void> {
    const sdk = await ec2Sdk()
    const wait = goal === 'running' ? sdk.waitUntilInstanceRunning : sdk.waitUntilInstanceTerminated
    const client = await this.client()
    for (const part of chunk(ids, ID_CHUNK)) {
      try {
        await wait({client, ...this.waiter}, {InstanceIds: part})
      } catch (error) {
        throw await this.waitFailure(goal, part, nameOf, error)
      }
    }
  }

  /** Say which instances did not get there and why (EC2's state reason), instead of the waiter's raw dump. */
  private async waitFailure(
    goal: string,
    ids: string[],
    nameOf: (id: string) => string,
    error: unknown,
  ): Promise<Error> {
    let states: Map<string, Instance>
    try {
      states = await this.describe(ids)
    } catch {
      states = new Map()
    }
    const stuck = ids
      .map((id) => ({id, instance: states.get(id)}))
      .filter(({instance}) => instance?.State?.Name !== goal)
      .map(
        ({id, instance}) =>
          `${nameOf(id)} (${id}) is ${instance?.State?.Name ?? 'unknown'}${instance?.StateReason?.Message ? `: ${instance.StateReason.Message}` : ''}`,
      )
    const why =
      (error as {name?: string}).name === 'TimeoutError' ? `within ${this.waiter.maxWaitTime} s` : 'and never will'
    return new Ec2Error(
      'WaiterFailed',
      `instances did not become ${goal} ${why}: ${stuck.join('; ') || ids.join(', ')}. Look at them in the EC2 console (or "aws ec2 describe-instances"), then run the command again`,
      {cause: error},
    )
  }
}

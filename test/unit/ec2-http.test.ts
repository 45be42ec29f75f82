/**
 * The provider through the real SDK stack (serialisation, signing, error parsing, retries) against a
 * loopback HTTP server that answers in EC2's query protocol.
 */
import http from 'node:http'
import type {AddressInfo} from 'node:net'

import {EC2Client} from '@aws-sdk/client-ec2'
import {afterAll, beforeAll, beforeEach, describe, expect, it} from 'vitest'

import {clientToken, Ec2Error, Ec2Provider} from '../../src/providers/ec2.js'
import {HostKeyStore} from '../../src/ssh/hostkeys.js'

type Reply = {status: number; body: string}
let answer: (action: string, params: URLSearchParams) => Reply
let received: URLSearchParams[]
let server: http.Server
let endpoint: string

const xml = (body: string) => `<?xml version="1.0" encoding="UTF-8"?>\n${body}`
const ec2Error = (status: number, code: string, message: string): Reply => ({
  status,
  body: xml(
    `<Response><Errors><Error><Code>${code}</Code><Message>${message}</Message></Error></Errors><RequestID>req-1</RequestID></Response>`,
  ),
})
const imagesXml = xml(
  '<DescribeImagesResponse><requestId>r</requestId><imagesSet><item><imageId>ami-0123456789abcdef0</imageId>' +
    '<rootDeviceType>ebs</rootDeviceType><rootDeviceName>/dev/xvda</rootDeviceName><blockDeviceMapping><item>' +
    '<deviceName>/dev/xvda</deviceName><ebs><snapshotId>snap-0123456789abcdef0</snapshotId><volumeSize>8</volumeSize></ebs>' +
    '</item></blockDeviceMapping></item></imagesSet></DescribeImagesResponse>',
)
const instanceXml = (state: string) =>
  `<item><instanceId>i-0abc</instanceId><amiLaunchIndex>0</amiLaunchIndex><instanceState><code>${state === 'running' ? 16 : 0}</code><name>${state}</name></instanceState>` +
  `<privateIpAddress>10.0.0.5</privateIpAddress>${state === 'running' ? '<ipAddress>203.0.113.5</ipAddress>' : ''}</item>`

beforeAll(async () => {
  server = http.createServer((req, res) => {
    let body = ''
    req.on('data', (chunk) => (body += chunk))
    req.on('end', () => {
      const params = new URLSearchParams(body)
      received.push(params)
      const reply = answer(params.get('Action') ?? '', params)
      res.writeHead(reply.status, {'content-type': 'text/xml'}).end(reply.body)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})

afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())))

beforeEach(() => {
  received = []
})

function provider(): Ec2Provider {
  const client = new EC2Client({
    region: 'eu-west-1',
    endpoint,
    credentials: {accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'example-only'},
    maxAttempts: 2,
  })
  return new Ec2Provider({
    deployment: 'foobar',
    hostKeys: new HostKeyStore('/nonexistent/known_hosts'),
    image: {kind: 'id', value: 'ami-0123456789abcdef0'},
    keyName: 'ops',
    client,
    waiter: {minDelay: 0.01, maxDelay: 0.02, maxWaitTime: 5},
  })
}

const node = {
  deployment: 'foobar',
  name: 'app1.foobar.com',
  role: 'appserver',
  index: 1,
  userData: '#!/bin/sh\nTOKEN=abc123-secret\n',
}

describe('ec2 over HTTP', () => {
  it('sends RunInstances with the tags, token and base64 user data, waits, and reads the addresses', async () => {
    answer = (action) =>
      action === 'DescribeImages'
        ? {status: 200, body: imagesXml}
        : action === 'RunInstances'
          ? {
              status: 200,
              body: xml(
                `<RunInstancesResponse><requestId>r</requestId><reservationId>r-1</reservationId><instancesSet>${instanceXml('pending')}</instancesSet></RunInstancesResponse>`,
              ),
            }
          : {
              status: 200,
              body: xml(
                `<DescribeInstancesResponse><requestId>r</requestId><reservationSet><item><reservationId>r-1</reservationId><instancesSet>${instanceXml('running')}</instancesSet></item></reservationSet></DescribeInstancesResponse>`,
              ),
            }
    const [record] = await provider().create([node])
    expect(record).toMatchObject({
      id: 'i-0abc',
      name: 'app1.foobar.com',
      address: '203.0.113.5',
      privateAddress: '10.0.0.5',
      state: 'running',
    })

    const run = received.find((p) => p.get('Action') === 'RunInstances')!
    expect(Object.fromEntries(run)).toMatchObject({
      ImageId: 'ami-0123456789abcdef0',
      InstanceType: 't3.micro',
      MinCount: '1',
      MaxCount: '1',
      KeyName: 'ops',
      ClientToken: clientToken('foobar', 'appserver', ['app1.foobar.com']),
      UserData: Buffer.from(node.userData).toString('base64'),
      'TagSpecification.1.ResourceType': 'instance',
      'TagSpecification.1.Tag.1.Key': 'Name',
      'TagSpecification.1.Tag.1.Value': 'app1.foobar.com',
      'TagSpecification.1.Tag.4.Key': 'nodeset:index',
      'TagSpecification.1.Tag.4.Value': '1',
      'TagSpecification.2.ResourceType': 'volume',
      'MetadataOptions.HttpTokens': 'required',
      'MetadataOptions.HttpPutResponseHopLimit': '1',
      'MetadataOptions.HttpEndpoint': 'enabled',
      'BlockDeviceMapping.1.DeviceName': '/dev/xvda',
      'BlockDeviceMapping.1.Ebs.Encrypted': 'true',
      'BlockDeviceMapping.1.Ebs.DeleteOnTermination': 'true',
    })
    expect(Object.fromEntries(received.find((p) => p.get('Action') === 'DescribeImages')!)).toMatchObject({
      'ImageId.1': 'ami-0123456789abcdef0',
    })
    expect(received.filter((p) => p.get('Action') === 'DescribeInstances').map((p) => p.get('InstanceId.1'))).toEqual([
      'i-0abc',
      'i-0abc',
    ])
  })

  it('maps the error codes the SDK parses from EC2 answers', async () => {
    answer = () => ec2Error(400, 'InvalidAMIID.NotFound', "The image id '[ami-0123456789abcdef0]' does not exist")
    const error = (await provider()
      .create([node])
      .catch((e: unknown) => e)) as Ec2Error
    expect(error).toBeInstanceOf(Ec2Error)
    expect(error.code).toBe('InvalidAMIID.NotFound')
    expect(error.message).toMatch(
      /image ami-0123456789abcdef0 does not exist in this region\. AMI ids differ from region to region/,
    )
  })

  it('reports throttling once the SDK has used its retries', async () => {
    answer = () => ec2Error(503, 'RequestLimitExceeded', 'Request limit exceeded.')
    const error = (await provider()
      .list()
      .catch((e: unknown) => e)) as Ec2Error
    expect(received).toHaveLength(2)
    expect(error.message).toMatch(
      /^EC2 DescribeInstances failed \(RequestLimitExceeded\): EC2 throttled the requests even after 2 attempts/,
    )
  })
})

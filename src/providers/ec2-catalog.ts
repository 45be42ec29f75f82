/** What EC2 offers, looked up once per provider: the AMI an `image` means and the instance type a `size` means. */
import type {EC2Client, Image, InstanceTypeInfo} from '@aws-sdk/client-ec2'
import type {SizeSpec} from '../core/source.js'
import {Ec2Error, explainEc2Error, type Ec2ErrorContext} from './ec2-errors.js'
import {DEFAULT_IMAGE_OWNERS, type ImageSpec} from './ec2-options.js'
import {ec2Sdk} from './ec2-sdk.js'

/** The AMI to launch, and its root device when it was looked up (a root volume of our own needs its name). */
export interface ImageInfo {
  imageId: string
  /** e.g. /dev/xvda. */
  rootDeviceName?: string
  /** `ebs` or `instance-store`. */
  rootDeviceType?: string
  /** Size of the root device's snapshot, GiB: the smallest root volume the image takes. */
  rootSnapshotGb?: number
}

export class Ec2Catalog {
  private image?: Promise<ImageInfo>
  private instanceTypes?: Promise<InstanceTypeInfo[]>

  constructor(
    /** The client, made on first use. */
    private readonly client: () => Promise<EC2Client>,
    private readonly region: string | undefined,
    /** What the provider was doing, for error messages. */
    private readonly context: (operation: string, extra?: Partial<Ec2ErrorContext>) => Ec2ErrorContext,
  ) {}

  /**
   * The AMI to launch: as given, or the newest available image whose name matches. An id is looked
   * up (DescribeImages) only when `rootDevice` asks for its root device.
   */
  resolveImage(image: ImageSpec, rootDevice: boolean): Promise<ImageInfo> {
    if (image.kind === 'id' && !rootDevice) return Promise.resolve({imageId: image.value})
    this.image ??= (
      image.kind === 'id'
        ? this.describeImage(image.value)
        : this.findImage(image.pattern, image.owners?.length ? image.owners : DEFAULT_IMAGE_OWNERS)
    ).catch((error: unknown) => {
      this.image = undefined
      throw error
    })
    return this.image
  }

  /** The instance type a size means: `id`/`name` as is, `ram` the smallest current x86_64 type with that much memory. */
  async resolveSize(size: SizeSpec): Promise<string> {
    if (size.kind !== 'ram') return size.value
    const types = await this.listInstanceTypes()
    const fitting = types.filter((t) => (t.MemoryInfo?.SizeInMiB ?? 0) >= size.megabytes && t.InstanceType)
    fitting.sort(
      (a, b) =>
        a.MemoryInfo!.SizeInMiB! - b.MemoryInfo!.SizeInMiB! ||
        (a.VCpuInfo?.DefaultVCpus ?? 0) - (b.VCpuInfo?.DefaultVCpus ?? 0) ||
        a.InstanceType!.localeCompare(b.InstanceType!),
    )
    if (!fitting[0]) {
      throw new Ec2Error(
        'NoInstanceType',
        `no current-generation x86_64 instance type has ${size.megabytes} MB of memory or more; ask for less ("size = ram 4GB"), or name a type ("size = id r7i.48xlarge")`,
      )
    }
    return fitting[0].InstanceType!
  }

  private async describeImage(id: string): Promise<ImageInfo> {
    let images: Image[]
    try {
      const {DescribeImagesCommand} = await ec2Sdk()
      images = (await (await this.client()).send(new DescribeImagesCommand({ImageIds: [id]}))).Images ?? []
    } catch (error) {
      throw explainEc2Error(error, this.context('DescribeImages', {image: id}))
    }
    if (!images[0])
      throw new Ec2Error(
        'InvalidAMIID.NotFound',
        `image ${id} does not exist${this.region ? ` in region ${this.region}` : ' in this region'}. AMI ids differ from region to region: use this region's id, or "image = name PATTERN"`,
      )
    return imageInfo(images[0])
  }

  private async findImage(pattern: string, owners: string[]): Promise<ImageInfo> {
    const input = {
      Owners: owners,
      Filters: [
        {Name: 'name', Values: [pattern]},
        {Name: 'state', Values: ['available']},
      ],
    }
    let images
    try {
      const {DescribeImagesCommand} = await ec2Sdk()
      images = (await (await this.client()).send(new DescribeImagesCommand(input))).Images ?? []
    } catch (error) {
      throw explainEc2Error(error, this.context('DescribeImages', {image: pattern}))
    }
    const newest = images
      .filter((i) => i.ImageId)
      .sort((a, b) => (b.CreationDate ?? '').localeCompare(a.CreationDate ?? ''))[0]
    if (!newest) {
      throw new Ec2Error(
        'NoImage',
        `no available image named "${pattern}" owned by ${owners.join(', ')}${this.region ? ` in region ${this.region}` : ''}; ` +
          'check the pattern (* and ? are wildcards), set image_owners to the account that publishes it (Debian: 136693071363, Ubuntu: 099720109477), or use "image = id ami-…"',
      )
    }
    return imageInfo(newest)
  }

  private listInstanceTypes(): Promise<InstanceTypeInfo[]> {
    this.instanceTypes ??= (async () => {
      const filters = [
        {Name: 'current-generation', Values: ['true']},
        {Name: 'processor-info.supported-architecture', Values: ['x86_64']},
        {Name: 'bare-metal', Values: ['false']},
      ]
      const types: InstanceTypeInfo[] = []
      try {
        const {paginateDescribeInstanceTypes} = await ec2Sdk()
        const client = await this.client()
        for await (const page of paginateDescribeInstanceTypes({client, pageSize: 100}, {Filters: filters}))
          types.push(...(page.InstanceTypes ?? []))
      } catch (error) {
        this.instanceTypes = undefined
        throw explainEc2Error(error, this.context('DescribeInstanceTypes'))
      }
      return types
    })()
    return this.instanceTypes
  }
}

function imageInfo(image: Image): ImageInfo {
  const root = image.BlockDeviceMappings?.find((m) => m.DeviceName === image.RootDeviceName)
  return {
    imageId: image.ImageId!,
    ...(image.RootDeviceName ? {rootDeviceName: image.RootDeviceName} : {}),
    ...(image.RootDeviceType ? {rootDeviceType: image.RootDeviceType} : {}),
    ...(root?.Ebs?.VolumeSize ? {rootSnapshotGb: root.Ebs.VolumeSize} : {}),
  }
}

/**
 * The config server's connection to its site's broker (RabbitMQ, amqplib): one connection, a confirm
 * channel to publish on and a channel to consume from. Per federated deployment it declares the
 * durable topic exchange `nodeset.<deployment>`, this site's durable queue `nodeset.<deployment>.<site>`
 * bound with `<peer>.#` for every other site, and consumes it with manual acks. A lost connection is
 * retried forever with a capped backoff; whoever uses the link is told when it goes down and up.
 */
import amqp, {type Channel, type ChannelModel, type ConfirmChannel, type ConsumeMessage} from 'amqplib'
import {exchangeName, queueName} from './messages.js'

export interface BrokerOptions {
  /** amqp(s)://user:pass@host:port/vhost */
  url: string
  /** PEM text of the CA that signed the broker's certificate (amqps). */
  ca?: string
}

export interface Topology {
  deployment: string
  site: string
  peers: string[]
}

export interface LinkEvents {
  /** A message from this site's queue; `ack` it once it has been dealt with (after its commit). */
  deliver(deployment: string, message: ConsumeMessage, ack: () => void): void
  up(): void
  down(error?: Error): void
}

const MAX_BACKOFF_MS = 5000

/** The broker URL without its password, for messages. */
export function brokerWhere(url: string): string {
  try {
    const parsed = new URL(url)
    parsed.password = ''
    return parsed.toString()
  } catch {
    return 'the broker (its URL does not parse)'
  }
}

export class BrokerLink {
  private connection?: ChannelModel
  private publisher?: ConfirmChannel
  private consumer?: Channel
  private readonly topologies = new Map<string, Topology>()
  private readonly consumers = new Map<string, string>()
  private closed = false
  private backoffMs = 250
  private timer?: NodeJS.Timeout
  private connecting?: Promise<void>
  isUp = false

  constructor(
    private readonly options: BrokerOptions,
    private readonly events: LinkEvents,
    private readonly log: (message: string, error?: unknown) => void,
  ) {
    if (!/^amqps?:\/\//.test(options.url)) throw new Error('the broker URL must be amqp:// or amqps://')
  }

  /** Connect for the first time; a broker that cannot be reached or refuses the user fails the start. */
  async start(): Promise<void> {
    try {
      await this.connect()
    } catch (error) {
      throw new Error(`cannot connect to ${brokerWhere(this.options.url)}: ${(error as Error).message}`, {cause: error})
    }
  }

  private connect(): Promise<void> {
    this.connecting ??= this.open().finally(() => (this.connecting = undefined))
    return this.connecting
  }

  private async open(): Promise<void> {
    const tls = this.options.url.startsWith('amqps:') && this.options.ca ? {ca: [this.options.ca]} : {}
    // AMQP heartbeats every 5 s: a broker that went away unannounced is noticed within seconds.
    const url = /[?&]heartbeat=/.test(this.options.url)
      ? this.options.url
      : `${this.options.url}${this.options.url.includes('?') ? '&' : '?'}heartbeat=5`
    const connection = await amqp.connect(url, {...tls, timeout: 10_000})
    let failed: Error | undefined
    connection.on('error', (error: Error) => (failed = error))
    connection.on('close', () => this.lost(connection, failed))
    try {
      const publisher = await connection.createConfirmChannel()
      const consumer = await connection.createChannel()
      // A channel error (a refused declaration, a broker-side close) ends the connection: it starts over whole.
      for (const channel of [publisher, consumer]) {
        channel.on('error', (error: Error) => (failed = error))
        channel.on('close', () => void connection.close().catch(() => {}))
      }
      await consumer.prefetch(512)
      this.connection = connection
      this.publisher = publisher
      this.consumer = consumer
      this.consumers.clear()
      for (const topology of this.topologies.values()) await this.declare(topology)
    } catch (error) {
      await connection.close().catch(() => {})
      throw error
    }
    this.backoffMs = 250
    this.isUp = true
    this.events.up()
  }

  private lost(connection: ChannelModel, error?: Error): void {
    if (this.connection !== connection && this.connection !== undefined) return
    const wasUp = this.isUp
    this.isUp = false
    this.connection = this.publisher = this.consumer = undefined
    if (wasUp) this.events.down(error)
    this.scheduleReconnect()
  }

  private scheduleReconnect(): void {
    if (this.closed || this.timer) return
    this.timer = setTimeout(() => {
      this.timer = undefined
      this.connect().catch((error: unknown) => {
        this.log(`reconnecting to ${brokerWhere(this.options.url)} failed; trying again`, error)
        this.backoffMs = Math.min(this.backoffMs * 2, MAX_BACKOFF_MS)
        this.scheduleReconnect()
      })
    }, this.backoffMs)
  }

  private async declare(topology: Topology): Promise<void> {
    const {publisher, consumer} = this
    if (!publisher || !consumer) return
    const exchange = exchangeName(topology.deployment)
    const queue = queueName(topology.deployment, topology.site)
    await publisher.assertExchange(exchange, 'topic', {durable: true})
    await consumer.assertQueue(queue, {durable: true})
    for (const peer of topology.peers) await consumer.bindQueue(queue, exchange, `${peer}.#`)
    if (this.consumers.has(topology.deployment)) return
    // Taken before the await: a declaration running at the same time does not consume twice.
    this.consumers.set(topology.deployment, '')
    const {consumerTag} = await consumer.consume(queue, (message) => {
      if (!message) return
      let acked = false
      this.events.deliver(topology.deployment, message, () => {
        // Twice would close the channel. After a reconnect the tag belongs to a closed channel: the broker redelivers, the apply skips it.
        if (acked || this.consumer !== consumer) return
        acked = true
        try {
          consumer.ack(message)
        } catch {
          // The channel is closing (shutdown, a lost connection): not acknowledged, so the broker
          // redelivers it and the apply skips it. Never a crash.
        }
      })
    })
    this.consumers.set(topology.deployment, consumerTag)
  }

  /** Declare (again) a deployment's exchange, queue and bindings, and consume its queue. */
  async ensure(topology: Topology): Promise<void> {
    this.topologies.set(topology.deployment, topology)
    if (this.isUp) await this.declare(topology)
  }

  /** Stop consuming a deployment; its queue is deleted (nothing will read it again). */
  async drop(deployment: string): Promise<void> {
    const topology = this.topologies.get(deployment)
    this.topologies.delete(deployment)
    const tag = this.consumers.get(deployment)
    this.consumers.delete(deployment)
    if (!topology || !this.consumer) return
    if (tag) await this.consumer.cancel(tag)
    await this.consumer.deleteQueue(queueName(deployment, topology.site))
  }

  /** Publish persistently; resolves when the broker confirms (it holds the message), rejects otherwise. */
  publish(deployment: string, routingKey: string, body: Buffer, signature: Buffer): Promise<void> {
    const publisher = this.publisher
    if (!publisher || !this.isUp) return Promise.reject(new Error('the broker connection is down'))
    return new Promise((resolve, reject) => {
      try {
        publisher.publish(
          exchangeName(deployment),
          routingKey,
          body,
          {
            persistent: true,
            contentType: 'application/json',
            headers: {'x-nodeset-signature': signature.toString('base64')},
          },
          (error: unknown) => (error ? reject(error instanceof Error ? error : new Error(String(error))) : resolve()),
        )
      } catch (error) {
        reject(error as Error)
      }
    })
  }

  async close(): Promise<void> {
    this.closed = true
    clearTimeout(this.timer)
    await this.connecting?.catch(() => {})
    const connection = this.connection
    this.isUp = false
    this.connection = undefined
    await connection?.close().catch(() => {})
  }
}

/**
 * What a server knows of each federated deployment it holds: its keys, how far it has published, and
 * per peer site what it heard last (heartbeat, lag, applied count, whether a catch-up is due), with
 * the refused messages counted. In memory: a restart starts the counters over and asks every peer
 * for a catch-up.
 */
import type {FederationLinkStatus, FederationStatus} from '../protocol.js'
import type {SiteKeys} from './keys.js'

export interface PeerState {
  applied: number
  lastHeartbeatAt?: number
  /** How often the peer says it sends heartbeats. */
  intervalMs?: number
  /** Delivery time of the latest heartbeat or message (ms). */
  lagMs?: number
  /** A gap, a restart or a heartbeat ahead of what was applied: a snapshot is wanted. */
  needCatchup: boolean
  /** Since when this server has known it is behind. */
  behindSince?: number
  askedAt: number
}

export class FederatedDeployment {
  /** The highest sequence handed to the broker on the current connection. */
  published = 0
  confirmed = 0
  dropping = false
  snapshotWanted = false
  readonly peers = new Map<string, PeerState>()
  readonly refused = {badSignature: 0, notOwner: 0, replayed: 0}

  constructor(
    readonly name: string,
    public keys: SiteKeys,
  ) {
    this.setPeers(keys)
  }

  setPeers(keys: SiteKeys): void {
    this.keys = keys
    for (const site of keys.peers.keys())
      if (!this.peers.has(site)) this.peers.set(site, {applied: 0, needCatchup: true, askedAt: 0})
    for (const site of [...this.peers.keys()]) if (!keys.peers.has(site)) this.peers.delete(site)
  }

  behind(site: string, now: number): void {
    const peer = this.peers.get(site)
    if (!peer) return
    peer.needCatchup = true
    peer.behindSince ??= now
  }

  caughtUp(site: string): void {
    const peer = this.peers.get(site)
    if (!peer) return
    peer.needCatchup = false
    peer.behindSince = undefined
  }

  heard(site: string, sentAt: number, now: number, heartbeat?: {intervalMs?: number}): void {
    const peer = this.peers.get(site)
    if (!peer) return
    peer.lagMs = Math.max(0, now - sentAt)
    if (!heartbeat) return
    peer.lastHeartbeatAt = now
    if (heartbeat.intervalMs !== undefined) peer.intervalMs = heartbeat.intervalMs
  }

  status(brokerUp: boolean, heartbeatMs: number, now: number): FederationStatus {
    const links: FederationLinkStatus[] = [...this.peers].map(([site, peer]) => {
      const fresh =
        peer.lastHeartbeatAt !== undefined && now - peer.lastHeartbeatAt <= 3 * (peer.intervalMs ?? heartbeatMs)
      const gap = peer.behindSince === undefined ? 0 : now - peer.behindSince
      const lag = peer.lagMs === undefined && gap === 0 ? undefined : Math.max(peer.lagMs ?? 0, gap)
      return {
        site,
        state: brokerUp && fresh ? 'up' : 'down',
        ...(peer.lastHeartbeatAt === undefined ? {} : {lastHeartbeatAt: new Date(peer.lastHeartbeatAt).toISOString()}),
        ...(lag === undefined ? {} : {lagMs: lag}),
        applied: peer.applied,
      }
    })
    return {site: this.keys.site, links, refused: {...this.refused}}
  }
}

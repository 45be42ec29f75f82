/**
 * The federation's cryptography, node:crypto only. Every message is signed by its site (Ed25519), so a
 * broker user or a peer cannot speak for another site; secret outputs are sealed with the deployment's
 * seal key (AES-256-GCM, a fresh 96-bit nonce each time, the message's context as associated data), so
 * the broker and its federation links carry only ciphertext.
 */
import {
  createCipheriv,
  createDecipheriv,
  createPrivateKey,
  createPublicKey,
  type KeyObject,
  randomBytes,
} from 'node:crypto'
import {sign, verify} from 'node:crypto'

/** The keys of one site's server for one deployment, parsed. */
export interface SiteKeys {
  site: string
  signing: KeyObject
  peers: Map<string, KeyObject>
  seal: Buffer
}

/** Parse and check the keys of a registration; the message says which one is wrong, never its value. */
export function parseKeys(spec: {
  site: string
  signingKey: string
  peers: Record<string, string>
  sealKey: string
}): SiteKeys {
  let signing: KeyObject
  try {
    signing = createPrivateKey(spec.signingKey)
  } catch {
    throw new Error('federation.signingKey is not a private key in PEM (PKCS#8)')
  }
  if (signing.asymmetricKeyType !== 'ed25519')
    throw new Error(`federation.signingKey must be an Ed25519 key, not ${signing.asymmetricKeyType}`)
  const peers = new Map<string, KeyObject>()
  for (const [site, pem] of Object.entries(spec.peers)) {
    if (site === spec.site) throw new Error(`federation.peers names this server's own site ${site}`)
    let key: KeyObject
    try {
      key = createPublicKey(pem)
    } catch {
      throw new Error(`federation.peers.${site} is not a public key in PEM (SPKI)`)
    }
    if (key.type !== 'public' || key.asymmetricKeyType !== 'ed25519')
      throw new Error(`federation.peers.${site} must be an Ed25519 public key`)
    peers.set(site, key)
  }
  const seal = /^[A-Za-z0-9+/]{43}=$/.test(spec.sealKey) ? Buffer.from(spec.sealKey, 'base64') : undefined
  if (!seal || seal.length !== 32) throw new Error('federation.sealKey must be base64 of 32 bytes')
  return {site: spec.site, signing, peers, seal}
}

export function signBody(body: Buffer, key: KeyObject): Buffer {
  return sign(null, body, key)
}

export function verifyBody(body: Buffer, signature: Buffer, key: KeyObject): boolean {
  try {
    return verify(null, body, key, signature)
  } catch {
    return false
  }
}

const NONCE = 12
const TAG = 16

/** Seal `plain` for `context` (which the opener must name the same): base64 of nonce, ciphertext and tag. */
export function seal(plain: string, key: Buffer, context: string): string {
  const nonce = randomBytes(NONCE)
  const cipher = createCipheriv('aes-256-gcm', key, nonce)
  cipher.setAAD(Buffer.from(context))
  const sealed = Buffer.concat([nonce, cipher.update(plain, 'utf8'), cipher.final(), cipher.getAuthTag()])
  return sealed.toString('base64')
}

/** Open what `seal` made; undefined when the key, the context or the bytes are not the sealer's. */
export function open(sealed: string, key: Buffer, context: string): string | undefined {
  const bytes = Buffer.from(sealed, 'base64')
  if (bytes.length < NONCE + TAG) return undefined
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, bytes.subarray(0, NONCE))
    decipher.setAAD(Buffer.from(context))
    decipher.setAuthTag(bytes.subarray(bytes.length - TAG))
    return Buffer.concat([decipher.update(bytes.subarray(NONCE, bytes.length - TAG)), decipher.final()]).toString(
      'utf8',
    )
  } catch {
    return undefined
  }
}

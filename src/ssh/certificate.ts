/**
 * Logging in with an OpenSSH user certificate (CertificateFile, or a `KEY-cert.pub` beside a key),
 * which the ssh2 library cannot do by itself: a certificate is offered under its own algorithm
 * (`ssh-ed25519-cert-v01@openssh.com`) while the signature inside names the plain one (`ssh-ed25519`),
 * and ssh2 writes one name for both. `certificateKey` makes the key ssh2 offers for a certificate;
 * `enableCertificates` lets one client's protocol send the request for it as OpenSSH does
 * (PROTOCOL.certkeys), leaving every other authentication to ssh2.
 */
import type {Client} from 'ssh2'

const CERTIFIED = Symbol('nodeset certificate')

/** Per certificate type: the algorithm it is offered under, the signature's name and its hash. */
const CERT_ALGORITHMS: Record<string, {offer: string; signature: string; hash?: string; fields: number}> = {
  'ssh-ed25519-cert-v01@openssh.com': {offer: 'ssh-ed25519-cert-v01@openssh.com', signature: 'ssh-ed25519', fields: 1},
  'ssh-rsa-cert-v01@openssh.com': {
    offer: 'rsa-sha2-512-cert-v01@openssh.com',
    signature: 'rsa-sha2-512',
    hash: 'sha512',
    fields: 2,
  },
  'ecdsa-sha2-nistp256-cert-v01@openssh.com': {
    offer: 'ecdsa-sha2-nistp256-cert-v01@openssh.com',
    signature: 'ecdsa-sha2-nistp256',
    hash: 'sha256',
    fields: 2,
  },
  'ecdsa-sha2-nistp384-cert-v01@openssh.com': {
    offer: 'ecdsa-sha2-nistp384-cert-v01@openssh.com',
    signature: 'ecdsa-sha2-nistp384',
    hash: 'sha384',
    fields: 2,
  },
  'ecdsa-sha2-nistp521-cert-v01@openssh.com': {
    offer: 'ecdsa-sha2-nistp521-cert-v01@openssh.com',
    signature: 'ecdsa-sha2-nistp521',
    hash: 'sha512',
    fields: 2,
  },
}

/** The part of an ssh2 private key this uses. */
interface PrivateKey {
  type: string
  getPublicSSH(): Buffer
  sign(data: Buffer, hash?: string): Buffer | Error
}

interface Certified {
  blob: Buffer
  offer: string
  signature: string
  sign(data: Buffer): Buffer | Error
}

const string = (value: Buffer | string): Buffer => {
  const bytes = typeof value === 'string' ? Buffer.from(value) : value
  const length = Buffer.alloc(4)
  length.writeUInt32BE(bytes.length)
  return Buffer.concat([length, bytes])
}

/** The SSH strings at the start of a wire-format blob. */
function readStrings(blob: Buffer, count: number): Buffer[] | undefined {
  const out: Buffer[] = []
  let at = 0
  for (let i = 0; i < count; i++) {
    if (at + 4 > blob.length) return undefined
    const length = blob.readUInt32BE(at)
    if (at + 4 + length > blob.length) return undefined
    out.push(blob.subarray(at + 4, at + 4 + length))
    at += 4 + length
  }
  return out
}

/** An ECDSA signature from DER (as OpenSSL makes it) to SSH's mpint r, mpint s. */
function ecdsaSignature(der: Buffer): Buffer {
  const integers: Buffer[] = []
  let at = der[1] & 0x80 ? 2 + (der[1] & 0x7f) : 2
  while (at < der.length && integers.length < 2) {
    const length = der[at + 1]
    let value = der.subarray(at + 2, at + 2 + length)
    while (value.length > 1 && value[0] === 0 && !(value[1] & 0x80)) value = value.subarray(1)
    integers.push(value)
    at += 2 + length
  }
  return Buffer.concat(integers.map((v) => string(v)))
}

/**
 * The key ssh2 offers for a certificate (`TYPE-cert-v01@openssh.com BASE64` as in a `-cert.pub`
 * file), signing with `key`; an Error when the text is no certificate or certifies another key.
 */
export function certificateKey(text: string, key: object): object | Error {
  const [type, base64] = text.trim().split(/\s+/)
  const algorithms = CERT_ALGORITHMS[type ?? '']
  if (!algorithms || !base64) return new Error('not an OpenSSH user certificate')
  const blob = Buffer.from(base64, 'base64')
  const fields = readStrings(blob, 2 + algorithms.fields)
  if (!fields || fields[0].toString() !== type) return new Error('a malformed certificate')
  const privateKey = key as PrivateKey
  const plain = Buffer.concat([
    string(algorithms.signature.startsWith('rsa') ? 'ssh-rsa' : algorithms.signature),
    ...fields.slice(2).map((f) => string(f)),
  ])
  if (typeof privateKey.getPublicSSH !== 'function' || !plain.equals(privateKey.getPublicSSH()))
    return new Error('the certificate is for another key')
  const certified: Certified = {
    blob,
    offer: algorithms.offer,
    signature: algorithms.signature,
    sign(data) {
      const signed = privateKey.sign(data, algorithms.hash)
      if (signed instanceof Error) return signed
      return algorithms.signature.startsWith('ecdsa') ? ecdsaSignature(signed) : signed
    },
  }
  // ssh2 takes it as the private key it stands for (so it offers it as a public key method) and signs
  // with its `sign`; the request itself is sent by enableCertificates.
  return Object.assign(Object.create(key), {
    type: algorithms.offer,
    sign: (data: Buffer) => certified.sign(data),
    [CERTIFIED]: certified,
  })
}

interface ProtocolInternals {
  authPK(username: string, key: unknown, keyAlgo?: unknown, cbSign?: unknown): void
  _kex?: {sessionID: Buffer}
  _kexinit?: unknown
  _queue?: Buffer[]
  _authsQueue: string[]
  _cipher: {encrypt(packet: Buffer): void}
  _packetRW: {write: {alloc(n: number): Buffer; allocStart: number; finalize(packet: Buffer): Buffer}}
}

/** Whether this ssh2 exposes what sending a certificate request needs. */
function usable(proto: Partial<ProtocolInternals> | undefined): proto is ProtocolInternals {
  return (
    typeof proto?.authPK === 'function' &&
    Array.isArray(proto._authsQueue) &&
    typeof proto._cipher?.encrypt === 'function' &&
    typeof proto._packetRW?.write?.alloc === 'function' &&
    typeof proto._packetRW.write.finalize === 'function'
  )
}

/**
 * Let a client (after `connect()`) send certificate requests. Returns false when this ssh2 does not
 * expose its protocol as expected; its certificates are then refused by the server like any key.
 */
export function enableCertificates(client: Client): boolean {
  const proto = (client as unknown as {_protocol?: Partial<ProtocolInternals>})._protocol
  if (!usable(proto)) return false
  const original = proto.authPK.bind(proto)
  proto.authPK = (username, key, keyAlgo, cbSign) => {
    const certified = (key as {[CERTIFIED]?: Certified} | undefined)?.[CERTIFIED]
    if (!certified) return original(username, key, keyAlgo, cbSign)
    const sign = typeof keyAlgo === 'function' ? keyAlgo : cbSign
    const request = (signed: boolean) =>
      Buffer.concat([
        Buffer.from([50]), // USERAUTH_REQUEST
        string(username),
        string('ssh-connection'),
        string('publickey'),
        Buffer.from([signed ? 1 : 0]),
        string(certified.offer),
        string(certified.blob),
      ])
    const send = (payload: Buffer) => {
      const packet = proto._packetRW.write.alloc(payload.length)
      packet.set(payload, proto._packetRW.write.allocStart)
      proto._authsQueue.push('publickey')
      const finalized = proto._packetRW.write.finalize(packet)
      // As ssh2 sends: held back while keys are being exchanged again.
      if (proto._kexinit !== undefined) (proto._queue ??= []).push(finalized)
      else proto._cipher.encrypt(finalized)
    }
    if (typeof sign !== 'function') return send(request(false))
    const data = Buffer.concat([string(proto._kex!.sessionID), request(true)])
    // ssh2's callback signs with the key it holds: the certificate's `sign` above.
    ;(sign as (data: Buffer, cb: (signature: Buffer) => void) => void)(data, (signature) => {
      send(Buffer.concat([request(true), string(Buffer.concat([string(certified.signature), string(signature)]))]))
    })
  }
  return true
}

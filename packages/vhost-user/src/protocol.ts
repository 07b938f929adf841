/**
 * The vhost-user wire format (QEMU docs/interop/vhost-user.rst), back-end
 * side. Every message is a 12-byte header and a payload, in host byte order
 * (little-endian on x86-64); fds travel as SCM_RIGHTS ancillary data.
 *
 *   +----------+----------+----------+----------------------+
 *   | request  | flags    | size     | payload (size bytes) |
 *   | u32      | u32      | u32      |                      |
 *   +----------+----------+----------+----------------------+
 *   flags: bits 0-1 version (1), bit 2 reply, bit 3 need_reply
 *
 * Payloads used by a block back-end:
 *   u64                          features, protocol features, queue num, acks
 *   vring state   {index u32, num u32}
 *   vring addr    {index u32, flags u32, desc u64, used u64, avail u64, log u64}
 *   memory table  {nregions u32, padding u32, region[nregions]}
 *                 region = {guest_phys u64, size u64, user_addr u64, mmap_offset u64}
 *   config        {offset u32, size u32, flags u32, bytes[size]}
 *
 * Decoders check sizes exactly and throw {@link VhostUserProtocolError}; the
 * connection is then closed (the front-end reconnects or gives up).
 */

export const HEADER_SIZE = 12;
/** Largest payload we accept (the largest real one, GET/SET_CONFIG, is 12 + 256). */
export const MAX_PAYLOAD = 4096;
/** Memory regions in SET_MEM_TABLE (VHOST_MEMORY_BASELINE_NREGIONS). */
export const MAX_MEM_REGIONS = 8;
/** fds one message may carry. */
export const MAX_FDS = MAX_MEM_REGIONS;

export const Request = {
  GET_FEATURES: 1,
  SET_FEATURES: 2,
  SET_OWNER: 3,
  RESET_OWNER: 4,
  SET_MEM_TABLE: 5,
  SET_LOG_BASE: 6,
  SET_LOG_FD: 7,
  SET_VRING_NUM: 8,
  SET_VRING_ADDR: 9,
  SET_VRING_BASE: 10,
  GET_VRING_BASE: 11,
  SET_VRING_KICK: 12,
  SET_VRING_CALL: 13,
  SET_VRING_ERR: 14,
  GET_PROTOCOL_FEATURES: 15,
  SET_PROTOCOL_FEATURES: 16,
  GET_QUEUE_NUM: 17,
  SET_VRING_ENABLE: 18,
  SEND_RARP: 19,
  NET_SET_MTU: 20,
  SET_SLAVE_REQ_FD: 21,
  IOTLB_MSG: 22,
  SET_VRING_ENDIAN: 23,
  GET_CONFIG: 24,
  SET_CONFIG: 25,
  CREATE_CRYPTO_SESSION: 26,
  CLOSE_CRYPTO_SESSION: 27,
  POSTCOPY_ADVISE: 28,
  POSTCOPY_LISTEN: 29,
  POSTCOPY_END: 30,
  GET_INFLIGHT_FD: 31,
  SET_INFLIGHT_FD: 32,
  GPU_SET_SOCKET: 33,
  RESET_DEVICE: 34,
  VRING_KICK: 35,
  GET_MAX_MEM_SLOTS: 36,
  ADD_MEM_REG: 37,
  REM_MEM_REG: 38,
  SET_STATUS: 39,
  GET_STATUS: 40,
} as const;

const REQUEST_NAMES = new Map<number, string>(Object.entries(Request).map(([k, v]) => [v, k]));

/** "SET_VRING_ADDR" for 9, "REQUEST_99" for an unknown number. */
export function requestName(r: number): string {
  return REQUEST_NAMES.get(r) ?? `REQUEST_${r}`;
}

export const Flag = {
  VERSION: 0x1,
  VERSION_MASK: 0x3,
  REPLY: 0x4,
  NEED_REPLY: 0x8,
} as const;

/** The feature bit (in GET/SET_FEATURES) that says "protocol features exist". */
export const VHOST_USER_F_PROTOCOL_FEATURES = 30;
/** Migration dirty logging (we do not offer it). */
export const VHOST_F_LOG_ALL = 26;

export const ProtocolFeature = {
  MQ: 0,
  LOG_SHMFD: 1,
  RARP: 2,
  REPLY_ACK: 3,
  MTU: 4,
  SLAVE_REQ: 5,
  CROSS_ENDIAN: 6,
  CRYPTO_SESSION: 7,
  PAGEFAULT: 8,
  CONFIG: 9,
  SLAVE_SEND_FD: 10,
  HOST_NOTIFIER: 11,
  INFLIGHT_SHMFD: 12,
  RESET_DEVICE: 13,
  INBAND_NOTIFICATIONS: 14,
  CONFIGURE_MEM_SLOTS: 15,
  STATUS: 16,
} as const;

/** What this back-end offers: MQ, REPLY_ACK, CONFIG, RESET_DEVICE. */
export const OFFERED_PROTOCOL_FEATURES =
  (1n << BigInt(ProtocolFeature.MQ)) |
  (1n << BigInt(ProtocolFeature.REPLY_ACK)) |
  (1n << BigInt(ProtocolFeature.CONFIG)) |
  (1n << BigInt(ProtocolFeature.RESET_DEVICE));

/** SET_VRING_KICK/CALL/ERR payload: bits 0-7 the ring index, bit 8 "no fd". */
export const VRING_IDX_MASK = 0xff;
export const VRING_NOFD_MASK = 0x100;
/** SET_VRING_ADDR flags: log used-ring writes (migration). */
export const VHOST_VRING_F_LOG = 0x1;

/** SET_CONFIG flags. */
export const ConfigFlag = { WRITABLE: 0, MIGRATION: 1 } as const;
export const CONFIG_HDR_SIZE = 12;
/** virtio config space is at most 256 bytes. */
export const MAX_CONFIG_SIZE = 256;

/** A message the front-end sent (or, in tests, the back-end's reply). */
export interface VhostUserMessage {
  request: number;
  flags: number;
  payload: Uint8Array;
  /** fds that arrived with it; whoever handles the message owns (closes or keeps) them. */
  fds: number[];
}

/** The front-end broke the protocol: the connection must be closed. */
export class VhostUserProtocolError extends Error {
  override readonly name = "VhostUserProtocolError";
}

export interface VringState {
  index: number;
  num: number;
}

export interface VringAddr {
  index: number;
  flags: number;
  /** User (front-end virtual) addresses, unless VIRTIO_F_IOMMU_PLATFORM (which we do not offer). */
  desc: bigint;
  used: bigint;
  avail: bigint;
  log: bigint;
}

export interface MemRegionDesc {
  guestPhysAddr: bigint;
  size: bigint;
  userAddr: bigint;
  mmapOffset: bigint;
}

export interface ConfigPayload {
  offset: number;
  size: number;
  flags: number;
  bytes: Uint8Array;
}

function view(p: Uint8Array): DataView {
  return new DataView(p.buffer, p.byteOffset, p.byteLength);
}

function expectSize(req: number, p: Uint8Array, size: number): void {
  if (p.byteLength !== size)
    throw new VhostUserProtocolError(
      `${requestName(req)}: payload of ${p.byteLength} bytes, expected ${size}`,
    );
}

export function encodeHeader(request: number, flags: number, size: number): Uint8Array {
  const h = new Uint8Array(HEADER_SIZE);
  const v = view(h);
  v.setUint32(0, request, true);
  v.setUint32(4, flags, true);
  v.setUint32(8, size, true);
  return h;
}

export function decodeHeader(h: Uint8Array): { request: number; flags: number; size: number } {
  const v = view(h);
  return { request: v.getUint32(0, true), flags: v.getUint32(4, true), size: v.getUint32(8, true) };
}

/** Header + payload as one buffer (what goes on the wire). */
export function encodeMessage(
  request: number,
  flags: number,
  payload: Uint8Array = new Uint8Array(0),
): Uint8Array {
  const out = new Uint8Array(HEADER_SIZE + payload.byteLength);
  out.set(encodeHeader(request, flags, payload.byteLength), 0);
  out.set(payload, HEADER_SIZE);
  return out;
}

export function encodeU64(v: bigint | number): Uint8Array {
  const p = new Uint8Array(8);
  view(p).setBigUint64(0, BigInt(v), true);
  return p;
}

export function decodeU64(req: number, p: Uint8Array): bigint {
  expectSize(req, p, 8);
  return view(p).getBigUint64(0, true);
}

export function encodeVringState(s: VringState): Uint8Array {
  const p = new Uint8Array(8);
  const v = view(p);
  v.setUint32(0, s.index, true);
  v.setUint32(4, s.num, true);
  return p;
}

export function decodeVringState(req: number, p: Uint8Array): VringState {
  expectSize(req, p, 8);
  const v = view(p);
  return { index: v.getUint32(0, true), num: v.getUint32(4, true) };
}

export function encodeVringAddr(a: VringAddr): Uint8Array {
  const p = new Uint8Array(40);
  const v = view(p);
  v.setUint32(0, a.index, true);
  v.setUint32(4, a.flags, true);
  v.setBigUint64(8, a.desc, true);
  v.setBigUint64(16, a.used, true);
  v.setBigUint64(24, a.avail, true);
  v.setBigUint64(32, a.log, true);
  return p;
}

export function decodeVringAddr(req: number, p: Uint8Array): VringAddr {
  expectSize(req, p, 40);
  const v = view(p);
  return {
    index: v.getUint32(0, true),
    flags: v.getUint32(4, true),
    desc: v.getBigUint64(8, true),
    used: v.getBigUint64(16, true),
    avail: v.getBigUint64(24, true),
    log: v.getBigUint64(32, true),
  };
}

const REGION_SIZE = 32;

export function encodeMemTable(regions: MemRegionDesc[]): Uint8Array {
  const p = new Uint8Array(8 + REGION_SIZE * regions.length);
  const v = view(p);
  v.setUint32(0, regions.length, true);
  regions.forEach((r, i) => {
    const o = 8 + i * REGION_SIZE;
    v.setBigUint64(o, r.guestPhysAddr, true);
    v.setBigUint64(o + 8, r.size, true);
    v.setBigUint64(o + 16, r.userAddr, true);
    v.setBigUint64(o + 24, r.mmapOffset, true);
  });
  return p;
}

/**
 * SET_MEM_TABLE: 1..8 regions. QEMU sends exactly 8 + 32 * n bytes; a
 * front-end that sends the whole 8-region struct is accepted too.
 */
export function decodeMemTable(req: number, p: Uint8Array): MemRegionDesc[] {
  if (p.byteLength < 8)
    throw new VhostUserProtocolError(`${requestName(req)}: payload of ${p.byteLength} bytes`);
  const v = view(p);
  const n = v.getUint32(0, true);
  if (n === 0 || n > MAX_MEM_REGIONS)
    throw new VhostUserProtocolError(`${requestName(req)}: ${n} regions (1..${MAX_MEM_REGIONS} allowed)`);
  if (p.byteLength !== 8 + REGION_SIZE * n && p.byteLength !== 8 + REGION_SIZE * MAX_MEM_REGIONS)
    throw new VhostUserProtocolError(
      `${requestName(req)}: payload of ${p.byteLength} bytes for ${n} regions (expected ${8 + REGION_SIZE * n})`,
    );
  const out: MemRegionDesc[] = [];
  for (let i = 0; i < n; i++) {
    const o = 8 + i * REGION_SIZE;
    out.push({
      guestPhysAddr: v.getBigUint64(o, true),
      size: v.getBigUint64(o + 8, true),
      userAddr: v.getBigUint64(o + 16, true),
      mmapOffset: v.getBigUint64(o + 24, true),
    });
  }
  return out;
}

export function encodeConfig(c: ConfigPayload): Uint8Array {
  const p = new Uint8Array(CONFIG_HDR_SIZE + c.bytes.byteLength);
  const v = view(p);
  v.setUint32(0, c.offset, true);
  v.setUint32(4, c.size, true);
  v.setUint32(8, c.flags, true);
  p.set(c.bytes, CONFIG_HDR_SIZE);
  return p;
}

export function decodeConfig(req: number, p: Uint8Array): ConfigPayload {
  if (p.byteLength < CONFIG_HDR_SIZE)
    throw new VhostUserProtocolError(`${requestName(req)}: payload of ${p.byteLength} bytes`);
  const v = view(p);
  const offset = v.getUint32(0, true);
  const size = v.getUint32(4, true);
  const flags = v.getUint32(8, true);
  if (size > MAX_CONFIG_SIZE || offset > MAX_CONFIG_SIZE || offset + size > MAX_CONFIG_SIZE)
    throw new VhostUserProtocolError(
      `${requestName(req)}: config range [${offset}, +${size}) past 256 bytes`,
    );
  if (p.byteLength !== CONFIG_HDR_SIZE + size)
    throw new VhostUserProtocolError(
      `${requestName(req)}: payload of ${p.byteLength} bytes for a ${size}-byte config access`,
    );
  return { offset, size, flags, bytes: p.slice(CONFIG_HDR_SIZE) };
}

/** A 64-bit address/size as a JS number, or a protocol error when it is >= 2^53. */
export function toSafeNumber(what: string, v: bigint): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER))
    throw new VhostUserProtocolError(`${what} 0x${v.toString(16)} >= 2^53`);
  return Number(v);
}

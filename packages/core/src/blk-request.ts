/**
 * virtio-blk requests: parse a popped descriptor chain into a request the
 * engine can execute, and write the status byte when it completes.
 *
 *   device-readable                         device-writable
 *   +-------------------+----------------+  +----------------+--------+
 *   | virtio_blk_outhdr | data (OUT,     |  | data (IN,      | status |
 *   | le32 type         |  DISCARD,      |  |  GET_ID)       |  u8    |
 *   | le32 ioprio       |  WRITE_ZEROES) |  |                |        |
 *   | le64 sector       |                |  |                |        |
 *   +-------------------+----------------+  +----------------+--------+
 *
 * With VERSION_1 the driver may frame this any way it likes (the header and
 * the data may share a descriptor, the status may be the last byte of the
 * data's descriptor), so the parser carves byte ranges out of the segments
 * instead of assuming one descriptor per part.
 *
 * Two kinds of failure:
 * - the chain cannot be a request at all (header shorter than 16 bytes, no
 *   writable status byte): BlkProtocolError, the device needs a reset;
 * - a well-formed request the device refuses: completes with IOERR/UNSUPP.
 */
import {
  BLK_DWZ_SEGMENT_SIZE,
  BLK_OUTHDR_SIZE,
  BLK_WRITE_ZEROES_FLAG_UNMAP,
  BlkStatus,
  BlkType,
} from "./blk-constants.js";
import type { DescriptorChain } from "./descriptor-chain.js";
import { IoOp, type IoRequest } from "./engine.js";
import { BlkProtocolError } from "./errors.js";
import type { GuestMemory } from "./guest-memory.js";

/** What the parser needs to know about the device and what was negotiated. */
export interface BlkParams {
  capacityBytes: number;
  logicalBlockSize: number;
  readOnly: boolean;
  /** Max data segments per request (seg_max). */
  segMax: number;
  /** DISCARD / WRITE_ZEROES negotiated. */
  discard: boolean;
  writeZeroes: boolean;
  maxDiscardSectors: number;
  maxWriteZeroesSectors: number;
  /** GET_ID answer: 20 bytes, NUL padded. */
  serial: Uint8Array;
}

/** What the request needs from here on. */
export const BlkAction = {
  /** Give it to the engine. */
  IO: 0,
  /** Already answered (status set, data written if any): complete now. */
  DONE: 1,
} as const;

/**
 * A parsed request. Also the {@link IoRequest} the engine executes: its
 * segments are the data part of the chain, in guest memory.
 */
export class BlkRequest implements IoRequest {
  /** Queue (device-local index) and head it came from. */
  queue = 0;
  head = 0;
  type = 0;
  /** The header's sector (as a number; values past 2^53 are rejected). */
  sector = 0;
  action: number = BlkAction.DONE;
  status: number = BlkStatus.OK;
  // IoRequest
  op = 0;
  tag = 0;
  offset = 0;
  length = 0;
  segCount = 0;
  segRegion: Int32Array;
  segOffset: Float64Array;
  segLen: Uint32Array;
  /** Where the status byte goes. */
  statusRegion = 0;
  statusOffset = 0;
  /** Bytes the device wrote into the chain (used.len), status byte included. */
  usedLen = 0;
  /** Time it was popped (ns, for latency counters; 0 if unused). */
  startNs = 0;

  constructor(capacity = 4) {
    this.segRegion = new Int32Array(capacity);
    this.segOffset = new Float64Array(capacity);
    this.segLen = new Uint32Array(capacity);
  }

  private grow(n: number): void {
    let cap = this.segLen.length;
    if (n <= cap) return;
    while (cap < n) cap *= 2;
    const r = new Int32Array(cap);
    r.set(this.segRegion);
    const o = new Float64Array(cap);
    o.set(this.segOffset);
    const l = new Uint32Array(cap);
    l.set(this.segLen);
    this.segRegion = r;
    this.segOffset = o;
    this.segLen = l;
  }

  /**
   * Take bytes [skip, skip+len) of segments [from, to) of the chain as this
   * request's data segments.
   */
  carve(chain: DescriptorChain, from: number, to: number, skip: number, len: number): void {
    let n = 0;
    let left = len;
    for (let i = from; i < to && left > 0; i++) {
      const sl = chain.len[i]!;
      if (skip >= sl) {
        skip -= sl;
        continue;
      }
      const take = Math.min(sl - skip, left);
      if (n === this.segLen.length) this.grow(n + 1);
      this.segRegion[n] = chain.region[i]!;
      this.segOffset[n] = chain.offset[i]! + skip;
      this.segLen[n] = take;
      n++;
      left -= take;
      skip = 0;
    }
    this.segCount = n;
  }
}

const TWO_32 = 0x1_0000_0000;
const scratch = new Uint8Array(BLK_DWZ_SEGMENT_SIZE);
const scratchView = new DataView(scratch.buffer);

/** Copy n bytes starting `skip` bytes into segments [from, to) of the chain. Returns bytes copied. */
function gather(
  mem: GuestMemory,
  chain: DescriptorChain,
  from: number,
  to: number,
  skip: number,
  dst: Uint8Array,
  n: number,
): number {
  let got = 0;
  for (let i = from; i < to && got < n; i++) {
    const sl = chain.len[i]!;
    if (skip >= sl) {
      skip -= sl;
      continue;
    }
    const take = Math.min(sl - skip, n - got);
    const r = mem.regions[chain.region[i]!]!;
    const o = chain.offset[i]! + skip;
    dst.set(r.bytes.subarray(o, o + take), got);
    got += take;
    skip = 0;
  }
  return got;
}

/** Write src into the writable data area (segments [from, to)), up to max bytes. Returns bytes written. */
function scatter(
  mem: GuestMemory,
  chain: DescriptorChain,
  from: number,
  to: number,
  src: Uint8Array,
  max: number,
): number {
  let put = 0;
  const n = Math.min(src.length, max);
  for (let i = from; i < to && put < n; i++) {
    const take = Math.min(chain.len[i]!, n - put);
    const r = mem.regions[chain.region[i]!]!;
    const o = chain.offset[i]!;
    r.bytes.set(src.subarray(put, put + take), o);
    put += take;
  }
  return put;
}

/**
 * Parse `chain` into `req`. Throws BlkProtocolError when the chain cannot
 * carry a request (the device then needs a reset). Returns true when the
 * request needs the engine (req.action === BlkAction.IO).
 */
export function parseBlkRequest(
  chain: DescriptorChain,
  mem: GuestMemory,
  p: BlkParams,
  req: BlkRequest,
): boolean {
  const count = chain.count;
  const readable = chain.readable;
  if (chain.readableBytes < BLK_OUTHDR_SIZE)
    throw new BlkProtocolError(
      `head ${chain.head}: request header is ${chain.readableBytes} bytes, needs 16`,
    );
  if (chain.writableBytes < 1) throw new BlkProtocolError(`head ${chain.head}: no writable status byte`);
  req.head = chain.head;
  req.segCount = 0;
  req.length = 0;
  req.offset = 0;

  // Status byte: the last writable byte of the chain.
  const last = count - 1;
  req.statusRegion = chain.region[last]!;
  req.statusOffset = chain.offset[last]! + chain.len[last]! - 1;

  // Header: fast path when the first segment holds it and it is 4-aligned.
  let type: number;
  let secLo: number;
  let secHi: number;
  const r0 = mem.regions[chain.region[0]!]!;
  const o0 = chain.offset[0]!;
  if (chain.len[0]! >= BLK_OUTHDR_SIZE && o0 % 4 === 0 && r0.u32 !== null) {
    const w = o0 / 4;
    type = r0.u32[w]!;
    secLo = r0.u32[w + 2]!;
    secHi = r0.u32[w + 3]!;
  } else {
    gather(mem, chain, 0, readable, 0, scratch, BLK_OUTHDR_SIZE);
    type = scratchView.getUint32(0, true);
    secLo = scratchView.getUint32(8, true);
    secHi = scratchView.getUint32(12, true);
  }
  req.type = type;
  const dataIn = chain.readableBytes - BLK_OUTHDR_SIZE; // driver -> device data
  const dataOut = chain.writableBytes - 1; // device -> driver data
  req.usedLen = 1;
  req.action = BlkAction.DONE;
  req.status = BlkStatus.OK;
  // sector * 512 must stay below 2^53: sector < 2^44, i.e. secHi < 2^12.
  const sectorOk = secHi < 0x1000;
  req.sector = sectorOk ? secHi * TWO_32 + secLo : Number.POSITIVE_INFINITY;

  switch (type) {
    case BlkType.IN:
    case BlkType.OUT: {
      const write = type === BlkType.OUT;
      const len = write ? dataIn : dataOut;
      // Data in the wrong direction: the chain is well formed, the request is not.
      if ((write ? dataOut : dataIn) !== 0) return ioerr(req);
      if (write && p.readOnly) return ioerr(req);
      if (!sectorOk) return ioerr(req);
      const offset = req.sector * 512;
      if (!rangeOk(offset, len, p)) return ioerr(req);
      if (write) req.carve(chain, 0, readable, BLK_OUTHDR_SIZE, len);
      else req.carve(chain, readable, count, 0, len);
      if (req.segCount > p.segMax) return ioerr(req);
      req.op = write ? IoOp.WRITE : IoOp.READ;
      req.offset = offset;
      req.length = len;
      req.action = BlkAction.IO;
      return true;
    }
    case BlkType.FLUSH:
      req.op = IoOp.FLUSH;
      req.action = BlkAction.IO;
      return true;
    case BlkType.GET_ID: {
      if (dataOut < 1) return ioerr(req);
      req.usedLen = 1 + scatter(mem, chain, readable, count, p.serial, Math.min(dataOut, p.serial.length));
      return false;
    }
    case BlkType.DISCARD:
    case BlkType.WRITE_ZEROES: {
      const discard = type === BlkType.DISCARD;
      if (discard ? !p.discard : !p.writeZeroes) return unsupp(req);
      if (dataIn < BLK_DWZ_SEGMENT_SIZE || dataIn % BLK_DWZ_SEGMENT_SIZE !== 0) return ioerr(req);
      // max_discard_seg / max_write_zeroes_seg are 1, as in QEMU.
      if (dataIn !== BLK_DWZ_SEGMENT_SIZE) return unsupp(req);
      gather(mem, chain, 0, readable, BLK_OUTHDR_SIZE, scratch, BLK_DWZ_SEGMENT_SIZE);
      const lo = scratchView.getUint32(0, true);
      const hi = scratchView.getUint32(4, true);
      const nsec = scratchView.getUint32(8, true);
      const flags = scratchView.getUint32(12, true);
      if (discard ? flags !== 0 : (flags & ~BLK_WRITE_ZEROES_FLAG_UNMAP) !== 0) return unsupp(req);
      if (p.readOnly) return ioerr(req);
      if (hi >= 0x1000) return ioerr(req);
      if (nsec > (discard ? p.maxDiscardSectors : p.maxWriteZeroesSectors)) return ioerr(req);
      const offset = (hi * TWO_32 + lo) * 512;
      const len = nsec * 512;
      if (len === 0 || !rangeOk(offset, len, p)) return ioerr(req);
      req.op = discard
        ? IoOp.DISCARD
        : (flags & BLK_WRITE_ZEROES_FLAG_UNMAP) !== 0
          ? IoOp.WRITE_ZEROES_UNMAP
          : IoOp.WRITE_ZEROES;
      req.offset = offset;
      req.length = len;
      req.action = BlkAction.IO;
      return true;
    }
    default:
      // GET_LIFETIME, SECURE_ERASE (not offered) and unknown types.
      return unsupp(req);
  }
}

function rangeOk(offset: number, len: number, p: BlkParams): boolean {
  const bs = p.logicalBlockSize;
  // offset is a double past 2^31: divide instead of `%` (fmod); bs is a power
  // of two, so the division is exact.
  return Math.floor(offset / bs) * bs === offset && len % bs === 0 && offset + len <= p.capacityBytes;
}

function ioerr(req: BlkRequest): false {
  req.status = BlkStatus.IOERR;
  req.action = BlkAction.DONE;
  return false;
}

function unsupp(req: BlkRequest): false {
  req.status = BlkStatus.UNSUPP;
  req.action = BlkAction.DONE;
  return false;
}

/**
 * Turn the engine's result into the request's status and used length:
 * result = bytes moved (READ/WRITE must move exactly `length`), or -errno.
 */
export function finishBlkRequest(req: BlkRequest, result: number): void {
  if (result < 0 || ((req.op === IoOp.READ || req.op === IoOp.WRITE) && result !== req.length)) {
    req.status = BlkStatus.IOERR;
    req.usedLen = 1;
  } else {
    req.status = BlkStatus.OK;
    req.usedLen = req.op === IoOp.READ ? req.length + 1 : 1;
  }
}

/** Write the status byte into guest memory. */
export function writeBlkStatus(req: BlkRequest, mem: GuestMemory): void {
  mem.regions[req.statusRegion]!.bytes[req.statusOffset] = req.status;
}

/** A serial as GET_ID returns it: up to 20 bytes, NUL padded. */
export function encodeSerial(serial: string): Uint8Array {
  const out = new Uint8Array(20);
  const b = new TextEncoder().encode(serial);
  out.set(b.subarray(0, 20));
  return out;
}

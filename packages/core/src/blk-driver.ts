/**
 * The guest's virtio-blk driver, on top of a {@link DriverQueue}: builds
 * request chains (header, data, status) in guest memory and reads back the
 * status. What the bench's jobs, the tests and an in-process VMM use to
 * submit I/O.
 *
 * Per-head scratch slot in guest memory (SLOT_BYTES each, at scratchGpa):
 *   +0  virtio_blk_outhdr (16)   +16 discard/write-zeroes segment (16)
 *   +32 status byte              (rest padding)
 */
import { BlkType } from "./blk-constants.js";
import type { DriverQueue } from "./driver-queue.js";
import type { GuestMemory } from "./guest-memory.js";
import { hi32, lo32 } from "./split-ring.js";

export const BLK_DRIVER_SLOT_BYTES = 64;

export class BlkDriver {
  private readonly u32: Uint32Array;
  private readonly u8: Uint8Array;
  private readonly scratchBase: number; // byte offset of the scratch area in its region
  private readonly gpas = new Float64Array(3);
  private readonly lens = new Uint32Array(3);
  /** After popCompletion(): the status byte, used length and token of that request. */
  lastStatus = 0;
  lastLen = 0;
  lastToken: unknown = undefined;

  /** Bytes of guest memory a driver for a queue of `size` needs at scratchGpa. */
  static scratchBytes(size: number): number {
    return size * BLK_DRIVER_SLOT_BYTES;
  }

  constructor(
    readonly queue: DriverQueue,
    readonly mem: GuestMemory,
    readonly scratchGpa: number,
  ) {
    const bytes = BlkDriver.scratchBytes(queue.size);
    const v = scratchGpa % 16 === 0 ? mem.view32(scratchGpa, bytes) : null;
    if (v === null)
      throw new Error(
        `scratch area 0x${scratchGpa.toString(16)}+${bytes} must be 16-aligned inside guest memory`,
      );
    const region = mem.regions[mem.findRegion(scratchGpa, bytes)]!;
    this.u32 = v.arr;
    this.u8 = region.bytes;
    this.scratchBase = scratchGpa - region.gpa;
  }

  private header(slot: number, type: number, sector: number): number {
    const off = this.scratchBase + slot * BLK_DRIVER_SLOT_BYTES;
    const w = off / 4;
    this.u32[w] = type;
    this.u32[w + 1] = 0;
    this.u32[w + 2] = lo32(sector);
    this.u32[w + 3] = hi32(sector);
    this.u8[off + 32] = 0xff; // status: not yet written by the device
    return this.scratchGpa + slot * BLK_DRIVER_SLOT_BYTES;
  }

  /** Read `len` bytes at `sector` into guest memory at dataGpa. Returns the head, or -1 when the queue is full. */
  read(sector: number, dataGpa: number, len: number, token?: unknown): number {
    return this.rw(BlkType.IN, sector, dataGpa, len, token);
  }

  /** Write `len` bytes from guest memory at dataGpa to `sector`. */
  write(sector: number, dataGpa: number, len: number, token?: unknown): number {
    return this.rw(BlkType.OUT, sector, dataGpa, len, token);
  }

  private rw(type: number, sector: number, dataGpa: number, len: number, token: unknown): number {
    const q = this.queue;
    if (q.free < 3) return -1;
    const slot = q.peekHead();
    const h = this.header(slot, type, sector);
    this.gpas[0] = h;
    this.lens[0] = 16;
    this.gpas[1] = dataGpa;
    this.lens[1] = len;
    this.gpas[2] = h + 32;
    this.lens[2] = 1;
    return type === BlkType.OUT
      ? q.addChain(this.gpas, this.lens, 2, 1, token)
      : q.addChain(this.gpas, this.lens, 1, 2, token);
  }

  /** FLUSH: header + status only. */
  flush(token?: unknown): number {
    return this.noData(BlkType.FLUSH, token);
  }

  /** A request of any type with no data (for tests of unknown types). */
  noData(type: number, token?: unknown, sector = 0): number {
    const q = this.queue;
    if (q.free < 2) return -1;
    const slot = q.peekHead();
    const h = this.header(slot, type, sector);
    this.gpas[0] = h;
    this.lens[0] = 16;
    this.gpas[1] = h + 32;
    this.lens[1] = 1;
    return q.addChain(this.gpas, this.lens, 1, 1, token);
  }

  /** GET_ID: the device writes up to 20 bytes of serial at dataGpa. */
  getId(dataGpa: number, len = 20, token?: unknown): number {
    const q = this.queue;
    if (q.free < 3) return -1;
    const slot = q.peekHead();
    const h = this.header(slot, BlkType.GET_ID, 0);
    this.gpas[0] = h;
    this.lens[0] = 16;
    this.gpas[1] = dataGpa;
    this.lens[1] = len;
    this.gpas[2] = h + 32;
    this.lens[2] = 1;
    return q.addChain(this.gpas, this.lens, 1, 2, token);
  }

  /** DISCARD (unmap=false is required by the spec) or WRITE_ZEROES of one range. */
  discard(sector: number, numSectors: number, token?: unknown): number {
    return this.dwz(BlkType.DISCARD, sector, numSectors, 0, token);
  }

  writeZeroes(sector: number, numSectors: number, unmap: boolean, token?: unknown): number {
    return this.dwz(BlkType.WRITE_ZEROES, sector, numSectors, unmap ? 1 : 0, token);
  }

  private dwz(type: number, sector: number, nsec: number, flags: number, token: unknown): number {
    const q = this.queue;
    if (q.free < 3) return -1;
    const slot = q.peekHead();
    const h = this.header(slot, type, 0);
    const w = (this.scratchBase + slot * BLK_DRIVER_SLOT_BYTES + 16) / 4;
    this.u32[w] = lo32(sector);
    this.u32[w + 1] = hi32(sector);
    this.u32[w + 2] = nsec;
    this.u32[w + 3] = flags;
    this.gpas[0] = h;
    this.lens[0] = 16;
    this.gpas[1] = h + 16;
    this.lens[1] = 16;
    this.gpas[2] = h + 32;
    this.lens[2] = 1;
    return q.addChain(this.gpas, this.lens, 2, 1, token);
  }

  /**
   * Next completed request: returns its head (or -1) and sets lastStatus,
   * lastLen, lastToken.
   */
  popCompletion(): number {
    const head = this.queue.popUsed();
    if (head < 0) return -1;
    this.lastStatus = this.u8[this.scratchBase + head * BLK_DRIVER_SLOT_BYTES + 32]!;
    this.lastLen = this.queue.lastLen;
    this.lastToken = this.queue.lastToken;
    return head;
  }
}

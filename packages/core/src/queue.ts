/**
 * The device side of a split virtqueue (layout in split-ring.ts).
 *
 * One thread owns a queue: it pops chains, completes them with push(), and
 * publishes the used index once per batch. Every value read from guest memory
 * is untrusted; anything malformed throws a {@link VirtqueueError}, which the
 * owner turns into DEVICE_NEEDS_RESET. Nothing here reads or writes outside
 * the guest memory regions.
 *
 * Cross-thread ordering: the driver writes descriptors and ring slots with
 * plain stores and publishes avail.idx with a release store; we read it with
 * Atomics.load (sequentially consistent in JS) before touching the slots it
 * covers. Used elements are written with plain stores, then used.idx with
 * Atomics.store.
 */
import { DescriptorChain } from "./descriptor-chain.js";
import { VirtqueueError, type VirtqueueErrorCode } from "./errors.js";
import { type GuestMemory, gpaFromParts } from "./guest-memory.js";
import {
  Align,
  availRingBytes,
  DescFlag,
  descTableBytes,
  isValidQueueSize,
  needEvent,
  type RingAddresses,
  USED_F_NO_NOTIFY,
  usedRingBytes,
} from "./split-ring.js";

export interface QueueOptions extends RingAddresses {
  /** Index of this queue in its device (for error messages and counters). */
  index?: number;
  /** VIRTIO_F_RING_EVENT_IDX negotiated. */
  eventIdx?: boolean;
  /** VIRTIO_F_RING_INDIRECT_DESC negotiated. */
  indirect?: boolean;
  /** Resume from these ring positions (vhost-user SET_VRING_BASE); default 0. */
  lastAvailIdx?: number;
  usedIdx?: number;
}

/** A typed view of one guest table: the region's word array and the word index of its start. */
interface WordView {
  words: Uint32Array;
  base: number;
}

const TWO_32 = 0x1_0000_0000;

export class SplitQueue {
  readonly index: number;
  readonly size: number;
  readonly eventIdx: boolean;
  readonly indirectAllowed: boolean;
  readonly mem: GuestMemory;

  // Ring views. desc: 4 words per descriptor (addr lo, addr hi, len, flags|next<<16).
  private readonly desc: Uint32Array;
  private readonly descBase: number;
  private readonly avail: Uint16Array; // [flags, idx, ring..., used_event]
  private readonly availBase: number;
  private readonly used16: Uint16Array; // [flags, idx, ..., avail_event]
  private readonly used16Base: number;
  private readonly used32: Uint32Array; // elements
  private readonly usedElemBase: number;
  private readonly mask: number;

  /** Next avail slot to read (free-running 16-bit). */
  private lastAvail: number;
  /** Last avail.idx we read from guest memory. */
  private shadowAvail: number;
  /** Next used slot to write (free-running 16-bit). */
  private usedIdx: number;
  /** used.idx as last published. */
  private publishedUsed: number;
  /** used idx at the last interrupt decision (for EVENT_IDX). */
  private signalledUsed = 0;
  private signalledValid = false;
  private notificationsEnabled = true;

  private readonly inflightHeads: Uint8Array;
  private inflightCount = 0;
  private readonly pool: (DescriptorChain | undefined)[];

  constructor(mem: GuestMemory, opts: QueueOptions) {
    const { size, descAddr, availAddr, usedAddr } = opts;
    this.index = opts.index ?? 0;
    this.mem = mem;
    if (!isValidQueueSize(size))
      this.fail("BAD_QUEUE_SIZE", `queue size ${size} is not a power of two in 1..32768`);
    this.size = size;
    this.mask = size - 1;
    this.eventIdx = opts.eventIdx ?? false;
    this.indirectAllowed = opts.indirect ?? false;
    if (descAddr % Align.DESC !== 0 || availAddr % Align.AVAIL !== 0 || usedAddr % Align.USED !== 0)
      this.fail(
        "RING_MISALIGNED",
        `rings misaligned: desc 0x${descAddr.toString(16)} (needs 16), avail 0x${availAddr.toString(16)} (needs 2), used 0x${usedAddr.toString(16)} (needs 4)`,
      );
    const d = this.words(descAddr, descTableBytes(size), "descriptor table");
    this.desc = d.words;
    this.descBase = d.base;
    const a = this.halfwords(availAddr, availRingBytes(size), "available ring");
    this.avail = a.arr;
    this.availBase = a.base;
    const u16 = this.halfwords(usedAddr, usedRingBytes(size), "used ring");
    this.used16 = u16.arr;
    this.used16Base = u16.base;
    // The used ring is 4-aligned, so its elements (at +4) are too; but its
    // length (6 + 8n) is not a multiple of 4: map the element array only.
    const u32 = this.words(usedAddr, 4 + 8 * size, "used ring");
    this.used32 = u32.words;
    this.usedElemBase = u32.base + 1;
    this.lastAvail = (opts.lastAvailIdx ?? 0) & 0xffff;
    this.shadowAvail = this.lastAvail;
    this.usedIdx = (opts.usedIdx ?? this.lastAvail) & 0xffff;
    this.publishedUsed = this.usedIdx;
    this.inflightHeads = new Uint8Array(size);
    this.pool = new Array(size);
  }

  private fail(code: VirtqueueErrorCode, msg: string): never {
    throw new VirtqueueError(code, `queue ${this.index}: ${msg}`, this.index);
  }

  private words(gpa: number, len: number, what: string): WordView {
    const v = this.mem.view32(gpa, len);
    if (v === null) this.ringFail(gpa, len, what, 4);
    return { words: v.arr, base: v.base };
  }

  private halfwords(gpa: number, len: number, what: string): { arr: Uint16Array; base: number } {
    const v = this.mem.view16(gpa, len);
    if (v === null) this.ringFail(gpa, len, what, 2);
    return v;
  }

  /** Why a ring could not be mapped: outside guest memory, or misaligned in its buffer. */
  private ringFail(gpa: number, len: number, what: string, align: number): never {
    if (this.mem.findRegion(gpa, len) < 0)
      this.fail("RING_OUT_OF_RANGE", `${what} [0x${gpa.toString(16)}, +${len}) is outside guest memory`);
    this.fail(
      "RING_MISALIGNED",
      `${what} at 0x${gpa.toString(16)} is not ${align}-byte aligned in its backing buffer`,
    );
  }

  /** Requests popped and not yet pushed. */
  get inflight(): number {
    return this.inflightCount;
  }

  /** The next avail index the device will read (vhost-user GET_VRING_BASE). */
  get nextAvail(): number {
    return this.lastAvail;
  }

  /** The next used index the device will write. */
  get nextUsed(): number {
    return this.usedIdx;
  }

  /** How many heads the driver has made available that we have not popped (reads avail.idx). */
  pending(): number {
    const idx = Atomics.load(this.avail, this.availBase + 1);
    const n = (idx - this.lastAvail) & 0xffff;
    if (n > this.size)
      this.fail(
        "AVAIL_IDX_JUMP",
        `avail idx jumped to ${idx} from ${this.lastAvail}, more than the queue size ${this.size}`,
      );
    this.shadowAvail = idx;
    return n;
  }

  /** True when there is something to pop (cheap: only re-reads avail.idx when the shadow is used up). */
  hasPending(): boolean {
    if (this.shadowAvail !== this.lastAvail) return true;
    return this.pending() > 0;
  }

  /**
   * Pop the next available chain; returns null when the ring is empty.
   * The returned chain belongs to the queue's pool: it stays valid until
   * push() completes its head.
   */
  pop(): DescriptorChain | null {
    if (this.shadowAvail === this.lastAvail && this.pending() === 0) return null;
    const slot = this.availBase + 2 + (this.lastAvail & this.mask);
    const head = this.avail[slot]!;
    this.lastAvail = (this.lastAvail + 1) & 0xffff;
    if (this.eventIdx && this.notificationsEnabled) this.writeAvailEvent(this.lastAvail);
    if (head >= this.size) this.fail("HEAD_OUT_OF_RANGE", `head ${head} >= queue size ${this.size}`);
    if (this.inflightHeads[head] !== 0)
      this.fail("HEAD_IN_FLIGHT", `head ${head} made available while in flight`);
    let chain = this.pool[head];
    if (chain === undefined) {
      chain = new DescriptorChain();
      this.pool[head] = chain;
    }
    this.walk(head, chain);
    this.inflightHeads[head] = 1;
    this.inflightCount++;
    return chain;
  }

  /** Read the descriptor chain starting at `head` into `chain`. */
  private walk(head: number, chain: DescriptorChain): void {
    const mem = this.mem;
    let words = this.desc;
    let base = this.descBase;
    let tableSize = this.size;
    let idx = head;
    let visited = 0;
    let inIndirect = false;
    let count = 0;
    let readable = 0;
    let seenWritable = false;
    let rbytes = 0;
    let wbytes = 0;
    chain.head = head;
    chain.indirect = false;
    for (;;) {
      if (++visited > tableSize)
        this.fail(
          "CHAIN_TOO_LONG",
          `chain at head ${head} is longer than its ${inIndirect ? "indirect table" : "queue"} (${tableSize}): a loop?`,
        );
      const w = base + idx * 4;
      const lo = words[w]!;
      const hi = words[w + 1]!;
      const len = words[w + 2]!;
      const fn = words[w + 3]!;
      const flags = fn & 0xffff;
      if ((flags & DescFlag.INDIRECT) !== 0) {
        if (!this.indirectAllowed)
          this.fail(
            "INDIRECT_NOT_NEGOTIATED",
            `head ${head}: INDIRECT used but RING_INDIRECT_DESC not negotiated`,
          );
        if (inIndirect)
          this.fail("INDIRECT_NESTED", `head ${head}: indirect descriptor inside an indirect table`);
        if (idx !== head || count !== 0)
          this.fail("INDIRECT_NESTED", `head ${head}: INDIRECT is allowed only on the head descriptor`);
        if ((flags & DescFlag.NEXT) !== 0)
          this.fail("INDIRECT_WITH_NEXT", `head ${head}: INDIRECT together with NEXT`);
        if (len === 0 || len % 16 !== 0)
          this.fail(
            "INDIRECT_BAD_LENGTH",
            `head ${head}: indirect table length ${len} is not a non-zero multiple of 16`,
          );
        const gpa = gpaFromParts(hi, lo);
        const t = gpa < 0 ? null : mem.view32(gpa, len);
        if (t === null)
          this.fail(
            "INDIRECT_UNMAPPABLE",
            `head ${head}: indirect table at 0x${hex(hi, lo)}+${len} is outside guest memory or not 4-byte aligned`,
          );
        words = t.arr;
        base = t.base;
        tableSize = len / 16;
        idx = 0;
        visited = 0;
        inIndirect = true;
        chain.indirect = true;
        continue;
      }
      const writable = (flags & DescFlag.WRITE) !== 0;
      if (writable) seenWritable = true;
      else if (seenWritable)
        this.fail("READABLE_AFTER_WRITABLE", `head ${head}: device-readable descriptor after a writable one`);
      if (len === 0) this.fail("ZERO_LENGTH", `head ${head}: zero-length descriptor ${idx}`);
      let gpa = hi < 0x20_0000 ? hi * TWO_32 + lo : -1;
      if (gpa < 0) {
        // >= 2^53: no guest memory is that large. Tell overflow apart for the log.
        const end = BigInt(hi) * 0x1_0000_0000n + BigInt(lo) + BigInt(len);
        this.fail(
          end > 0xffff_ffff_ffff_ffffn ? "ADDRESS_OVERFLOW" : "ADDRESS_OUT_OF_RANGE",
          `head ${head}: buffer 0x${hex(hi, lo)}+${len} ${end > 0xffff_ffff_ffff_ffffn ? "overflows 64 bits" : "is outside guest memory"}`,
        );
      }
      const r = mem.findRegion(gpa, len);
      if (r < 0)
        this.fail(
          "ADDRESS_OUT_OF_RANGE",
          `head ${head}: buffer 0x${gpa.toString(16)}+${len} is outside guest memory`,
        );
      if (count === chain.len.length) chain.grow(count + 1);
      chain.gpa[count] = gpa;
      chain.len[count] = len;
      chain.region[count] = r;
      chain.offset[count] = gpa -= mem.regions[r]!.gpa;
      count++;
      if (writable) wbytes += len;
      else {
        readable++;
        rbytes += len;
      }
      if (rbytes + wbytes > 0xffff_ffff)
        this.fail("CHAIN_LENGTH_OVERFLOW", `head ${head}: chain total length exceeds 2^32 - 1`);
      if ((flags & DescFlag.NEXT) === 0) break;
      idx = fn >>> 16;
      if (idx >= tableSize)
        this.fail(
          "NEXT_OUT_OF_RANGE",
          `head ${head}: next ${idx} >= ${inIndirect ? "indirect table" : "queue"} size ${tableSize}`,
        );
    }
    chain.count = count;
    chain.readable = readable;
    chain.readableBytes = rbytes;
    chain.writableBytes = wbytes;
  }

  /** Put a completed chain in the used ring (not yet visible: call publish()). */
  push(head: number, len: number): void {
    if (head >= this.size || this.inflightHeads[head] === 0)
      this.fail("USED_UNKNOWN_HEAD", `completing head ${head} which is not in flight`);
    this.inflightHeads[head] = 0;
    this.inflightCount--;
    const e = this.usedElemBase + (this.usedIdx & this.mask) * 2;
    this.used32[e] = head;
    this.used32[e + 1] = len;
    this.usedIdx = (this.usedIdx + 1) & 0xffff;
  }

  /** Make every pushed element visible to the driver. */
  publish(): void {
    if (this.publishedUsed !== this.usedIdx) {
      Atomics.store(this.used16, this.used16Base + 1, this.usedIdx);
      this.publishedUsed = this.usedIdx;
    }
  }

  /**
   * After publish(): does the driver want an interrupt for what was published
   * since the last call? Honors used_event (EVENT_IDX) or avail.flags NO_INTERRUPT.
   */
  needsInterrupt(): boolean {
    const now = this.publishedUsed;
    if (this.eventIdx) {
      const old = this.signalledUsed;
      const valid = this.signalledValid;
      this.signalledUsed = now;
      this.signalledValid = true;
      if (valid && old === now) return false;
      const usedEvent = Atomics.load(this.avail, this.availBase + 2 + this.size);
      return !valid || needEvent(usedEvent, now, old);
    }
    if (this.signalledValid && this.signalledUsed === now) return false;
    this.signalledUsed = now;
    this.signalledValid = true;
    return (Atomics.load(this.avail, this.availBase) & 1) === 0;
  }

  /** Ask the driver not to kick (while we are draining or polling). */
  disableNotification(): void {
    if (!this.notificationsEnabled) return;
    this.notificationsEnabled = false;
    if (!this.eventIdx) Atomics.store(this.used16, this.used16Base, USED_F_NO_NOTIFY);
    // With EVENT_IDX: an avail_event just behind what we consumed is one the
    // driver will not cross for 65535 more buffers, so it stops kicking.
    // (Leaving the old value would cost one more kick, a syscall for the
    // driver and a spurious wake-up for us.)
    else this.writeAvailEvent((this.lastAvail - 1) & 0xffff);
  }

  /**
   * Ask the driver to kick again; returns true when buffers arrived meanwhile
   * (the caller must keep draining: this closes the race where the driver
   * added work just before seeing notifications enabled).
   */
  enableNotification(): boolean {
    this.notificationsEnabled = true;
    if (this.eventIdx) this.writeAvailEvent(this.lastAvail);
    else Atomics.store(this.used16, this.used16Base, 0);
    // Atomics.store above is sequentially consistent: a full fence before we re-read avail.idx.
    return this.pending() > 0;
  }

  private writeAvailEvent(v: number): void {
    Atomics.store(this.used16, this.used16Base + 2 + 4 * this.size, v);
  }

  /** Heads currently in flight (for reset/drain diagnostics). */
  inflightHeadList(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.size; i++) if (this.inflightHeads[i] !== 0) out.push(i);
    return out;
  }
}

function hex(hi: number, lo: number): string {
  return (BigInt(hi) * 0x1_0000_0000n + BigInt(lo)).toString(16);
}

/**
 * The driver side of a split virtqueue: what a guest's virtio driver does,
 * for tests, the bench and in-process VMMs that submit I/O from a thread.
 * Layout in split-ring.ts. One thread owns a DriverQueue.
 *
 *   addChain()  -> descriptors + avail slot (invisible)
 *   publish()   -> avail.idx release-store: the device may see them
 *   kickNeeded()-> EVENT_IDX avail_event / used.flags NO_NOTIFY say whether to notify
 *   popUsed()   -> next completed head (lastLen holds its written length),
 *                  its descriptors go back on the free list
 */
import type { GuestMemory } from "./guest-memory.js";
import {
  AVAIL_F_NO_INTERRUPT,
  availRingBytes,
  DescFlag,
  descTableBytes,
  hi32,
  isValidQueueSize,
  lo32,
  needEvent,
  type RingAddresses,
  usedRingBytes,
} from "./split-ring.js";

export interface DriverQueueOptions extends RingAddresses {
  /** VIRTIO_F_RING_EVENT_IDX negotiated. */
  eventIdx?: boolean;
  /** Zero the rings first (a fresh queue). Default true. */
  initialize?: boolean;
}

export class DriverQueue {
  readonly size: number;
  readonly eventIdx: boolean;
  private readonly mask: number;
  private readonly desc32: Uint32Array;
  private readonly descBase: number;
  private readonly avail: Uint16Array;
  private readonly availBase: number;
  private readonly used16: Uint16Array;
  private readonly used16Base: number;
  private readonly used32: Uint32Array;
  private readonly usedElemBase: number;

  /** Free descriptor list, kept on our side (the device never writes descriptors). */
  private readonly nextFree: Uint16Array;
  private freeHead = 0;
  private numFree: number;
  /** For each head: the number of descriptors in its chain (0 = not in use). */
  private readonly chainLen: Uint16Array;
  private readonly chainNext: Uint16Array;
  /** Per-head user token (what the caller wants back on completion). */
  private readonly tokens: unknown[];

  private availIdx = 0;
  private kickedIdx = 0;
  private lastUsed = 0;
  /** Written length of the last chain popUsed() returned. */
  lastLen = 0;
  private interruptsEnabled = true;

  constructor(
    readonly mem: GuestMemory,
    opts: DriverQueueOptions,
  ) {
    const { size } = opts;
    if (!isValidQueueSize(size)) throw new Error(`queue size ${size} is not a power of two in 1..32768`);
    this.size = size;
    this.mask = size - 1;
    this.eventIdx = opts.eventIdx ?? false;
    if (opts.initialize ?? true) {
      mem.slice(opts.descAddr, descTableBytes(size)).fill(0);
      mem.slice(opts.availAddr, availRingBytes(size)).fill(0);
      mem.slice(opts.usedAddr, usedRingBytes(size)).fill(0);
    }
    const d = view32(mem, opts.descAddr, descTableBytes(size));
    this.desc32 = d.arr;
    this.descBase = d.base;
    const a = view16(mem, opts.availAddr, availRingBytes(size));
    this.avail = a.arr;
    this.availBase = a.base;
    const u = view16(mem, opts.usedAddr, usedRingBytes(size));
    this.used16 = u.arr;
    this.used16Base = u.base;
    const u32 = view32(mem, opts.usedAddr, 4 + 8 * size);
    this.used32 = u32.arr;
    this.usedElemBase = u32.base + 1;
    this.nextFree = new Uint16Array(size);
    for (let i = 0; i < size; i++) this.nextFree[i] = i + 1;
    this.numFree = size;
    this.chainLen = new Uint16Array(size);
    this.chainNext = new Uint16Array(size);
    this.tokens = new Array(size);
  }

  /** The head the next direct addChain() will use (for per-head scratch slots). */
  peekHead(): number {
    return this.freeHead;
  }

  /** Descriptors not in use. */
  get free(): number {
    return this.numFree;
  }

  /** Chains added and not yet returned by popUsed(). */
  get outstanding(): number {
    return this.outstandingCount;
  }
  private outstandingCount = 0;

  /**
   * Add a chain: `readable` segments first (device reads them), then
   * `writable` ones. gpas/lens hold readable + writable entries. Returns the
   * head index, or -1 when there are not enough free descriptors.
   */
  addChain(
    gpas: ArrayLike<number>,
    lens: ArrayLike<number>,
    readable: number,
    writable: number,
    token?: unknown,
  ): number {
    const n = readable + writable;
    if (n === 0) throw new Error("a chain needs at least one buffer");
    if (n > this.numFree) return -1;
    const head = this.freeHead;
    let idx = head;
    const d = this.desc32;
    const base = this.descBase;
    for (let i = 0; i < n; i++) {
      const w = base + idx * 4;
      const gpa = gpas[i]!;
      const next = this.nextFree[idx]!;
      let flags = i >= readable ? DescFlag.WRITE : 0;
      if (i + 1 < n) flags |= DescFlag.NEXT;
      const lo = lo32(gpa);
      const hi = hi32(gpa);
      const len = lens[i]!;
      const fn = (flags | ((i + 1 < n ? next : 0) << 16)) >>> 0;
      // Reused chains mostly hold these values already: a store of the same
      // value still takes the cache line away from the device's core, a load
      // does not.
      if (d[w] !== lo || d[w + 1] !== hi || d[w + 2] !== len || d[w + 3] !== fn) {
        d[w] = lo;
        d[w + 1] = hi;
        d[w + 2] = len;
        d[w + 3] = fn;
      }
      this.chainNext[idx] = next;
      if (i + 1 < n) idx = next;
      else this.freeHead = next;
    }
    this.numFree -= n;
    this.chainLen[head] = n;
    this.outstandingCount++;
    this.tokens[head] = token;
    this.avail[this.availBase + 2 + (this.availIdx & this.mask)] = head;
    this.availIdx = (this.availIdx + 1) & 0xffff;
    return head;
  }

  /**
   * Add a chain through an indirect table the caller placed in guest memory
   * at `tableGpa` (16 bytes per entry, written here). Uses one ring descriptor.
   */
  addIndirect(
    tableGpa: number,
    gpas: ArrayLike<number>,
    lens: ArrayLike<number>,
    readable: number,
    writable: number,
    token?: unknown,
  ): number {
    const n = readable + writable;
    if (this.numFree < 1) return -1;
    const t = view32(this.mem, tableGpa, n * 16);
    for (let i = 0; i < n; i++) {
      const w = t.base + i * 4;
      const gpa = gpas[i]!;
      t.arr[w] = lo32(gpa);
      t.arr[w + 1] = hi32(gpa);
      t.arr[w + 2] = lens[i]!;
      let flags = i >= readable ? DescFlag.WRITE : 0;
      if (i + 1 < n) flags |= DescFlag.NEXT;
      t.arr[w + 3] = flags | ((i + 1 < n ? i + 1 : 0) << 16);
    }
    const head = this.freeHead;
    const w = this.descBase + head * 4;
    this.desc32[w] = lo32(tableGpa);
    this.desc32[w + 1] = hi32(tableGpa);
    this.desc32[w + 2] = n * 16;
    this.desc32[w + 3] = DescFlag.INDIRECT;
    this.freeHead = this.nextFree[head]!;
    this.chainNext[head] = this.freeHead;
    this.numFree -= 1;
    this.chainLen[head] = 1;
    this.outstandingCount++;
    this.tokens[head] = token;
    this.avail[this.availBase + 2 + (this.availIdx & this.mask)] = head;
    this.availIdx = (this.availIdx + 1) & 0xffff;
    return head;
  }

  /** Make every chain added so far visible to the device. */
  publish(): void {
    Atomics.store(this.avail, this.availBase + 1, this.availIdx);
  }

  /**
   * Call after publish(): true when the device asked to be notified about
   * what was published since the last kickNeeded() (EVENT_IDX avail_event,
   * else used.flags NO_NOTIFY).
   */
  kickNeeded(): boolean {
    const now = this.availIdx;
    const old = this.kickedIdx;
    this.kickedIdx = now;
    if (old === now) return false;
    if (this.eventIdx) {
      const ev = Atomics.load(this.used16, this.used16Base + 2 + 4 * this.size);
      return needEvent(ev, now, old);
    }
    return (Atomics.load(this.used16, this.used16Base) & 1) === 0;
  }

  /**
   * Where used.idx lives and the value it holds while nothing new completed:
   * for a native spin-wait on it (hasUsed() is `arr[index] !== value`).
   */
  usedIdxWord(): { arr: Uint16Array; index: number; value: number } {
    return { arr: this.used16, index: this.used16Base + 1, value: this.lastUsed };
  }

  /** True when the device has completed something we have not popped. */
  hasUsed(): boolean {
    return Atomics.load(this.used16, this.used16Base + 1) !== this.lastUsed;
  }

  /**
   * The next completed head, or -1. Its descriptors are freed; its written
   * length is in lastLen and its token in lastToken.
   */
  popUsed(): number {
    const usedIdx = Atomics.load(this.used16, this.used16Base + 1);
    if (usedIdx === this.lastUsed) return -1;
    const e = this.usedElemBase + (this.lastUsed & this.mask) * 2;
    const head = this.used32[e]!;
    this.lastLen = this.used32[e + 1]!;
    this.lastUsed = (this.lastUsed + 1) & 0xffff;
    if (head >= this.size || this.chainLen[head] === 0)
      throw new Error(`device returned head ${head} which is not outstanding`);
    this.lastToken = this.tokens[head];
    this.tokens[head] = undefined;
    // Return the chain's descriptors to the front of the free list.
    const n = this.chainLen[head]!;
    let last = head;
    for (let i = 1; i < n; i++) last = this.chainNext[last]!;
    this.nextFree[last] = this.freeHead;
    this.freeHead = head;
    this.numFree += n;
    this.chainLen[head] = 0;
    this.outstandingCount--;
    if (this.eventIdx && this.interruptsEnabled) this.writeUsedEvent(this.lastUsed);
    return head;
  }

  /** Token of the head popUsed() last returned. */
  lastToken: unknown = undefined;

  /** Ask the device not to interrupt (we are polling). */
  disableInterrupts(): void {
    if (!this.interruptsEnabled) return;
    this.interruptsEnabled = false;
    if (this.eventIdx) this.writeUsedEvent((this.lastUsed - 1) & 0xffff);
    else Atomics.store(this.avail, this.availBase, AVAIL_F_NO_INTERRUPT);
  }

  /**
   * Ask for interrupts again; returns true when completions arrived
   * meanwhile (keep polling: closes the race with the device).
   */
  enableInterrupts(): boolean {
    this.interruptsEnabled = true;
    if (this.eventIdx) this.writeUsedEvent(this.lastUsed);
    else Atomics.store(this.avail, this.availBase, 0);
    return this.hasUsed();
  }

  private writeUsedEvent(v: number): void {
    Atomics.store(this.avail, this.availBase + 2 + this.size, v);
  }

  /** Next avail index (what the device will see after publish). */
  get nextAvail(): number {
    return this.availIdx;
  }
}

function view32(mem: GuestMemory, gpa: number, len: number): { arr: Uint32Array; base: number } {
  const v = mem.view32(gpa, len);
  if (v === null)
    throw new Error(`[0x${gpa.toString(16)}, +${len}) is not 4-byte aligned inside guest memory`);
  return v;
}

function view16(mem: GuestMemory, gpa: number, len: number): { arr: Uint16Array; base: number } {
  const v = mem.view16(gpa, len);
  if (v === null)
    throw new Error(`[0x${gpa.toString(16)}, +${len}) is not 2-byte aligned inside guest memory`);
  return v;
}

/**
 * A guest driver on the test's main thread, for tests that issue a handful of
 * requests and must keep the event loop turning (device events such as
 * "stopped" arrive there). Completions are awaited with Atomics.waitAsync on
 * the queue's call doorbell; a completion for a head that is not outstanding
 * fails the test (no request may complete twice).
 */
import { BlkType, type GuestMemory } from "@vblk/core";
import { type DriverHandle, type DriverQueueDesc, openDriverQueue } from "@vblk/iothread";

export interface Completion {
  head: number;
  status: number;
  /** used.len */
  len: number;
  /** READ: the data the device wrote. */
  data?: Uint8Array;
}

const SLOT = 64 * 1024;

export class AsyncDriver {
  readonly h: DriverHandle;
  readonly mem: GuestMemory;
  private readonly waiters = new Map<number, { resolve: (c: Completion) => void; read: number }>();
  private pumping = false;
  private stopped = false;
  /** Heads completed, in completion order. */
  readonly order: number[] = [];
  /** Completions for heads not outstanding (must stay empty). */
  readonly bogus: number[] = [];

  constructor(
    desc: DriverQueueDesc,
    private readonly dataBase: number,
    mem?: GuestMemory,
  ) {
    this.h = openDriverQueue(desc, mem);
    this.mem = this.h.mem;
  }

  private gpa(head: number): number {
    return this.dataBase + head * SLOT;
  }

  private track(head: number, read: number): Promise<Completion> {
    if (head < 0) throw new Error("queue full");
    if (this.waiters.has(head)) throw new Error(`head ${head} handed out twice`);
    const p = new Promise<Completion>((resolve) => this.waiters.set(head, { resolve, read }));
    this.h.submit();
    this.pump();
    return p;
  }

  write(sector: number, data: Uint8Array): Promise<Completion> {
    const head = this.h.queue.peekHead();
    this.mem.slice(this.gpa(head), data.length).set(data);
    return this.track(this.h.blk.write(sector, this.gpa(head), data.length), 0);
  }

  read(sector: number, len: number): Promise<Completion> {
    const head = this.h.queue.peekHead();
    this.mem.slice(this.gpa(head), len).fill(0xee);
    return this.track(this.h.blk.read(sector, this.gpa(head), len), len);
  }

  flush(): Promise<Completion> {
    return this.track(this.h.blk.flush(), 0);
  }

  discard(sector: number, n: number): Promise<Completion> {
    return this.track(this.h.blk.discard(sector, n), 0);
  }

  writeZeroes(sector: number, n: number): Promise<Completion> {
    return this.track(this.h.blk.writeZeroes(sector, n, false), 0);
  }

  getId(): Promise<Completion> {
    const head = this.h.queue.peekHead();
    return this.track(this.h.blk.getId(this.gpa(head), 20), 20);
  }

  /** A request of another type with no data. */
  noData(type: number = BlkType.FLUSH): Promise<Completion> {
    return this.track(this.h.blk.noData(type), 0);
  }

  get outstanding(): number {
    return this.waiters.size;
  }

  close(): void {
    this.stopped = true;
  }

  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    void (async () => {
      try {
        while (!this.stopped && this.waiters.size > 0) {
          this.collect();
          if (this.waiters.size === 0) break;
          const snap = this.h.call.snapshot();
          if (this.h.queue.enableInterrupts()) continue;
          await this.h.call.waitAsync(snap, 20);
        }
      } finally {
        this.pumping = false;
      }
    })();
  }

  private collect(): void {
    for (;;) {
      const head = this.h.blk.popCompletion();
      if (head < 0) return;
      const w = this.waiters.get(head);
      if (w === undefined) {
        this.bogus.push(head);
        continue;
      }
      this.waiters.delete(head);
      this.order.push(head);
      const c: Completion = { head, status: this.h.blk.lastStatus, len: this.h.blk.lastLen };
      if (w.read > 0) c.data = this.mem.slice(this.gpa(head), w.read).slice();
      w.resolve(c);
    }
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Wait until cond() holds, or fail after timeoutMs. */
export async function until(cond: () => boolean, timeoutMs: number, what: string): Promise<number> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(2);
  }
  return Date.now() - t0;
}

/** A block of `len` bytes whose content names (sector, gen). */
export function pattern(sector: number, gen: number, len: number): Uint8Array {
  const b = new Uint8Array(len);
  const w = new Uint32Array(b.buffer);
  for (let i = 0; i < w.length; i++) w[i] = (sector * 2654435761 + gen * 97 + i * 40503) >>> 0;
  return b;
}

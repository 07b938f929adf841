/**
 * An eventfd-like doorbell on a SharedArrayBuffer: one side rings, the other
 * sleeps until it is rung. Used for queue kicks (driver -> IOThread), I/O
 * completions (I/O worker -> IOThread) and interrupts (IOThread -> driver).
 *
 *   Int32Array words at `index`:
 *   +-----------+-----------+
 *   | seq       | sleepers  |
 *   +-----------+-----------+
 *   seq       bumped by every ring(); a sleeper waits for it to change
 *   sleepers  threads inside wait(); ring() calls Atomics.notify only if > 0,
 *             so a busy (polling) peer costs one atomic add per ring
 *
 * No lost wake-ups: a waiter reads `seq` (snapshot) BEFORE it checks for
 * work, and sleeps only while seq still equals the snapshot.
 */
export const DOORBELL_WORDS = 2;
export const DOORBELL_BYTES = DOORBELL_WORDS * 4;

export type WaitResult = "ok" | "not-equal" | "timed-out";

export class Doorbell {
  private readonly w: Int32Array;
  private readonly seq: number;
  private readonly sleepers: number;

  /** A doorbell over words [index, index+2) of `buffer` (an Int32Array-compatible SAB). */
  constructor(
    readonly buffer: SharedArrayBuffer,
    readonly index = 0,
  ) {
    this.w = new Int32Array(buffer);
    if (index < 0 || index + DOORBELL_WORDS > this.w.length)
      throw new RangeError(`doorbell index ${index} out of range`);
    this.seq = index;
    this.sleepers = index + 1;
  }

  /** A doorbell with its own 8-byte SharedArrayBuffer. */
  static create(): Doorbell {
    return new Doorbell(new SharedArrayBuffer(DOORBELL_BYTES), 0);
  }

  /** Rebuild from what {@link describe} gave (e.g. in a worker). */
  static from(d: { buffer: SharedArrayBuffer; index: number }): Doorbell {
    return new Doorbell(d.buffer, d.index);
  }

  describe(): { buffer: SharedArrayBuffer; index: number } {
    return { buffer: this.buffer, index: this.index };
  }

  /** Current sequence number: read it before checking for work, then wait(snapshot). */
  snapshot(): number {
    return Atomics.load(this.w, this.seq);
  }

  /** Wake the other side (cheap when nobody sleeps). */
  ring(): void {
    Atomics.add(this.w, this.seq, 1);
    if (Atomics.load(this.w, this.sleepers) !== 0) Atomics.notify(this.w, this.seq);
  }

  /** Sleep until rung after `snapshot` was taken, or timeoutMs passes. Not on the main thread of a browser; fine in Node. */
  wait(snapshot: number, timeoutMs = Number.POSITIVE_INFINITY): WaitResult {
    Atomics.add(this.w, this.sleepers, 1);
    try {
      return Atomics.wait(this.w, this.seq, snapshot, timeoutMs);
    } finally {
      Atomics.sub(this.w, this.sleepers, 1);
    }
  }

  /** The same as wait() without blocking the event loop (for a main thread). */
  async waitAsync(snapshot: number, timeoutMs = Number.POSITIVE_INFINITY): Promise<WaitResult> {
    Atomics.add(this.w, this.sleepers, 1);
    try {
      const r = Atomics.waitAsync(this.w, this.seq, snapshot, timeoutMs);
      return r.async ? await r.value : r.value;
    } finally {
      Atomics.sub(this.w, this.sleepers, 1);
    }
  }

  /** Threads asleep in wait() right now. */
  get sleeping(): number {
    return Atomics.load(this.w, this.sleepers);
  }
}

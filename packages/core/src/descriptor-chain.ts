/**
 * A descriptor chain as the device sees it after {@link SplitQueue.pop}:
 * the buffers the driver offered, translated and bounds-checked, in chain
 * order. Device-readable segments always come first, then device-writable
 * ones (the queue rejects any other order).
 *
 *   segment i:  gpa[i]  len[i]  region[i]  offset[i] (byte offset in that region)
 *               [0, readable)         driver -> device (readable)
 *               [readable, count)     device -> driver (writable)
 *
 * Chains are pooled per head index and their arrays grow on demand, so the
 * steady state allocates nothing.
 */
export class DescriptorChain {
  /** Head descriptor index: what goes back in the used ring. */
  head = 0;
  /** Number of segments. */
  count = 0;
  /** Number of device-readable segments (they come first). */
  readable = 0;
  readableBytes = 0;
  writableBytes = 0;
  /** True when the chain came through an indirect table. */
  indirect = false;
  gpa: Float64Array;
  len: Uint32Array;
  region: Int32Array;
  offset: Float64Array;

  constructor(capacity = 4) {
    this.gpa = new Float64Array(capacity);
    this.len = new Uint32Array(capacity);
    this.region = new Int32Array(capacity);
    this.offset = new Float64Array(capacity);
  }

  get capacity(): number {
    return this.len.length;
  }

  get writable(): number {
    return this.count - this.readable;
  }

  /** Make room for at least n segments, keeping the ones already there. */
  grow(n: number): void {
    let cap = this.len.length;
    if (n <= cap) return;
    while (cap < n) cap *= 2;
    const gpa = new Float64Array(cap);
    gpa.set(this.gpa);
    const len = new Uint32Array(cap);
    len.set(this.len);
    const region = new Int32Array(cap);
    region.set(this.region);
    const offset = new Float64Array(cap);
    offset.set(this.offset);
    this.gpa = gpa;
    this.len = len;
    this.region = region;
    this.offset = offset;
  }
}

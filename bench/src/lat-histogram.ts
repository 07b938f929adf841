/**
 * A latency histogram the way fio keeps one: exact count, min, max, mean and
 * standard deviation, and percentiles from log-linear buckets.
 *
 *   value v (ns)            bucket
 *   0 .. 127                v                                (exact)
 *   2^e .. 2^(e+1) - 1      64 * (e - 5) + ((v >> (e - 6)) & 63)     e = 7 .. 47
 *
 * Below 128 ns every value has its own bucket; above, each power of two is
 * cut into 64 equal buckets, so a percentile is off by less than 1/64 of its
 * value (fio's clat percentiles have the same resolution). Values past 2^48
 * ns (3 days) land in the last bucket.
 *
 * Why not perf_hooks' histogram: record() is a native call, ~26 ns here, and
 * a job records three latencies per request; at the null engine's millions of
 * requests a second that was a fifth of the job's time. record() below is a
 * few JS operations the JIT inlines. The object is plain data (typed array and
 * numbers), so it crosses piscina's structured clone as it is.
 */

const SUB_BITS = 6;
const SUB = 1 << SUB_BITS; // 64 buckets per power of two
const MAX_E = 47;
export const LAT_BUCKETS = SUB * (MAX_E - 4); // 64 * 43 = 2752
const TWO_32 = 0x1_0000_0000;

export interface LatHistogram {
  counts: Float64Array;
  count: number;
  min: number;
  max: number;
  /** Sum of (v - shift) and of its square: the moments, kept exact enough for long runs. */
  shift: number;
  s1: number;
  s2: number;
}

export function newLatHistogram(): LatHistogram {
  return { counts: new Float64Array(LAT_BUCKETS), count: 0, min: 0, max: 0, shift: 0, s1: 0, s2: 0 };
}

export function latReset(h: LatHistogram): void {
  h.counts.fill(0);
  h.count = 0;
  h.min = 0;
  h.max = 0;
  h.shift = 0;
  h.s1 = 0;
  h.s2 = 0;
}

/** Bucket of a value (ns, >= 0). */
export function latBucket(v: number): number {
  if (v < 2 * SUB) return v < 0 ? 0 : v | 0;
  if (v < TWO_32) {
    const u = v >>> 0;
    const e = 31 - Math.clz32(u);
    return SUB * (e - 5) + ((u >>> (e - SUB_BITS)) & (SUB - 1));
  }
  const e = 63 - Math.clz32(Math.floor(v / TWO_32));
  if (e > MAX_E) return LAT_BUCKETS - 1;
  return SUB * (e - 5) + (Math.floor(v / 2 ** (e - SUB_BITS)) & (SUB - 1));
}

/** The value a bucket stands for: its middle (exact below 128 ns). */
export function latBucketValue(b: number): number {
  if (b < 2 * SUB) return b;
  const e = Math.floor(b / SUB) + 5;
  const width = 2 ** (e - SUB_BITS);
  return 2 ** e + (b % SUB) * width + width / 2 - 0.5;
}

/** Record one latency in ns. */
export function latRecord(h: LatHistogram, v: number): void {
  h.counts[latBucket(v)]!++;
  if (h.count === 0) {
    h.min = v;
    h.max = v;
    h.shift = v;
  } else if (v < h.min) h.min = v;
  else if (v > h.max) h.max = v;
  h.count++;
  const d = v - h.shift;
  h.s1 += d;
  h.s2 += d * d;
}

/** Add `from` into `into`. */
export function latMerge(into: LatHistogram, from: LatHistogram): void {
  if (from.count === 0) return;
  const c = into.counts;
  const f = from.counts;
  for (let i = 0; i < c.length; i++) c[i]! += f[i]!;
  if (into.count === 0) {
    into.min = from.min;
    into.max = from.max;
    into.shift = from.shift;
  }
  // re-base from's moments on into's shift: v - a = (v - b) + (b - a)
  const k = from.shift - into.shift;
  into.s1 += from.s1 + from.count * k;
  into.s2 += from.s2 + 2 * k * from.s1 + from.count * k * k;
  into.count += from.count;
  if (from.min < into.min) into.min = from.min;
  if (from.max > into.max) into.max = from.max;
}

export function latMean(h: LatHistogram): number {
  return h.count === 0 ? 0 : h.shift + h.s1 / h.count;
}

/** Sample standard deviation (n - 1), as fio prints it. */
export function latStddev(h: LatHistogram): number {
  if (h.count < 2) return 0;
  const m = h.s1 / h.count;
  const v = (h.s2 - h.count * m * m) / (h.count - 1);
  return v > 0 ? Math.sqrt(v) : 0;
}

/**
 * The value below which p percent of the samples lie (0 < p <= 100): the
 * middle of the bucket that holds the ceil(p% of n)-th sample, kept within
 * [min, max]; the last sample's rank gives max itself.
 */
export function latPercentile(h: LatHistogram, p: number): number {
  if (h.count === 0) return 0;
  const rank = Math.max(1, Math.ceil((p / 100) * h.count));
  if (rank >= h.count) return h.max;
  let seen = 0;
  const c = h.counts;
  for (let b = 0; b < c.length; b++) {
    seen += c[b]!;
    if (seen >= rank) return Math.min(h.max, Math.max(h.min, latBucketValue(b)));
  }
  return h.max;
}

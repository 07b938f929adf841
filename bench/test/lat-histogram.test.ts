import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  LAT_BUCKETS,
  latBucket,
  latBucketValue,
  latMean,
  latMerge,
  latPercentile,
  latRecord,
  latReset,
  latStddev,
  newLatHistogram,
} from "../dist/lat-histogram.js";

/** Exact percentile the way latPercentile ranks: the ceil(p% of n)-th smallest. */
function exactPercentile(sorted: number[], p: number): number {
  return sorted[Math.max(1, Math.ceil((p / 100) * sorted.length)) - 1]!;
}

const latencies = fc.array(fc.integer({ min: 0, max: 2 ** 40 }), { minLength: 1, maxLength: 300 });

describe("latency histogram (fio-style buckets)", () => {
  it("keeps values below 128 ns exact and cuts each power of two above into 64 buckets", () => {
    for (let v = 0; v < 128; v++) expect(latBucket(v)).toBe(v);
    expect(latBucket(128)).toBe(128);
    expect(latBucket(129)).toBe(128); // 128..129 share a bucket of width 2
    expect(latBucket(130)).toBe(129);
    expect(latBucket(255)).toBe(191);
    expect(latBucket(256)).toBe(192);
    // above 2^32 the bucket math leaves 32-bit integers
    expect(latBucket(2 ** 32)).toBe(64 * (32 - 5));
    expect(latBucket(2 ** 33 - 1)).toBe(64 * (32 - 5) + 63);
    expect(latBucket(2 ** 60)).toBe(LAT_BUCKETS - 1);
  });

  it("buckets are monotonic and a bucket's value lies inside it", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 47 }), (v) => {
        const b = latBucket(v);
        expect(b).toBeGreaterThanOrEqual(0);
        expect(b).toBeLessThan(LAT_BUCKETS);
        expect(latBucket(v + 1)).toBeGreaterThanOrEqual(b);
        // the bucket's representative value is within 1/64 of v
        expect(Math.abs(latBucketValue(b) - v)).toBeLessThanOrEqual(Math.max(0.5, v / 64));
      }),
    );
  });

  it("min, max, count, mean and stddev are exact; percentiles within 1/64 of the exact ones", () => {
    fc.assert(
      fc.property(latencies, fc.double({ min: 0.01, max: 100, noNaN: true }), (xs, p) => {
        const h = newLatHistogram();
        for (const x of xs) latRecord(h, x);
        const sorted = [...xs].sort((a, b) => a - b);
        const n = xs.length;
        const mean = xs.reduce((a, b) => a + b, 0) / n;
        const sd = n > 1 ? Math.sqrt(xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (n - 1)) : 0;
        expect(h.count).toBe(n);
        expect(h.min).toBe(sorted[0]);
        expect(h.max).toBe(sorted[n - 1]);
        expect(latMean(h)).toBeCloseTo(mean, -Math.log10(Math.max(1, mean)) + 6);
        expect(Math.abs(latStddev(h) - sd)).toBeLessThanOrEqual(Math.max(1e-6, sd * 1e-6));
        const exact = exactPercentile(sorted, p);
        expect(Math.abs(latPercentile(h, p) - exact)).toBeLessThanOrEqual(Math.max(0.5, exact / 64));
        expect(latPercentile(h, 100)).toBe(sorted[n - 1]);
      }),
    );
  });

  it("merging two histograms equals recording everything in one", () => {
    fc.assert(
      fc.property(latencies, latencies, (a, b) => {
        const ha = newLatHistogram();
        const hb = newLatHistogram();
        const all = newLatHistogram();
        for (const x of a) latRecord(ha, x);
        for (const x of b) latRecord(hb, x);
        for (const x of [...a, ...b]) latRecord(all, x);
        const m = newLatHistogram();
        latMerge(m, ha);
        latMerge(m, hb);
        expect(m.count).toBe(all.count);
        expect(m.min).toBe(all.min);
        expect(m.max).toBe(all.max);
        expect(Array.from(m.counts)).toEqual(Array.from(all.counts));
        expect(latMean(m)).toBeCloseTo(latMean(all), 0);
        expect(Math.abs(latStddev(m) - latStddev(all))).toBeLessThanOrEqual(
          1e-6 * Math.max(1, latStddev(all)),
        );
        for (const p of [1, 50, 99, 99.99]) expect(latPercentile(m, p)).toBe(latPercentile(all, p));
      }),
    );
  });

  it("an empty histogram reports zeros, reset empties one, and it survives structured cloning", () => {
    const h = newLatHistogram();
    expect([h.count, latMean(h), latStddev(h), latPercentile(h, 99)]).toEqual([0, 0, 0, 0]);
    for (const x of [1000, 2000, 3000]) latRecord(h, x);
    const c = structuredClone(h);
    expect(c.counts).toBeInstanceOf(Float64Array);
    expect([c.count, c.min, c.max, latMean(c), latPercentile(c, 50)]).toEqual([
      3,
      1000,
      3000,
      2000,
      latPercentile(h, 50),
    ]);
    latReset(h);
    expect([h.count, h.min, h.max, latMean(h)]).toEqual([0, 0, 0, 0]);
    expect(h.counts.every((x) => x === 0)).toBe(true);
  });
});

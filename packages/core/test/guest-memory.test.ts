import { describe, expect, it } from "vitest";
import { GuestMemory, GuestMemoryError, gpaFromParts, MAX_SAFE_GPA } from "../dist/index.js";

const KiB = 1024;
const TWO_32 = 2 ** 32;

/** Two regions with a hole: [0, 64K) and [1M, 1M + 16K), each with its own buffer. */
function twoRegions(): GuestMemory {
  return new GuestMemory([
    { gpa: 1 << 20, size: 16 * KiB, buffer: new SharedArrayBuffer(16 * KiB) },
    { gpa: 0, size: 64 * KiB, buffer: new SharedArrayBuffer(64 * KiB) },
  ]);
}

function expectOutside(fn: () => unknown, gpa: number, len: number): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(GuestMemoryError);
  const ge = err as GuestMemoryError;
  expect(ge.gpa).toBe(gpa);
  expect(ge.length).toBe(len);
  expect(ge.message).toMatch(/outside guest memory/);
}

describe("GuestMemory translation", () => {
  it("sorts regions by gpa and translates into the right backing buffer", () => {
    const m = twoRegions();
    expect(m.regions.map((r) => r.gpa)).toEqual([0, 1 << 20]);
    m.write(0x100, Uint8Array.of(1, 2, 3));
    m.write((1 << 20) + 5, Uint8Array.of(9, 8));
    expect(Array.from(new Uint8Array(m.regions[0]!.buffer, 0x100, 3))).toEqual([1, 2, 3]);
    expect(Array.from(new Uint8Array(m.regions[1]!.buffer, 5, 2))).toEqual([9, 8]);
    const dst = new Uint8Array(2);
    m.read((1 << 20) + 5, dst);
    expect(Array.from(dst)).toEqual([9, 8]);
    expect(m.findRegion(0x100, 3)).toBe(0);
    expect(m.findRegion((1 << 20) + 5, 2)).toBe(1);
  });

  it("honours byteOffset: a region in the middle of a buffer", () => {
    const buf = new SharedArrayBuffer(8 * KiB);
    const m = new GuestMemory([{ gpa: 0x4000, size: 4 * KiB, buffer: buf, byteOffset: 2 * KiB }]);
    m.write(0x4000, Uint8Array.of(0x11));
    m.write(0x4000 + 4 * KiB - 1, Uint8Array.of(0x22));
    const all = new Uint8Array(buf);
    expect(all[2 * KiB]).toBe(0x11);
    expect(all[6 * KiB - 1]).toBe(0x22);
    expect(all[2 * KiB - 1]).toBe(0);
    expect(all[6 * KiB]).toBe(0);
    // Views stay inside the region.
    expect(m.regions[0]!.bytes.length).toBe(4 * KiB);
    expect(m.regions[0]!.u32!.length).toBe(KiB);
    expect(m.regions[0]!.u16!.length).toBe(2 * KiB);
  });

  it("has no 32/16-bit views when byteOffset is misaligned for them", () => {
    const buf = new SharedArrayBuffer(64);
    const odd = new GuestMemory([{ gpa: 0, size: 32, buffer: buf, byteOffset: 1 }]);
    expect(odd.regions[0]!.u16).toBeNull();
    expect(odd.regions[0]!.u32).toBeNull();
    const two = new GuestMemory([{ gpa: 0, size: 32, buffer: buf, byteOffset: 2 }]);
    expect(two.regions[0]!.u16).not.toBeNull();
    expect(two.regions[0]!.u32).toBeNull();
  });

  it("accepts the last byte of each region and rejects one past it", () => {
    const m = twoRegions();
    expect(m.isValid(64 * KiB - 1, 1)).toBe(true);
    expect(m.isValid(0, 64 * KiB)).toBe(true);
    expect(m.isValid(64 * KiB - 1, 2)).toBe(false);
    expect(m.isValid(64 * KiB, 1)).toBe(false);
    expect(m.isValid((1 << 20) + 16 * KiB - 1, 1)).toBe(true);
    expect(m.isValid((1 << 20) + 16 * KiB, 1)).toBe(false);
    expect(m.isValid((1 << 20) - 1, 1)).toBe(false);
    expect(m.slice(64 * KiB - 1, 1).length).toBe(1);
    expectOutside(() => m.slice(64 * KiB - 1, 2), 64 * KiB - 1, 2);
    expectOutside(() => m.slice((1 << 20) + 16 * KiB, 1), (1 << 20) + 16 * KiB, 1);
  });

  it("zero-length accesses are valid inside a region, up to its end", () => {
    const m = twoRegions();
    expect(m.isValid(0, 0)).toBe(true);
    expect(m.isValid(64 * KiB, 0)).toBe(true); // the end of a region is a valid empty range
    expect(m.slice(64 * KiB, 0).length).toBe(0);
    expect(m.isValid(128 * KiB, 0)).toBe(false); // in the hole
  });

  it("rejects accesses in the hole and ranges that span the hole", () => {
    const m = twoRegions();
    expectOutside(() => m.slice(0x80000, 4), 0x80000, 4);
    expectOutside(
      () => m.slice(64 * KiB - 4, (1 << 20) - 64 * KiB + 8),
      64 * KiB - 4,
      (1 << 20) - 64 * KiB + 8,
    );
    expect(m.findRegion(0x80000, 1)).toBe(-1);
    expectOutside(() => m.read(0x80000, new Uint8Array(1)), 0x80000, 1);
    expectOutside(() => m.write(0x80000, new Uint8Array(1)), 0x80000, 1);
  });

  it("rejects a range crossing two adjacent regions (one access must fit one region)", () => {
    const m = new GuestMemory([
      { gpa: 0, size: 4 * KiB, buffer: new SharedArrayBuffer(4 * KiB) },
      { gpa: 4 * KiB, size: 4 * KiB, buffer: new SharedArrayBuffer(4 * KiB) },
    ]);
    expect(m.isValid(4 * KiB - 8, 8)).toBe(true);
    expect(m.isValid(4 * KiB, 8)).toBe(true);
    expect(m.isValid(4 * KiB - 8, 16)).toBe(false);
    expectOutside(() => m.slice(4 * KiB - 8, 16), 4 * KiB - 8, 16);
  });

  it("rejects negative, fractional-free garbage and overflowing ranges", () => {
    const m = twoRegions();
    expect(m.isValid(-1, 1)).toBe(false);
    expect(m.isValid(0, -1)).toBe(false);
    expectOutside(() => m.slice(-1, 1), -1, 1);
    expectOutside(() => m.slice(0, -1), 0, -1);
    expect(m.isValid(Number.NaN, 1)).toBe(false);
    // gpa + len past 2^53 (where doubles stop being exact) must not wrap into a region.
    expect(m.isValid(MAX_SAFE_GPA, 1)).toBe(false);
    expect(m.isValid(MAX_SAFE_GPA - 1, 10)).toBe(false);
    expect(m.isValid(2 ** 64 - 16, 32)).toBe(false);
    expect(m.isValid(0, 2 ** 64)).toBe(false);
    expect(m.isValid(Number.POSITIVE_INFINITY, 1)).toBe(false);
  });

  it("a region ending exactly at 2^53 - 1 is usable up to its last byte", () => {
    const size = 4 * KiB;
    const gpa = MAX_SAFE_GPA - size;
    const m = new GuestMemory([{ gpa, size, buffer: new SharedArrayBuffer(size) }]);
    expect(m.isValid(gpa, size)).toBe(true);
    expect(m.isValid(MAX_SAFE_GPA - 1, 1)).toBe(true);
    expect(m.isValid(MAX_SAFE_GPA - 1, 2)).toBe(false);
    m.write(MAX_SAFE_GPA - 1, Uint8Array.of(0x5a));
    expect(new Uint8Array(m.regions[0]!.buffer)[size - 1]).toBe(0x5a);
  });

  it("allocate() gives one shared region at gpa 0", () => {
    const m = GuestMemory.allocate(64 * KiB);
    expect(m.regions.length).toBe(1);
    expect(m.regions[0]!.gpa).toBe(0);
    expect(m.regions[0]!.end).toBe(64 * KiB);
    expect(m.regions[0]!.buffer).toBeInstanceOf(SharedArrayBuffer);
  });
});

describe("gpaFromParts", () => {
  it("combines hi/lo words exactly below 2^53", () => {
    expect(gpaFromParts(0, 0)).toBe(0);
    expect(gpaFromParts(0, 0xffff_ffff)).toBe(0xffff_ffff);
    expect(gpaFromParts(1, 0)).toBe(TWO_32);
    expect(gpaFromParts(0x1f_ffff, 0xffff_ffff)).toBe(2 ** 53 - 1);
    expect(gpaFromParts(0x1f_ffff, 0xffff_fffe)).toBe(2 ** 53 - 2);
  });

  it("returns -1 from 2^53 up instead of rounding", () => {
    expect(gpaFromParts(0x20_0000, 0)).toBe(-1); // 2^53
    expect(gpaFromParts(0x20_0000, 1)).toBe(-1); // would round to 2^53
    expect(gpaFromParts(0xffff_ffff, 0xffff_ffff)).toBe(-1); // 2^64 - 1
    expect(gpaFromParts(0x8000_0000, 0)).toBe(-1);
  });
});

describe("describe() round trip", () => {
  it("rebuilds an equivalent GuestMemory over the same buffers", () => {
    const shared = new SharedArrayBuffer(32 * KiB);
    const m = new GuestMemory([
      { gpa: 0x10_0000, size: 8 * KiB, buffer: shared, byteOffset: 16 * KiB },
      { gpa: 0, size: 8 * KiB, buffer: shared, byteOffset: 4 * KiB },
    ]);
    const d = m.describe();
    expect(d).toEqual([
      { gpa: 0, size: 8 * KiB, buffer: shared, byteOffset: 4 * KiB },
      { gpa: 0x10_0000, size: 8 * KiB, buffer: shared, byteOffset: 16 * KiB },
    ]);
    const m2 = new GuestMemory(d);
    m.write(0x10_0000 + 7, Uint8Array.of(42));
    expect(m2.slice(0x10_0000 + 7, 1)[0]).toBe(42);
    m2.write(3, Uint8Array.of(24));
    expect(m.slice(3, 1)[0]).toBe(24);
    expect(m2.regions.map((r) => [r.gpa, r.size, r.byteOffset])).toEqual(
      m.regions.map((r) => [r.gpa, r.size, r.byteOffset]),
    );
  });

  it("survives structured cloning (what a worker receives) and still shares memory", () => {
    const m = GuestMemory.allocate(4 * KiB);
    const m2 = new GuestMemory(structuredClone(m.describe()));
    m2.write(100, Uint8Array.of(7));
    expect(m.slice(100, 1)[0]).toBe(7);
  });
});

describe("bad region definitions", () => {
  const buf = () => new SharedArrayBuffer(4 * KiB);
  it.each([
    ["no regions", [], /at least one region/],
    ["negative gpa", [{ gpa: -4096, size: 16, buffer: buf() }], /gpa must be a safe integer >= 0, got -4096/],
    ["fractional gpa", [{ gpa: 0.5, size: 16, buffer: buf() }], /gpa must be a safe integer/],
    ["unsafe gpa", [{ gpa: 2 ** 60, size: 16, buffer: buf() }], /gpa must be a safe integer/],
    ["zero size", [{ gpa: 0, size: 0, buffer: buf() }], /size must be a positive integer, got 0/],
    ["negative size", [{ gpa: 0, size: -1, buffer: buf() }], /size must be a positive integer/],
    ["past 2^53", [{ gpa: 2 ** 53 - 8, size: 16, buffer: buf() }], /runs past 2\^53/],
    [
      "larger than its buffer",
      [{ gpa: 0, size: 8 * KiB, buffer: buf() }],
      /does not fit in its buffer of 4096 bytes/,
    ],
    [
      "byteOffset pushes it out",
      [{ gpa: 0, size: 4 * KiB, buffer: buf(), byteOffset: 1 }],
      /does not fit in its buffer/,
    ],
    ["negative byteOffset", [{ gpa: 0, size: 16, buffer: buf(), byteOffset: -16 }], /does not fit/],
    [
      "overlap",
      [
        { gpa: 0, size: 4 * KiB, buffer: buf() },
        { gpa: 4 * KiB - 1, size: 16, buffer: buf() },
      ],
      /regions overlap/,
    ],
    [
      "overlap given out of order",
      [
        { gpa: 0x2000, size: 16, buffer: buf() },
        { gpa: 0x1000, size: 0x1001, buffer: new SharedArrayBuffer(0x1001) },
      ],
      /regions overlap/,
    ],
  ] as const)("%s", (_name, regions, msg) => {
    expect(() => new GuestMemory(regions as never)).toThrow(msg);
  });

  it("adjacent (touching) regions are not an overlap", () => {
    expect(
      () =>
        new GuestMemory([
          { gpa: 0, size: 16, buffer: buf() },
          { gpa: 16, size: 16, buffer: buf() },
        ]),
    ).not.toThrow();
  });
});

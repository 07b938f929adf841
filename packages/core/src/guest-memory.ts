/**
 * Guest physical memory: a sorted list of non-overlapping regions, each backed
 * by a (Shared)ArrayBuffer. Every access is checked against the regions; a
 * guest-physical address (GPA) is a JS number, exact below 2^53. Descriptors
 * carry 64-bit addresses: callers split them into hi/lo words and use
 * {@link gpaFromParts}, which rejects anything >= 2^53 instead of rounding.
 *
 *   GPA space                      backing
 *   0x0000_0000 +----------+      SharedArrayBuffer A [byteOffset .. +size)
 *               | region 0 | ---> (page aligned when allocated by the addon)
 *   0x4000_0000 +----------+
 *               |  (hole)  |      accesses here fail: GuestMemoryError
 *   0x1_0000_0000 ---------+
 *               | region 1 | ---> SharedArrayBuffer B
 *               +----------+
 */
import { GuestMemoryError } from "./errors.js";

export interface GuestRegionInit {
  /** Guest physical address of the first byte. */
  gpa: number;
  /** Region length in bytes. */
  size: number;
  /** Backing memory. A SharedArrayBuffer when other threads must see it. */
  buffer: SharedArrayBuffer | ArrayBuffer;
  /** Where the region starts in `buffer` (default 0). */
  byteOffset?: number;
}

export interface GuestRegion {
  readonly gpa: number;
  readonly size: number;
  readonly end: number; // gpa + size
  readonly buffer: SharedArrayBuffer | ArrayBuffer;
  readonly byteOffset: number;
  /** A byte view of exactly this region. */
  readonly bytes: Uint8Array;
  /** 32-bit and 16-bit views of the region (null when byteOffset is misaligned for them). */
  readonly u32: Uint32Array | null;
  readonly u16: Uint16Array | null;
}

const TWO_32 = 0x1_0000_0000;
/** Largest address we can represent exactly. */
export const MAX_SAFE_GPA = Number.MAX_SAFE_INTEGER;

/** Combine the two 32-bit halves of a 64-bit address; -1 when it does not fit in 2^53. */
export function gpaFromParts(hi: number, lo: number): number {
  if (hi >= 0x20_0000) return -1; // >= 2^53
  return hi * TWO_32 + lo;
}

export class GuestMemory {
  readonly regions: readonly GuestRegion[];
  /** Fast path: the first region's bounds (most VMs have one region). */
  private readonly r0Start: number;
  private readonly r0End: number;

  constructor(regions: GuestRegionInit[]) {
    if (regions.length === 0) throw new Error("GuestMemory needs at least one region");
    const rs: GuestRegion[] = regions
      .map((r) => {
        const byteOffset = r.byteOffset ?? 0;
        if (!Number.isSafeInteger(r.gpa) || r.gpa < 0)
          throw new Error(`region gpa must be a safe integer >= 0, got ${r.gpa}`);
        if (!Number.isSafeInteger(r.size) || r.size <= 0)
          throw new Error(`region size must be a positive integer, got ${r.size}`);
        if (r.gpa + r.size > MAX_SAFE_GPA)
          throw new Error(`region at ${r.gpa} of ${r.size} bytes runs past 2^53`);
        if (byteOffset < 0 || byteOffset + r.size > r.buffer.byteLength)
          throw new Error(
            `region [${byteOffset}, +${r.size}) does not fit in its buffer of ${r.buffer.byteLength} bytes`,
          );
        return {
          gpa: r.gpa,
          size: r.size,
          end: r.gpa + r.size,
          buffer: r.buffer,
          byteOffset,
          bytes: new Uint8Array(r.buffer, byteOffset, r.size),
          u32: byteOffset % 4 === 0 ? new Uint32Array(r.buffer, byteOffset, Math.floor(r.size / 4)) : null,
          u16: byteOffset % 2 === 0 ? new Uint16Array(r.buffer, byteOffset, Math.floor(r.size / 2)) : null,
        };
      })
      .sort((a, b) => a.gpa - b.gpa);
    for (let i = 1; i < rs.length; i++) {
      if (rs[i]!.gpa < rs[i - 1]!.end)
        throw new Error(`regions overlap: [${rs[i - 1]!.gpa}, ${rs[i - 1]!.end}) and [${rs[i]!.gpa}, ...)`);
    }
    this.regions = rs;
    this.r0Start = rs[0]!.gpa;
    this.r0End = rs[0]!.end;
  }

  /** One region of `size` bytes at GPA 0 over a new SharedArrayBuffer. */
  static allocate(size: number): GuestMemory {
    return new GuestMemory([{ gpa: 0, size, buffer: new SharedArrayBuffer(size) }]);
  }

  /** Index of the region holding [gpa, gpa+len) entirely, or -1. len may be 0. */
  findRegion(gpa: number, len: number): number {
    if (gpa >= this.r0Start && gpa + len <= this.r0End) return 0;
    const rs = this.regions;
    for (let i = 1; i < rs.length; i++) {
      const r = rs[i]!;
      if (gpa >= r.gpa && gpa + len <= r.end) return i;
    }
    return -1;
  }

  /** True when [gpa, gpa+len) lies inside one region. */
  isValid(gpa: number, len: number): boolean {
    return gpa >= 0 && len >= 0 && this.findRegion(gpa, len) >= 0;
  }

  /** A view of [gpa, gpa+len); throws GuestMemoryError when it is not inside one region. */
  slice(gpa: number, len: number): Uint8Array {
    const i = gpa >= 0 && len >= 0 ? this.findRegion(gpa, len) : -1;
    if (i < 0)
      throw new GuestMemoryError(
        `guest access [0x${gpa.toString(16)}, +${len}) outside guest memory`,
        gpa,
        len,
      );
    const r = this.regions[i]!;
    return r.bytes.subarray(gpa - r.gpa, gpa - r.gpa + len);
  }

  /**
   * A 32-bit view covering [gpa, gpa+len): the region's word array and the
   * word index of gpa. null when the range is not inside one region or gpa
   * is not 4-byte aligned in its backing buffer. (Ring and table readers.)
   */
  view32(gpa: number, len: number): { arr: Uint32Array; base: number } | null {
    const i = gpa >= 0 ? this.findRegion(gpa, len) : -1;
    if (i < 0) return null;
    const r = this.regions[i]!;
    const off = gpa - r.gpa;
    return r.u32 === null || off % 4 !== 0 ? null : { arr: r.u32, base: off / 4 };
  }

  /** The 16-bit counterpart of {@link view32} (2-byte alignment). */
  view16(gpa: number, len: number): { arr: Uint16Array; base: number } | null {
    const i = gpa >= 0 ? this.findRegion(gpa, len) : -1;
    if (i < 0) return null;
    const r = this.regions[i]!;
    const off = gpa - r.gpa;
    return r.u16 === null || off % 2 !== 0 ? null : { arr: r.u16, base: off / 2 };
  }

  read(gpa: number, dst: Uint8Array): void {
    dst.set(this.slice(gpa, dst.length));
  }

  write(gpa: number, src: Uint8Array): void {
    this.slice(gpa, src.length).set(src);
  }

  /** What a worker thread needs to rebuild this object (SharedArrayBuffers only). */
  describe(): GuestRegionInit[] {
    return this.regions.map((r) => ({
      gpa: r.gpa,
      size: r.size,
      buffer: r.buffer,
      byteOffset: r.byteOffset,
    }));
  }
}

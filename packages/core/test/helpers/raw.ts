/**
 * Raw ring access for tests: write descriptors and avail entries byte by
 * byte (little-endian, as the spec says), read used elements, and build
 * guest memory with canary-filled guard bytes around every region.
 */
import { GuestMemory, type RingAddresses } from "../../dist/index.js";

export interface RawDesc {
  /** 64-bit guest address (bigint for values past 2^53). */
  addr: bigint | number;
  len: number;
  flags?: number;
  next?: number;
}

export const F_NEXT = 1;
export const F_WRITE = 2;
export const F_INDIRECT = 4;

function view(mem: GuestMemory, gpa: number, len: number): DataView {
  const b = mem.slice(gpa, len);
  return new DataView(b.buffer, b.byteOffset, len);
}

/** Write descriptor `i` of the table at `tableGpa`. */
export function writeDesc(mem: GuestMemory, tableGpa: number, i: number, d: RawDesc): void {
  const v = view(mem, tableGpa + i * 16, 16);
  v.setBigUint64(0, BigInt(d.addr), true);
  v.setUint32(8, d.len >>> 0, true);
  v.setUint16(12, d.flags ?? 0, true);
  v.setUint16(14, d.next ?? 0, true);
}

export function readDesc(mem: GuestMemory, tableGpa: number, i: number): Required<RawDesc> {
  const v = view(mem, tableGpa + i * 16, 16);
  return {
    addr: v.getBigUint64(0, true),
    len: v.getUint32(8, true),
    flags: v.getUint16(12, true),
    next: v.getUint16(14, true),
  };
}

/** avail.ring[slot % size] = head */
export function setAvailRing(mem: GuestMemory, ring: RingAddresses, slot: number, head: number): void {
  view(mem, ring.availAddr + 4 + 2 * (slot % ring.size), 2).setUint16(0, head, true);
}

export function setAvailIdx(mem: GuestMemory, ring: RingAddresses, idx: number): void {
  view(mem, ring.availAddr + 2, 2).setUint16(0, idx & 0xffff, true);
}

export function setAvailFlags(mem: GuestMemory, ring: RingAddresses, flags: number): void {
  view(mem, ring.availAddr, 2).setUint16(0, flags, true);
}

/** Make `heads` available starting at avail slot `from` and publish avail.idx = from + heads.length. */
export function offer(mem: GuestMemory, ring: RingAddresses, from: number, ...heads: number[]): void {
  for (let i = 0; i < heads.length; i++) setAvailRing(mem, ring, from + i, heads[i]!);
  setAvailIdx(mem, ring, from + heads.length);
}

export function usedEvent(mem: GuestMemory, ring: RingAddresses): number {
  return view(mem, ring.availAddr + 4 + 2 * ring.size, 2).getUint16(0, true);
}

export function setUsedEvent(mem: GuestMemory, ring: RingAddresses, v: number): void {
  view(mem, ring.availAddr + 4 + 2 * ring.size, 2).setUint16(0, v & 0xffff, true);
}

export function availEvent(mem: GuestMemory, ring: RingAddresses): number {
  return view(mem, ring.usedAddr + 4 + 8 * ring.size, 2).getUint16(0, true);
}

export function usedFlags(mem: GuestMemory, ring: RingAddresses): number {
  return view(mem, ring.usedAddr, 2).getUint16(0, true);
}

export function usedIdx(mem: GuestMemory, ring: RingAddresses): number {
  return view(mem, ring.usedAddr + 2, 2).getUint16(0, true);
}

export function usedElem(mem: GuestMemory, ring: RingAddresses, slot: number): { id: number; len: number } {
  const v = view(mem, ring.usedAddr + 4 + 8 * (slot % ring.size), 8);
  return { id: v.getUint32(0, true), len: v.getUint32(4, true) };
}

/** vring_need_event written independently: does [old, new) (mod 2^16) contain `event`? */
export function crosses(event: number, newIdx: number, oldIdx: number): boolean {
  const n = (newIdx - oldIdx) & 0xffff;
  for (let i = 0; i < n; i++) if (((oldIdx + i) & 0xffff) === (event & 0xffff)) return true;
  return false;
}

export const CANARY = 0xa5;

export interface GuardedMemory {
  mem: GuestMemory;
  buffer: SharedArrayBuffer;
  /** Byte ranges of `buffer` outside every region. */
  guards: Array<[number, number]>;
  /** Offsets of guard bytes that no longer hold the canary (empty when intact). */
  damaged(): number[];
}

/**
 * Guest memory whose regions all live in ONE SharedArrayBuffer, with `guard`
 * canary bytes before, between and after them. Anything written outside the
 * regions shows up in damaged().
 */
export function guardedMemory(regions: Array<{ gpa: number; size: number }>, guard = 4096): GuardedMemory {
  if (guard % 16 !== 0) throw new Error("guard must keep 16-byte alignment");
  let total = guard;
  const inits = regions.map((r) => {
    const byteOffset = total;
    total += r.size + guard;
    total = Math.ceil(total / 16) * 16;
    return { ...r, byteOffset };
  });
  const buffer = new SharedArrayBuffer(total);
  const bytes = new Uint8Array(buffer);
  bytes.fill(CANARY);
  const guards: Array<[number, number]> = [];
  let pos = 0;
  for (const r of inits) {
    guards.push([pos, r.byteOffset]);
    bytes.fill(0, r.byteOffset, r.byteOffset + r.size);
    pos = r.byteOffset + r.size;
  }
  guards.push([pos, total]);
  const mem = new GuestMemory(inits.map((r) => ({ ...r, buffer })));
  return {
    mem,
    buffer,
    guards,
    damaged() {
      const bad: number[] = [];
      for (const [a, b] of guards) for (let i = a; i < b; i++) if (bytes[i] !== CANARY) bad.push(i);
      return bad;
    },
  };
}

/** Deterministic pseudo-random bytes (xorshift32), for data patterns. */
export function pattern(len: number, seed: number): Uint8Array {
  const out = new Uint8Array(len);
  let x = seed | 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

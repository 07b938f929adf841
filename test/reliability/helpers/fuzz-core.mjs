// Fuzzing the device side of vblk with fast-check: legal request streams
// written into guest memory (descriptor tables, indirect tables, avail ring,
// blk headers), then mutated with hostile values, then run against the
// device code. Shared by test/reliability/fuzz.test.ts (short CI runs) and
// scripts/fuzz.mjs (long runs). Plain .mjs so the script runs it without a
// TypeScript step; types in fuzz-core.d.mts.
//
//   guest SAB:  [guard][R0: GPA 0 .. 0x40000][guard][R1: GPA 0x100000 .. +0x10002][guard]
//   disk SAB:   [disk: CAP_SECTORS x 512][guard]           (guards hold CANARY)
//
//   per request slot (8 KiB, in R0 from 0x10000 or R1 from 0x101000):
//     +0x000 header (16)  +0x010 discard/write-zeroes segment  +0x020 status
//     +0x100 indirect table   +0x1f0 header merged with the data   +0x200 data
//
// Properties checked after every run (in process: SplitQueue +
// parseBlkRequest + MemoryEngine, popped one at a time):
//   - nothing but VirtqueueError / BlkProtocolError escapes (-> NEEDS_RESET)
//   - no byte outside guest memory (or past the disk) changed: canaries intact
//   - the device ends OK (everything visible popped and completed) or NEEDS_RESET
//   - every legal request before the mutated one completed correctly: used
//     element (head, len), status byte, read data, disk contents
// Through a real VirtioBlkDevice (IOThreads), the same streams are checked
// against this in-process reference run in batch mode, byte for byte.

import {
  BlkProtocolError,
  BlkRequest,
  BlkStatus,
  BlkType,
  encodeSerial,
  finishBlkRequest,
  GuestMemory,
  layoutSplitRing,
  MemoryEngine,
  parseBlkRequest,
  SplitQueue,
  VirtqueueError,
  writeBlkStatus,
} from "@vblk/core";
import fc from "fast-check";

export const GUARD = 4096;
export const CANARY = 0xa5;
export const R0_SIZE = 0x40000;
export const R1_GPA = 0x100000;
export const R1_SIZE = 0x10002;
export const HOLE = 0x80000;
export const CAP_SECTORS = 256;
const SLOT = 0x2000;
const R0_SLOTS = { base: 0x10000, n: 8 };
const R1_SLOTS = { base: R1_GPA + 0x1000, n: 7 };
const F_NEXT = 1;
const F_WRITE = 2;
const F_INDIRECT = 4;
const SERIAL = encodeSerial("vblk-fuzz");
const TWO64 = 1n << 64n;

// ---- memory with guards ------------------------------------------------------

/** Guest memory (two regions with a hole) inside one SAB whose other bytes are canaries. */
export function guardedMemory() {
  const r0Off = GUARD;
  const r1Off = GUARD + R0_SIZE + GUARD;
  const total = r1Off + R1_SIZE + GUARD + 2;
  const buffer = new SharedArrayBuffer(total);
  const bytes = new Uint8Array(buffer);
  const guards = [
    [0, r0Off],
    [r0Off + R0_SIZE, r1Off],
    [r1Off + R1_SIZE, total],
  ];
  const mem = new GuestMemory([
    { gpa: 0, size: R0_SIZE, buffer, byteOffset: r0Off },
    { gpa: R1_GPA, size: R1_SIZE, buffer, byteOffset: r1Off },
  ]);
  const g = {
    buffer,
    bytes,
    mem,
    guards,
    /** Zero the regions, canary the guards. */
    reset() {
      bytes.fill(0);
      for (const [a, b] of guards) bytes.fill(CANARY, a, b);
    },
    /** First changed guard byte (SAB offset), or -1. */
    firstBadGuard() {
      for (const [a, b] of guards) for (let i = a; i < b; i++) if (bytes[i] !== CANARY) return i;
      return -1;
    },
    /** A GuestMemory with the same layout over a copy of this buffer (a reference run). */
    copy() {
      const c = new SharedArrayBuffer(total);
      new Uint8Array(c).set(bytes);
      return {
        bytes: new Uint8Array(c),
        mem: new GuestMemory([
          { gpa: 0, size: R0_SIZE, buffer: c, byteOffset: r0Off },
          { gpa: R1_GPA, size: R1_SIZE, buffer: c, byteOffset: r1Off },
        ]),
      };
    },
  };
  g.reset();
  return g;
}

/** A disk of `sectors` with a canary guard after it (the engine sees the guard as disk: the parser must stop it). */
export function guardedDisk(sectors = CAP_SECTORS) {
  const cap = sectors * 512;
  const buffer = new SharedArrayBuffer(cap + GUARD);
  const bytes = new Uint8Array(buffer);
  return {
    buffer,
    bytes,
    cap,
    reset(seed) {
      let x = (seed | 1) >>> 0;
      for (let i = 0; i < cap; i += 4) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        x >>>= 0;
        bytes[i] = x;
        bytes[i + 1] = x >>> 8;
        bytes[i + 2] = x >>> 16;
        bytes[i + 3] = x >>> 24;
      }
      bytes.fill(CANARY, cap);
    },
    firstBadGuard() {
      for (let i = cap; i < bytes.length; i++) if (bytes[i] !== CANARY) return i;
      return -1;
    },
  };
}

// ---- raw little-endian writes into guest memory -------------------------------

function dv(mem, gpa, len) {
  const b = mem.slice(gpa, len);
  return new DataView(b.buffer, b.byteOffset, len);
}
function writeDesc(mem, tableGpa, i, addr, len, flags, next) {
  const v = dv(mem, tableGpa + i * 16, 16);
  v.setBigUint64(0, BigInt(addr) % TWO64, true);
  v.setUint32(8, len >>> 0, true);
  v.setUint16(12, flags & 0xffff, true);
  v.setUint16(14, next & 0xffff, true);
}

// ---- arbitraries -------------------------------------------------------------

const REQ_TYPES = ["in", "out", "flush", "getid", "discard", "wz", "unknown", "badsector"];

export const requestArb = fc.record({
  type: fc.constantFrom(...REQ_TYPES),
  sector: fc.nat(CAP_SECTORS - 1),
  nsec: fc.integer({ min: 1, max: 8 }),
  framing: fc.nat(3),
  indirect: fc.boolean(),
  region: fc.nat(1),
  unmap: fc.boolean(),
});

const u64Hostile = fc.oneof(
  fc.constantFrom(
    0n,
    0x1000n,
    BigInt(R0_SIZE - 1),
    BigInt(R0_SIZE - 8),
    BigInt(R0_SIZE),
    BigInt(HOLE),
    BigInt(R1_GPA - 1),
    BigInt(R1_GPA + R1_SIZE - 1),
    BigInt(R1_GPA + R1_SIZE),
    (1n << 32n) - 1n,
    1n << 32n,
    (1n << 53n) - 1n,
    1n << 53n,
    1n << 63n,
    TWO64 - 16n,
    TWO64 - 1n,
  ),
  fc.bigInt({ min: 0n, max: TWO64 - 1n }),
  fc.bigInt({ min: 0n, max: BigInt(R1_GPA + R1_SIZE + 0x1000) }),
);
const u32Hostile = fc.oneof(
  fc.constantFrom(
    0,
    1,
    15,
    16,
    17,
    511,
    512,
    4096,
    0x7fffffff,
    0x80000000,
    0xfffffff0,
    0xfffffe00,
    0xffffffff,
  ),
  fc.integer({ min: 0, max: 0xffffffff }),
  fc.integer({ min: 0, max: 0x11000 }),
);
const u16Hostile = fc.oneof(
  fc.constantFrom(0, 1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 33, 0x7fff, 0x8000, 0xffff),
  fc.integer({ min: 0, max: 0xffff }),
);
const sectorHostile = fc.oneof(
  fc.constantFrom(
    TWO64 - 1n,
    TWO64 - 8n,
    1n << 63n,
    (1n << 53n) / 512n,
    (1n << 53n) / 512n - 1n,
    1n << 44n,
    (1n << 44n) - 1n,
    BigInt(CAP_SECTORS - 1),
    BigInt(CAP_SECTORS),
    BigInt(CAP_SECTORS + 1),
    0n,
  ),
  fc.bigInt({ min: 0n, max: TWO64 - 1n }),
);
const typeHostile = fc.oneof(
  fc.constantFrom(0, 1, 4, 8, 10, 11, 13, 14, 0x80000000, 0xffffffff),
  fc.integer({ min: 0, max: 0xffffffff }),
);
const byte = fc.integer({ min: 0, max: 255 });

export const mutationArb = fc.oneof(
  fc.record({ kind: fc.constant("desc"), at: fc.nat(15), field: fc.constant("addr"), v: u64Hostile }),
  fc.record({ kind: fc.constant("desc"), at: fc.nat(15), field: fc.constant("len"), v: u32Hostile }),
  fc.record({
    kind: fc.constant("desc"),
    at: fc.nat(15),
    field: fc.constant("flags"),
    v: fc.oneof(fc.constantFrom(0, 1, 2, 3, 4, 5, 6, 7), fc.integer({ min: 0, max: 0xffff })),
  }),
  fc.record({ kind: fc.constant("desc"), at: fc.nat(15), field: fc.constant("next"), v: u16Hostile }),
  fc.record({ kind: fc.constant("header"), field: fc.constant("type"), v: typeHostile }),
  fc.record({ kind: fc.constant("header"), field: fc.constant("sector"), v: sectorHostile }),
  fc.record({
    kind: fc.constant("dwz"),
    field: fc.constantFrom("sector", "nsec", "flags"),
    v: fc.oneof(sectorHostile, u32Hostile.map(BigInt)),
  }),
  fc.record({ kind: fc.constant("availSlot"), v: u16Hostile }),
  fc.record({
    kind: fc.constant("availIdx"),
    v: fc.oneof(fc.constantFrom(-2, -1, 1, 2, 16, 17, 33, 32768, 65535), fc.integer({ min: 0, max: 0xffff })),
  }),
  fc.record({ kind: fc.constant("slotByte"), off: fc.nat(0x1300), v: byte }),
  fc.record({ kind: fc.constant("descByte"), at: fc.nat(15), off: fc.nat(15), v: byte }),
);

export const streamArb = fc.record({
  size: fc.constantFrom(4, 8, 16, 32),
  layout: fc.constantFrom("low", "edge"),
  indirectNeg: fc.boolean(),
  eventIdx: fc.boolean(),
  perm: fc.shuffledSubarray([...Array(32).keys()], { minLength: 32, maxLength: 32 }),
  reqs: fc.array(requestArb, { minLength: 1, maxLength: 12 }),
  k: fc.nat(15),
  mutations: fc.oneof(
    { weight: 1, arbitrary: fc.constant([]) },
    { weight: 9, arbitrary: fc.array(mutationArb, { minLength: 1, maxLength: 3 }) },
  ),
  seed: fc.nat(),
});

// ---- building a stream --------------------------------------------------------

export function ringFor(size, layout, base = 0x1000) {
  if (layout === "edge") {
    return {
      size,
      descAddr: R1_GPA,
      availAddr: R0_SIZE - (6 + 2 * size),
      usedAddr: R1_GPA + R1_SIZE - (6 + 8 * size),
    };
  }
  const r = layoutSplitRing(size, base);
  return { size, descAddr: r.descAddr, availAddr: r.availAddr, usedAddr: r.usedAddr };
}

function fillPattern(b, seed) {
  let x = (seed * 2654435761 + 12345) >>> 0 || 1;
  for (let i = 0; i < b.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x;
  }
}

/**
 * Write a legal stream into guest memory: descriptors, indirect tables,
 * headers, data, avail ring (not avail.idx: returned as `availIdx`).
 * Returns the requests as built (with what each expects) and where their
 * parts are, for mutations and checks.
 */
export function buildStream(mem, s, opts = {}) {
  const ring = opts.ring ?? ringFor(s.size, s.layout);
  const slotsLeft = [R0_SLOTS.n, R1_SLOTS.n];
  const perm = s.perm.filter((i) => i < s.size);
  let descUsed = 0;
  const built = [];
  for (let i = 0; i < s.reqs.length && i < s.size; i++) {
    const spec = s.reqs[i];
    let region = spec.region;
    if (slotsLeft[region] === 0) region = 1 - region;
    if (slotsLeft[region] === 0) break;
    const slotIdx = (region === 0 ? R0_SLOTS.n : R1_SLOTS.n) - slotsLeft[region];
    const slot = (region === 0 ? R0_SLOTS.base : R1_SLOTS.base) + slotIdx * SLOT;
    slotsLeft[region]--;
    const L = spec.nsec * 512;
    const H = slot;
    const SEG = slot + 0x10;
    const ST = slot + 0x20;
    const TABLE = slot + 0x100;
    const HM = slot + 0x1f0;
    const D = slot + 0x200;
    const segs = []; // [gpa, len, writable]
    let type;
    let sector = spec.sector;
    let statusGpa = ST;
    const dataGpa = D;
    let dataLen = 0;
    const split = (gpa, len, n, w) => {
      const a = Math.max(1, Math.floor(len / n));
      let off = 0;
      for (let j = 0; j < n - 1 && off + a < len; j++) {
        segs.push([gpa + off, a, w]);
        off += a;
      }
      segs.push([gpa + off, len - off, w]);
    };
    switch (spec.type) {
      case "in":
      case "badsector": {
        type = BlkType.IN;
        if (spec.type === "badsector") sector = CAP_SECTORS - spec.nsec + 1 + (spec.sector % 16);
        else sector = Math.min(sector, CAP_SECTORS - spec.nsec);
        dataLen = L;
        segs.push([H, 16, false]);
        if (spec.framing === 1) {
          segs.push([D, L + 1, true]);
          statusGpa = D + L;
        } else if (spec.framing >= 2) {
          split(D, L, spec.framing, true);
          segs.push([ST, 1, true]);
        } else {
          segs.push([D, L, true], [ST, 1, true]);
        }
        break;
      }
      case "out": {
        type = BlkType.OUT;
        sector = Math.min(sector, CAP_SECTORS - spec.nsec);
        dataLen = L;
        fillPattern(mem.slice(D, L), s.seed + i);
        if (spec.framing === 1) {
          segs.push([HM, 16 + L, false]); // the header at HM runs straight into the data at D
        } else if (spec.framing >= 2) {
          segs.push([H, 16, false]);
          split(D, L, spec.framing, false);
        } else segs.push([H, 16, false], [D, L, false]);
        segs.push([ST, 1, true]);
        break;
      }
      case "flush":
        type = BlkType.FLUSH;
        sector = 0;
        segs.push([H, 16, false], [ST, 1, true]);
        break;
      case "getid":
        type = BlkType.GET_ID;
        sector = 0;
        dataLen = 20;
        segs.push([H, 16, false]);
        if (spec.framing === 1) {
          segs.push([D, 21, true]);
          statusGpa = D + 20;
        } else if (spec.framing >= 2) {
          segs.push([D, 10, true], [D + 10, 10, true], [ST, 1, true]);
        } else segs.push([D, 20, true], [ST, 1, true]);
        break;
      case "discard":
      case "wz": {
        type = spec.type === "discard" ? BlkType.DISCARD : BlkType.WRITE_ZEROES;
        const dsec = Math.min(spec.sector, CAP_SECTORS - spec.nsec);
        const v = dv(mem, SEG, 16);
        v.setBigUint64(0, BigInt(dsec), true);
        v.setUint32(8, spec.nsec, true);
        v.setUint32(12, spec.type === "wz" && spec.unmap ? 1 : 0, true);
        sector = 0;
        if (spec.framing === 1) segs.push([H, 32, false]);
        else segs.push([H, 16, false], [SEG, 16, false]);
        segs.push([ST, 1, true]);
        break;
      }
      default:
        type = 0x77; // unknown: UNSUPP
        sector = 0;
        segs.push([H, 16, false], [ST, 1, true]);
    }
    const hdr = spec.type === "out" && spec.framing === 1 ? HM : H;
    const hv = dv(mem, hdr, 16);
    hv.setUint32(0, type, true);
    hv.setUint32(4, 0, true);
    hv.setBigUint64(8, BigInt(sector), true);
    mem.slice(statusGpa, 1)[0] = 0xff;

    const indirect = spec.indirect && s.indirectNeg && segs.length <= 16;
    const need = indirect ? 1 : segs.length;
    if (descUsed + need > perm.length) break;
    const idx = perm.slice(descUsed, descUsed + need);
    descUsed += need;
    const head = idx[0];
    if (indirect) {
      segs.forEach(([g, l, w], j) => {
        writeDesc(mem, TABLE, j, g, l, (w ? F_WRITE : 0) | (j + 1 < segs.length ? F_NEXT : 0), j + 1);
      });
      writeDesc(mem, ring.descAddr, head, TABLE, segs.length * 16, F_INDIRECT, 0);
    } else {
      segs.forEach(([g, l, w], j) => {
        const last = j + 1 === segs.length;
        writeDesc(
          mem,
          ring.descAddr,
          idx[j],
          g,
          l,
          (w ? F_WRITE : 0) | (last ? 0 : F_NEXT),
          last ? 0 : idx[j + 1],
        );
      });
    }
    dv(mem, ring.availAddr + 4 + 2 * (i % s.size), 2).setUint16(0, head, true);
    built.push({
      i,
      kind: spec.type,
      type,
      head,
      descIdx: idx,
      indirect,
      table: TABLE,
      nsegs: segs.length,
      slot,
      header: hdr,
      seg: SEG,
      statusGpa,
      dataGpa,
      dataLen,
      sector:
        spec.type === "discard" || spec.type === "wz"
          ? Math.min(spec.sector, CAP_SECTORS - spec.nsec)
          : sector,
      nsec: spec.nsec,
      writableBytes: segs.filter((x) => x[2]).reduce((a, x) => a + x[1], 0),
    });
  }
  return { ring, built, availIdx: built.length };
}

/**
 * Apply mutations to request k (or to the avail index). Returns the avail
 * index to publish and `visible`: how many leading requests the device may
 * legitimately see (0 when the index jumped past the queue size).
 */
export function mutate(mem, s, stream, k, mutations) {
  const { ring, built } = stream;
  let availIdx = stream.availIdx;
  const target = built[k];
  for (const m of mutations) {
    if (m.kind === "availIdx") {
      availIdx = (stream.availIdx + m.v + 0x10000) & 0xffff;
      continue;
    }
    if (target === undefined) continue;
    switch (m.kind) {
      case "desc":
      case "descByte": {
        // Request k's descriptors: the ring ones, then (indirect) its table's entries.
        const n = target.indirect ? 1 + target.nsegs : target.descIdx.length;
        const a = m.at % n;
        const gpa =
          target.indirect && a > 0 ? target.table + (a - 1) * 16 : ring.descAddr + target.descIdx[a] * 16;
        const v = dv(mem, gpa, 16);
        if (m.kind === "descByte") v.setUint8(m.off, m.v);
        else if (m.field === "addr") v.setBigUint64(0, m.v, true);
        else if (m.field === "len") v.setUint32(8, m.v, true);
        else if (m.field === "flags") v.setUint16(12, m.v, true);
        else v.setUint16(14, m.v, true);
        break;
      }
      case "header": {
        const v = dv(mem, target.header, 16);
        if (m.field === "type") v.setUint32(0, m.v, true);
        else v.setBigUint64(8, m.v, true);
        break;
      }
      case "dwz": {
        const v = dv(mem, target.seg, 16);
        if (m.field === "sector") v.setBigUint64(0, m.v % TWO64, true);
        else if (m.field === "nsec") v.setUint32(8, Number(m.v & 0xffffffffn), true);
        else v.setUint32(12, Number(m.v & 0xffffffffn), true);
        break;
      }
      case "availSlot":
        dv(mem, ring.availAddr + 4 + 2 * (k % s.size), 2).setUint16(0, m.v, true);
        break;
      case "slotByte":
        mem.slice(target.slot + m.off, 1)[0] = m.v;
        break;
    }
  }
  const visible = availIdx <= s.size ? availIdx : 0;
  return { availIdx, visible };
}

// ---- the device side, in process -----------------------------------------------

export function blkParams(capacityBytes) {
  return {
    capacityBytes,
    logicalBlockSize: 512,
    readOnly: false,
    segMax: 254,
    discard: true,
    writeZeroes: true,
    maxDiscardSectors: 0x3fffff,
    maxWriteZeroesSectors: 0x3fffff,
    serial: SERIAL,
  };
}

function typed(e) {
  return e instanceof VirtqueueError || e instanceof BlkProtocolError;
}
function codeOf(e) {
  return e instanceof VirtqueueError ? e.code : "BLK_PROTOCOL";
}

/** What the model says request b does: status, used.len, read data; applies writes to the model disk. */
function expectAndApply(b, model) {
  const off = b.sector * 512;
  const L = b.nsec * 512;
  switch (b.kind) {
    case "in":
      return { status: BlkStatus.OK, len: L + 1, data: model.slice(off, off + L) };
    case "badsector":
      return { status: BlkStatus.IOERR, len: 1 };
    case "out":
      return { status: BlkStatus.OK, len: 1, write: [off, L] };
    case "flush":
      return { status: BlkStatus.OK, len: 1 };
    case "getid":
      return { status: BlkStatus.OK, len: 21, data: SERIAL };
    case "discard":
    case "wz":
      model.fill(0, off, off + L);
      return { status: BlkStatus.OK, len: 1 };
    default:
      return { status: BlkStatus.UNSUPP, len: 1 };
  }
}

function usedElem(mem, ring, idx) {
  const v = dv(mem, ring.usedAddr + 4 + 8 * (idx % ring.size), 8);
  return [v.getUint32(0, true), v.getUint32(4, true)];
}

/**
 * One fuzz case in process, popped and completed one request at a time,
 * each legal request before k verified as soon as it completes. Returns
 * { outcome: "OK" | code, completed, verified }; throws on a property violation.
 */
export function runStepCase(g, disk, s) {
  g.reset();
  disk.reset(s.seed);
  const mem = g.mem;
  const stream = buildStream(mem, s);
  const n = stream.built.length;
  const k = n === 0 ? 0 : s.mutations.length === 0 ? n : s.k % n;
  const { availIdx, visible } = mutate(mem, s, stream, k, s.mutations);
  dv(mem, stream.ring.availAddr + 2, 2).setUint16(0, availIdx, true);
  const model = disk.bytes.slice(0, disk.cap);
  const params = blkParams(disk.cap);
  let outcome = "OK";
  let popped = 0;
  let verified = 0;
  const expectVerified = Math.min(k, visible, n);
  let q;
  try {
    q = new SplitQueue(mem, { ...stream.ring, eventIdx: s.eventIdx, indirect: s.indirectNeg });
  } catch (e) {
    if (!typed(e)) throw e;
    throw new Error(`a legal ring was refused: ${e.message}`);
  }
  const engine = new MemoryEngine(disk.buffer, mem);
  const pool = [];
  for (;;) {
    let chain;
    let r;
    try {
      chain = q.pop();
      if (chain === null) break;
      r = pool[chain.head] ?? new BlkRequest();
      pool[chain.head] = r;
      const io = parseBlkRequest(chain, mem, params, r);
      const head = chain.head;
      if (io) {
        r.tag = head;
        engine.enqueue(r);
        engine.submit();
        engine.reap((tag, res) => {
          finishBlkRequest(r, res);
          writeBlkStatus(r, mem);
          q.push(tag, r.usedLen);
        });
      } else {
        writeBlkStatus(r, mem);
        q.push(head, r.usedLen);
      }
      q.publish();
    } catch (e) {
      if (!typed(e)) throw e;
      outcome = codeOf(e);
      break;
    }
    const j = popped++;
    if (j < expectVerified) {
      const b = stream.built[j];
      const exp = expectAndApply(b, model);
      const [id, len] = usedElem(mem, stream.ring, j);
      const fail = (what) => {
        throw new Error(`legal request ${j} (${b.kind}, head ${b.head}) before the mutated one: ${what}`);
      };
      if (id !== b.head) fail(`used id ${id}, expected ${b.head}`);
      if (len !== exp.len) fail(`used len ${len}, expected ${exp.len}`);
      const st = mem.slice(b.statusGpa, 1)[0];
      if (st !== exp.status) fail(`status ${st}, expected ${exp.status}`);
      if (exp.data !== undefined && Buffer.compare(mem.slice(b.dataGpa, exp.data.length), exp.data) !== 0)
        fail("read data differs from the disk");
      if (exp.write !== undefined) {
        const [off, L] = exp.write;
        model.set(mem.slice(b.dataGpa, L), off);
      }
      if (Buffer.compare(disk.bytes.subarray(0, disk.cap), model) !== 0) fail("disk differs from the model");
      verified++;
    }
  }
  if (verified !== expectVerified)
    throw new Error(
      `only ${verified} of the ${expectVerified} legal requests before the mutated one completed (device: ${outcome})`,
    );
  if (outcome === "OK") {
    if (q.inflight !== 0) throw new Error(`device OK but ${q.inflight} requests still in flight`);
    if (popped !== visible) throw new Error(`device OK but popped ${popped} of ${visible} visible requests`);
  }
  const bad = g.firstBadGuard();
  if (bad >= 0)
    throw new Error(`guest memory guard byte at SAB offset ${bad} changed: access outside guest memory`);
  const badDisk = disk.firstBadGuard();
  if (badDisk >= 0) throw new Error(`disk guard byte at ${badDisk} changed: I/O past the capacity`);
  return { outcome, popped, verified, n, k };
}

/**
 * The IOThread's loop in process, batch mode (pop everything, enqueue, one
 * submit, reap, publish), as the reference for the real device.
 */
export function runBatchReference(mem, diskBuffer, capacityBytes, ring, features) {
  const params = blkParams(capacityBytes);
  params.segMax = features.segMax ?? 254;
  params.discard = features.discard ?? true;
  params.writeZeroes = features.writeZeroes ?? true;
  params.maxDiscardSectors = features.maxDiscardSectors ?? params.maxDiscardSectors;
  params.maxWriteZeroesSectors = features.maxWriteZeroesSectors ?? params.maxWriteZeroesSectors;
  params.serial = features.serial ?? SERIAL;
  const q = new SplitQueue(mem, { ...ring, eventIdx: features.eventIdx, indirect: features.indirect });
  const engine = new MemoryEngine(diskBuffer, mem);
  const pool = [];
  let outcome = "OK";
  try {
    if (q.hasPending()) {
      q.disableNotification();
      for (;;) {
        const chain = q.pop();
        if (chain === null) break;
        const r = pool[chain.head] ?? new BlkRequest();
        pool[chain.head] = r;
        if (parseBlkRequest(chain, mem, params, r)) {
          r.tag = chain.head;
          engine.enqueue(r);
        } else {
          writeBlkStatus(r, mem);
          q.push(chain.head, r.usedLen);
        }
      }
    }
  } catch (e) {
    if (!typed(e)) throw e;
    outcome = codeOf(e);
  }
  engine.submit();
  engine.reap((tag, res) => {
    const r = pool[tag];
    finishBlkRequest(r, res);
    writeBlkStatus(r, mem);
    q.push(tag, r.usedLen);
  });
  q.publish();
  return { outcome, usedIdx: q.nextUsed };
}

// ---- hostile queue geometry ----------------------------------------------------------

const anyAddr = fc.integer({ min: 0, max: R1_GPA + R1_SIZE + 64 });
const inRegion = fc.oneof(
  fc.integer({ min: 0, max: R0_SIZE }),
  fc.integer({ min: R1_GPA, max: R1_GPA + R1_SIZE }),
  anyAddr,
);
const aligned = (a) => inRegion.map((x) => x - (x % a));
export const geometryArb = fc.record({
  size: fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(1, 2, 4, 8, 16, 32, 64, 256, 1024) },
    {
      weight: 1,
      arbitrary: fc.constantFrom(
        0,
        3,
        5,
        6,
        7,
        100,
        1000,
        32767,
        32768,
        65535,
        65536,
        2 ** 31,
        -1,
        1.5,
        Number.NaN,
      ),
    },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: 70000 }) },
  ),
  desc: fc.oneof(
    fc.constantFrom(0, 0x1000, R0_SIZE - 16, R0_SIZE, HOLE, R1_GPA, R1_GPA + R1_SIZE - 16, 2 ** 53, 2 ** 64),
    { weight: 6, arbitrary: aligned(16) },
    anyAddr,
  ),
  avail: fc.oneof(
    fc.constantFrom(0x2000, R0_SIZE - 6, R0_SIZE - 2, R1_GPA - 2, R1_GPA + R1_SIZE - 6, 1),
    { weight: 6, arbitrary: aligned(2) },
    anyAddr,
  ),
  used: fc.oneof(
    fc.constantFrom(0x3000, R0_SIZE - 14, R1_GPA + R1_SIZE - 14, R1_GPA + R1_SIZE - 12, 2),
    { weight: 6, arbitrary: aligned(4) },
    anyAddr,
  ),
  eventIdx: fc.boolean(),
  indirect: fc.boolean(),
  garbage: fc.nat(),
  availIdx: fc.oneof({ weight: 4, arbitrary: fc.nat(40) }, fc.integer({ min: 0, max: 0xffff })),
});

/**
 * A queue at hostile sizes/addresses over random ring bytes: constructing it
 * and popping/parsing/executing whatever it yields may only throw the typed
 * errors, and must not touch anything outside guest memory.
 */
export function runGeometryCase(g, disk, c) {
  g.reset();
  disk.reset(c.garbage);
  // Random bytes over the whole of R0's first 64 KiB and R1 (rings, tables, buffers).
  const junk = (gpa, len) => fillPattern(g.mem.slice(gpa, len), c.garbage + gpa);
  junk(0, 0x10000);
  junk(R0_SIZE - 0x1000, 0x1000);
  junk(R1_GPA, R1_SIZE);
  let q;
  try {
    q = new SplitQueue(g.mem, {
      size: c.size,
      descAddr: c.desc,
      availAddr: c.avail,
      usedAddr: c.used,
      eventIdx: c.eventIdx,
      indirect: c.indirect,
    });
  } catch (e) {
    if (!typed(e)) throw e;
    return { outcome: `ctor:${codeOf(e)}` };
  }
  dv(g.mem, c.avail + 2, 2).setUint16(0, c.availIdx, true);
  const engine = new MemoryEngine(disk.buffer, g.mem);
  const params = blkParams(disk.cap);
  const pool = [];
  let outcome = "OK";
  try {
    for (let i = 0; i < 64; i++) {
      const chain = q.pop();
      if (chain === null) break;
      const r = pool[chain.head] ?? new BlkRequest();
      pool[chain.head] = r;
      if (parseBlkRequest(chain, g.mem, params, r)) {
        r.tag = chain.head;
        engine.enqueue(r);
        engine.submit();
        engine.reap((tag, res) => {
          finishBlkRequest(r, res);
          writeBlkStatus(r, g.mem);
          q.push(tag, r.usedLen);
        });
      } else {
        writeBlkStatus(r, g.mem);
        q.push(chain.head, r.usedLen);
      }
      q.publish();
    }
  } catch (e) {
    if (!typed(e)) throw e;
    outcome = codeOf(e);
  }
  const bad = g.firstBadGuard();
  if (bad >= 0) throw new Error(`guest memory guard byte at SAB offset ${bad} changed`);
  const badDisk = disk.firstBadGuard();
  if (badDisk >= 0) throw new Error(`disk guard byte at ${badDisk} changed`);
  return { outcome };
}

/** Count outcomes: { OK: n, HEAD_OUT_OF_RANGE: n, ... }. */
export function tally(map, key) {
  map[key] = (map[key] ?? 0) + 1;
}

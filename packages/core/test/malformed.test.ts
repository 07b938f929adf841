/**
 * Every malformed-input class of docs/reference.md that the queue or the
 * blk parser detects, built from raw bytes in guest memory. Each case must
 * throw the specific typed error (nothing else may escape) and must not
 * touch a byte outside guest memory: the regions sit inside one larger
 * SharedArrayBuffer whose guard bytes hold a canary.
 *
 *   buffer:  [guard][region 0: gpa 0 .. 0x40000][guard][region 1: gpa 0x100000 .. +0x10002][guard]
 *   rings (at the very edges of the regions, so their last bytes touch the guards):
 *     descriptor table  at 0x100000 (start of region 1)
 *     available ring    ends exactly at 0x40000 (end of region 0)
 *     used ring         ends exactly at 0x110002 (end of region 1)
 */
import { afterEach, describe, expect, it } from "vitest";
import {
  BlkProtocolError,
  BlkRequest,
  BlkStatus,
  encodeSerial,
  GuestMemory,
  parseBlkRequest,
  type RingAddresses,
  SplitQueue,
  VirtqueueError,
  type VirtqueueErrorCode,
} from "../dist/index.js";
import {
  F_INDIRECT,
  F_NEXT,
  F_WRITE,
  type GuardedMemory,
  guardedMemory,
  offer,
  type RawDesc,
  setAvailIdx,
  usedIdx,
  writeDesc,
} from "./helpers/raw.js";

const R0_END = 0x40000;
const R1 = 0x100000;
const R1_SIZE = 0x10002;
const R1_END = R1 + R1_SIZE;
const HOLE = 0x80000;
const DATA = 0x1000;
const TABLE = 0x20000; // indirect tables, in region 0
const TWO_64 = 1n << 64n;

function edgeRing(size: number): RingAddresses {
  return { size, descAddr: R1, availAddr: R0_END - (6 + 2 * size), usedAddr: R1_END - (6 + 8 * size) };
}

interface Fx {
  g: GuardedMemory;
  mem: GuestMemory;
  ring: RingAddresses;
  q: SplitQueue;
  /** Write descriptor i of the ring's table. */
  d(i: number, desc: RawDesc): void;
  /** Write entry i of an indirect table at `at`. */
  t(i: number, desc: RawDesc, at?: number): void;
}

let live: GuardedMemory | null = null;

function fixture(size = 8, opts: { indirect?: boolean; eventIdx?: boolean } = {}): Fx {
  const g = guardedMemory([
    { gpa: 0, size: R0_END },
    { gpa: R1, size: R1_SIZE },
  ]);
  live = g;
  const ring = edgeRing(size);
  const q = new SplitQueue(g.mem, {
    ...ring,
    indirect: opts.indirect ?? true,
    eventIdx: opts.eventIdx ?? true,
  });
  return {
    g,
    mem: g.mem,
    ring,
    q,
    d: (i, desc) => writeDesc(g.mem, ring.descAddr, i, desc),
    t: (i, desc, at = TABLE) => writeDesc(g.mem, at, i, desc),
  };
}

/** Canaries intact after every test, whatever happened in it. */
afterEach(() => {
  if (live !== null) expect(live.damaged()).toEqual([]);
  live = null;
});

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return undefined;
}

function expectVq(fn: () => unknown, code: VirtqueueErrorCode): VirtqueueError {
  const e = thrown(fn);
  expect(e).toBeInstanceOf(VirtqueueError);
  const ve = e as VirtqueueError;
  expect(ve.code).toBe(code);
  expect(ve.message.startsWith(`${code}: `)).toBe(true);
  return ve;
}

/** Offer head(s) at avail slot 0 and expect pop() to fail with `code`; nothing was published. */
function expectPopFails(f: Fx, code: VirtqueueErrorCode, heads: number[] = [0]): void {
  offer(f.mem, f.ring, 0, ...heads);
  expectVq(() => f.q.pop(), code);
  expect(usedIdx(f.mem, f.ring)).toBe(0);
}

const ok = (addr: number, len = 16, flags = 0, next = 0): RawDesc => ({ addr, len, flags, next });

describe("the fixture", () => {
  it("a legal request through rings at the region edges works and leaves the guards alone", () => {
    const f = fixture(8);
    f.d(0, ok(DATA, 16, F_NEXT, 1));
    f.d(1, ok(R1 + 0x2000, 512, F_WRITE));
    offer(f.mem, f.ring, 0, 0);
    const ch = f.q.pop()!;
    expect([ch.head, ch.count, ch.readable, ch.region[1], ch.offset[1]]).toEqual([0, 2, 1, 1, 0x2000]);
    f.q.push(0, 512);
    f.q.publish();
    expect(f.q.needsInterrupt()).toBe(true);
    f.q.disableNotification();
    expect(f.q.enableNotification()).toBe(false);
    expect(usedIdx(f.mem, f.ring)).toBe(1);
    // The last byte of the used ring (avail_event's high byte) is the last byte of region 1.
    expect(f.mem.isValid(R1_END - 1, 1)).toBe(true);
    expect(f.mem.isValid(R1_END, 1)).toBe(false);
  });

  it("the canary check notices a stray write (so the other checks can fail)", () => {
    const g = guardedMemory([{ gpa: 0, size: 64 }]);
    new Uint8Array(g.buffer)[g.guards[1]![0]] = 0;
    expect(g.damaged()).toEqual([g.guards[1]![0]]);
  });
});

describe("available ring", () => {
  it("AVAIL_IDX_JUMP: avail idx more than queue size ahead", () => {
    const f = fixture(8);
    setAvailIdx(f.mem, f.ring, 9);
    expectVq(() => f.q.pop(), "AVAIL_IDX_JUMP");
    expectVq(() => f.q.hasPending(), "AVAIL_IDX_JUMP");
    expectVq(() => f.q.pending(), "AVAIL_IDX_JUMP");
    expectVq(() => f.q.enableNotification(), "AVAIL_IDX_JUMP");
  });

  it("AVAIL_IDX_JUMP: avail idx moving backwards", () => {
    const f = fixture(8);
    for (let i = 0; i < 2; i++) f.d(i, ok(DATA));
    offer(f.mem, f.ring, 0, 0, 1);
    f.q.pop();
    f.q.pop();
    setAvailIdx(f.mem, f.ring, 1); // 1 - 2 = 65535 new buffers
    expectVq(() => f.q.pop(), "AVAIL_IDX_JUMP");
  });

  it("exactly queue-size new buffers is not a jump", () => {
    const f = fixture(8);
    for (let i = 0; i < 8; i++) f.d(i, ok(DATA));
    offer(f.mem, f.ring, 0, 0, 1, 2, 3, 4, 5, 6, 7);
    expect(f.q.pending()).toBe(8);
    for (let i = 0; i < 8; i++) expect(f.q.pop()!.head).toBe(i);
  });

  it("HEAD_OUT_OF_RANGE: head == queue size", () => {
    const f = fixture(8);
    expectPopFails(f, "HEAD_OUT_OF_RANGE", [8]);
  });

  it("HEAD_OUT_OF_RANGE: head 0xffff", () => {
    const f = fixture(8);
    expectPopFails(f, "HEAD_OUT_OF_RANGE", [0xffff]);
  });

  it("HEAD_IN_FLIGHT: a head made available again while in flight", () => {
    const f = fixture(8);
    f.d(3, ok(DATA, 16, F_WRITE));
    offer(f.mem, f.ring, 0, 3, 3);
    expect(f.q.pop()!.head).toBe(3);
    expectVq(() => f.q.pop(), "HEAD_IN_FLIGHT");
    expect(f.q.inflight).toBe(1);
  });

  it("a head may be reused once it has been completed", () => {
    const f = fixture(8);
    f.d(3, ok(DATA, 16, F_WRITE));
    offer(f.mem, f.ring, 0, 3);
    f.q.pop();
    f.q.push(3, 0);
    offer(f.mem, f.ring, 1, 3);
    expect(f.q.pop()!.head).toBe(3);
  });
});

describe("descriptor chains", () => {
  it("NEXT_OUT_OF_RANGE: next == queue size", () => {
    const f = fixture(8);
    f.d(0, ok(DATA, 16, F_NEXT, 8));
    expectPopFails(f, "NEXT_OUT_OF_RANGE");
  });

  it("NEXT_OUT_OF_RANGE: next 0xffff", () => {
    const f = fixture(8);
    f.d(0, ok(DATA, 16, F_NEXT, 0xffff));
    expectPopFails(f, "NEXT_OUT_OF_RANGE");
  });

  it("NEXT_OUT_OF_RANGE: next past the end of an indirect table", () => {
    const f = fixture(8);
    f.d(0, ok(TABLE, 32, F_INDIRECT));
    f.t(0, ok(DATA, 16, F_NEXT, 1));
    f.t(1, ok(DATA, 16, F_NEXT, 2)); // the table has 2 entries
    expectPopFails(f, "NEXT_OUT_OF_RANGE");
  });

  it("CHAIN_TOO_LONG: a descriptor pointing at itself", () => {
    const f = fixture(8);
    f.d(0, ok(DATA, 16, F_NEXT, 0));
    expectPopFails(f, "CHAIN_TOO_LONG");
  });

  it("CHAIN_TOO_LONG: a two-descriptor cycle not through the head", () => {
    const f = fixture(8);
    f.d(0, ok(DATA, 16, F_NEXT, 5));
    f.d(5, ok(DATA, 16, F_NEXT, 6));
    f.d(6, ok(DATA, 16, F_NEXT, 5));
    expectPopFails(f, "CHAIN_TOO_LONG");
  });

  it("CHAIN_TOO_LONG: a chain longer than the queue (every descriptor, then back to the start)", () => {
    const f = fixture(8);
    for (let i = 0; i < 8; i++) f.d(i, ok(DATA, 16, F_NEXT, (i + 1) % 8));
    expectPopFails(f, "CHAIN_TOO_LONG");
  });

  it("CHAIN_TOO_LONG: a loop inside an indirect table", () => {
    const f = fixture(8);
    f.d(0, ok(TABLE, 64, F_INDIRECT));
    for (let i = 0; i < 4; i++) f.t(i, ok(DATA, 16, F_NEXT, (i + 1) % 4));
    expectPopFails(f, "CHAIN_TOO_LONG");
  });

  it("READABLE_AFTER_WRITABLE: direct", () => {
    const f = fixture(8);
    f.d(0, ok(DATA, 16, F_NEXT, 1));
    f.d(1, ok(DATA, 16, F_WRITE | F_NEXT, 2));
    f.d(2, ok(DATA, 16, 0));
    expectPopFails(f, "READABLE_AFTER_WRITABLE");
  });

  it("READABLE_AFTER_WRITABLE: inside an indirect table", () => {
    const f = fixture(8);
    f.d(0, ok(TABLE, 32, F_INDIRECT));
    f.t(0, ok(DATA, 16, F_WRITE | F_NEXT, 1));
    f.t(1, ok(DATA, 16, 0));
    expectPopFails(f, "READABLE_AFTER_WRITABLE");
  });

  it("ZERO_LENGTH: the head", () => {
    const f = fixture(8);
    f.d(0, ok(DATA, 0));
    expectPopFails(f, "ZERO_LENGTH");
  });

  it("ZERO_LENGTH: in the middle of a chain", () => {
    const f = fixture(8);
    f.d(0, ok(DATA, 16, F_NEXT, 1));
    f.d(1, ok(DATA, 0, F_WRITE | F_NEXT, 2));
    f.d(2, ok(DATA, 1, F_WRITE));
    expectPopFails(f, "ZERO_LENGTH");
  });

  it("ZERO_LENGTH: inside an indirect table", () => {
    const f = fixture(8);
    f.d(0, ok(TABLE, 16, F_INDIRECT));
    f.t(0, ok(DATA, 0, F_WRITE));
    expectPopFails(f, "ZERO_LENGTH");
  });
});

describe("buffer addresses", () => {
  it.each([
    ["straddling the end of guest memory", R1_END - 4, 8],
    ["starting one past the end of guest memory", R1_END, 1],
    ["in the hole between regions", HOLE, 16],
    ["straddling the end of region 0 into the hole", R0_END - 8, 16],
    ["one past region 0 (first hole byte)", R0_END, 1],
    ["ending in region 1 but starting in the hole", R1 - 8, 16],
  ])("ADDRESS_OUT_OF_RANGE: %s", (_n, addr, len) => {
    const f = fixture(8);
    f.d(0, ok(DATA, 16, F_NEXT, 1));
    f.d(1, ok(addr, len, F_WRITE));
    expectPopFails(f, "ADDRESS_OUT_OF_RANGE");
  });

  it("the last byte of each region is a legal buffer", () => {
    const f = fixture(8);
    f.d(0, ok(R0_END - 1, 1, F_NEXT, 1));
    f.d(1, ok(R1_END - 1, 1, F_WRITE));
    offer(f.mem, f.ring, 0, 0);
    const ch = f.q.pop()!;
    expect(Array.from(ch.gpa.subarray(0, 2))).toEqual([R0_END - 1, R1_END - 1]);
  });

  it.each([
    ["2^53 (first address a double cannot step by 1)", 2n ** 53n, 1],
    ["2^60", 2n ** 60n, 4096],
    ["2^64 - 17 + 16 bytes: ends at the last 64-bit byte, no overflow", TWO_64 - 17n, 16],
  ])("ADDRESS_OUT_OF_RANGE: address %s", (_n, addr, len) => {
    const f = fixture(8);
    f.d(0, { addr, len, flags: 0 });
    expectPopFails(f, "ADDRESS_OUT_OF_RANGE");
  });

  it.each([
    ["2^64 - 16 + 32", TWO_64 - 16n, 32],
    ["2^64 - 1 + 2", TWO_64 - 1n, 2],
    ["2^64 - 1 + 0xffffffff", TWO_64 - 1n, 0xffff_ffff],
  ])("ADDRESS_OVERFLOW: %s", (_n, addr, len) => {
    const f = fixture(8);
    f.d(0, ok(DATA, 16, F_NEXT, 1));
    f.d(1, { addr, len, flags: F_WRITE });
    expectPopFails(f, "ADDRESS_OVERFLOW");
  });

  it("CHAIN_LENGTH_OVERFLOW: total chain length over 2^32 (4097 x 1 MiB through an indirect table)", () => {
    const MiB = 1 << 20;
    const g = guardedMemory([{ gpa: 0, size: 2 * MiB }]);
    live = g;
    const ring = { size: 8, descAddr: 0x100000, availAddr: 0x101000, usedAddr: 0x102000 };
    const q = new SplitQueue(g.mem, { ...ring, indirect: true });
    const n = 4097;
    const table = 0x110000;
    for (let i = 0; i < n; i++) writeDesc(g.mem, table, i, ok(0, MiB, i + 1 < n ? F_NEXT : 0, i + 1));
    writeDesc(g.mem, ring.descAddr, 0, ok(table, n * 16, F_INDIRECT));
    offer(g.mem, ring, 0, 0);
    expectVq(() => q.pop(), "CHAIN_LENGTH_OVERFLOW");
    // 4095 entries (2^32 - 1 MiB) are fine.
    const table2 = 0x130000;
    for (let i = 0; i < 4095; i++) writeDesc(g.mem, table2, i, ok(0, MiB, i + 1 < 4095 ? F_NEXT : 0, i + 1));
    writeDesc(g.mem, ring.descAddr, 1, ok(table2, 4095 * 16, F_INDIRECT));
    offer(g.mem, ring, 1, 1);
    const ch = q.pop()!;
    expect(ch.count).toBe(4095);
    expect(ch.readableBytes).toBe(4095 * MiB);
  });
});

describe("indirect descriptors", () => {
  it.each([
    ["0", 0],
    ["17", 17],
    ["8", 8],
    ["a multiple of 16 plus 1", 33],
  ])("INDIRECT_BAD_LENGTH: %s", (_n, len) => {
    const f = fixture(8);
    f.d(0, ok(TABLE, len, F_INDIRECT));
    f.t(0, ok(DATA, 16));
    expectPopFails(f, "INDIRECT_BAD_LENGTH");
  });

  it("INDIRECT_NESTED: an indirect descriptor inside an indirect table", () => {
    const f = fixture(8);
    f.d(0, ok(TABLE, 32, F_INDIRECT));
    f.t(0, ok(DATA, 16, F_NEXT, 1));
    f.t(1, ok(TABLE + 0x100, 16, F_INDIRECT));
    f.t(0, ok(DATA, 16), TABLE + 0x100);
    expectPopFails(f, "INDIRECT_NESTED");
  });

  it("INDIRECT_NESTED: an indirect table as the first entry of an indirect table", () => {
    const f = fixture(8);
    f.d(0, ok(TABLE, 16, F_INDIRECT));
    f.t(0, ok(TABLE, 16, F_INDIRECT)); // points at itself
    expectPopFails(f, "INDIRECT_NESTED");
  });

  it("INDIRECT_NESTED: INDIRECT on a non-head descriptor of a direct chain", () => {
    const f = fixture(8);
    f.d(0, ok(DATA, 16, F_NEXT, 1));
    f.d(1, ok(TABLE, 16, F_INDIRECT));
    f.t(0, ok(DATA, 16));
    expectPopFails(f, "INDIRECT_NESTED");
  });

  it("INDIRECT_WITH_NEXT", () => {
    const f = fixture(8);
    f.d(0, ok(TABLE, 16, F_INDIRECT | F_NEXT, 1));
    f.d(1, ok(DATA, 16, F_WRITE));
    f.t(0, ok(DATA, 16));
    expectPopFails(f, "INDIRECT_WITH_NEXT");
  });

  it("INDIRECT_NOT_NEGOTIATED", () => {
    const f = fixture(8, { indirect: false });
    f.d(0, ok(TABLE, 16, F_INDIRECT));
    f.t(0, ok(DATA, 16));
    expectPopFails(f, "INDIRECT_NOT_NEGOTIATED");
  });

  it.each([
    ["past the end of guest memory", BigInt(R1_END - 16), 32],
    ["in the hole", BigInt(HOLE), 16],
    ["straddling region 0's end", BigInt(R0_END - 16), 32],
    ["at 2^53", 2n ** 53n, 16],
    ["at 2^64 - 16", TWO_64 - 16n, 16],
    ["at 2^64 - 16 and wrapping", TWO_64 - 16n, 32],
  ])("INDIRECT_UNMAPPABLE: table %s", (_n, addr, len) => {
    const f = fixture(8);
    f.d(0, { addr, len, flags: F_INDIRECT });
    expectPopFails(f, "INDIRECT_UNMAPPABLE");
  });

  it("an indirect table ending at the last byte of guest memory is fine", () => {
    const f = fixture(8);
    // R1_END is not 16-aligned; the table only needs 4-byte alignment here.
    const at = R1_END - 2 - 32;
    f.d(0, ok(at, 32, F_INDIRECT));
    // The used ring lives there too: write the table first, pop before the device writes used.
    f.t(0, ok(DATA, 16, F_NEXT, 1), at);
    f.t(1, ok(DATA, 1, F_WRITE), at);
    offer(f.mem, f.ring, 0, 0);
    expect(f.q.pop()!.count).toBe(2);
  });
});

describe("ring placement and size (constructor)", () => {
  function build(ring: RingAddresses): SplitQueue {
    live = guardedMemory([
      { gpa: 0, size: R0_END },
      { gpa: R1, size: R1_SIZE },
    ]);
    return new SplitQueue(live.mem, ring);
  }
  const good: RingAddresses = { size: 8, descAddr: 0x1000, availAddr: 0x2000, usedAddr: 0x3000 };

  it("a well-placed ring is accepted", () => {
    expect(build(good).size).toBe(8);
  });

  it.each([
    ["desc table 8-aligned", { descAddr: 0x1008 }],
    ["avail ring odd", { availAddr: 0x2001 }],
    ["used ring 2-aligned", { usedAddr: 0x3002 }],
  ])("RING_MISALIGNED: %s", (_n, patch) => {
    expectVq(() => build({ ...good, ...patch }), "RING_MISALIGNED");
  });

  it("RING_MISALIGNED: the region's backing buffer offset breaks 4-byte alignment", () => {
    const buf = new SharedArrayBuffer(0x10000 + 8);
    const mem = new GuestMemory([{ gpa: 0, size: 0x10000, buffer: buf, byteOffset: 2 }]);
    expectVq(() => new SplitQueue(mem, good), "RING_MISALIGNED");
  });

  it.each([
    ["desc table in the hole", { descAddr: HOLE }],
    ["desc table straddling region 0's end", { descAddr: R0_END - 64 }],
    ["avail ring straddling region 0's end", { availAddr: R0_END - 8 }],
    ["used ring past the end of memory", { usedAddr: R1_END + 2 }],
    ["used ring straddling the end of memory", { usedAddr: R1_END - 66 }],
    ["desc table beyond 2^53", { descAddr: 2 ** 60 }],
  ])("RING_OUT_OF_RANGE: %s", (_n, patch) => {
    expectVq(() => build({ ...good, ...patch }), "RING_OUT_OF_RANGE");
  });

  it.each([0, 3, 6, 65536, 32769, -1, 1.5, Number.NaN])("BAD_QUEUE_SIZE: %s", (size) => {
    expectVq(() => build({ ...good, size }), "BAD_QUEUE_SIZE");
  });

  it("the largest legal queue (32768) is accepted", () => {
    const MiB = 1 << 20;
    const mem = GuestMemory.allocate(2 * MiB);
    const q = new SplitQueue(mem, { size: 32768, descAddr: 0, availAddr: 0x80000, usedAddr: 0x90000 });
    expect(q.size).toBe(32768);
  });
});

describe("virtio-blk framing the parser refuses (BlkProtocolError)", () => {
  const params = {
    capacityBytes: 1 << 20,
    logicalBlockSize: 512,
    readOnly: false,
    segMax: 126,
    discard: true,
    writeZeroes: true,
    maxDiscardSectors: 1 << 16,
    maxWriteZeroesSectors: 1 << 16,
    serial: encodeSerial("x"),
  };

  function parse(f: Fx): unknown {
    offer(f.mem, f.ring, 0, 0);
    const ch = f.q.pop()!;
    return thrown(() => parseBlkRequest(ch, f.mem, params, new BlkRequest()));
  }

  it("header shorter than 16 bytes", () => {
    const f = fixture(8);
    f.d(0, ok(DATA, 8, F_NEXT, 1));
    f.d(1, ok(DATA + 64, 1, F_WRITE));
    const e = parse(f);
    expect(e).toBeInstanceOf(BlkProtocolError);
    expect((e as Error).message).toMatch(/header is 8 bytes, needs 16/);
  });

  it("header split over two descriptors, 15 bytes in all", () => {
    const f = fixture(8);
    f.d(0, ok(DATA, 8, F_NEXT, 1));
    f.d(1, ok(DATA + 8, 7, F_NEXT, 2));
    f.d(2, ok(DATA + 64, 1, F_WRITE));
    expect(parse(f)).toBeInstanceOf(BlkProtocolError);
  });

  it("only writable buffers (no header at all)", () => {
    const f = fixture(8);
    f.d(0, ok(DATA, 17, F_WRITE));
    expect(parse(f)).toBeInstanceOf(BlkProtocolError);
  });

  it("no writable status byte", () => {
    const f = fixture(8);
    f.d(0, ok(DATA, 16, F_NEXT, 1));
    f.d(1, ok(DATA + 16, 512));
    const e = parse(f);
    expect(e).toBeInstanceOf(BlkProtocolError);
    expect(e).not.toBeInstanceOf(VirtqueueError);
    expect((e as Error).message).toMatch(/no writable status byte/);
  });

  it("a header plus status byte is enough: not a protocol error", () => {
    const f = fixture(8);
    f.mem.slice(DATA, 16).fill(0);
    f.mem.slice(DATA, 1)[0] = 4; // FLUSH
    f.d(0, ok(DATA, 16, F_NEXT, 1));
    f.d(1, ok(DATA + 64, 1, F_WRITE));
    offer(f.mem, f.ring, 0, 0);
    const req = new BlkRequest();
    expect(parseBlkRequest(f.q.pop()!, f.mem, params, req)).toBe(true);
    expect(req.status).toBe(BlkStatus.OK);
  });
});

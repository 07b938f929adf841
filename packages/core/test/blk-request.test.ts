/**
 * virtio-blk requests end to end on one thread: driver-side chains (built
 * with DriverQueue.addChain so any framing can be expressed) -> SplitQueue.pop
 * -> parseBlkRequest -> MemoryEngine/NullEngine -> finishBlkRequest ->
 * writeBlkStatus -> push -> the driver reads status byte and used length.
 */
import { beforeEach, describe, expect, it } from "vitest";
import {
  BlkAction,
  type BlkParams,
  BlkRequest,
  BlkStatus,
  BlkType,
  type BlockEngine,
  encodeSerial,
  finishBlkRequest,
  GuestMemory,
  IoOp,
  MemoryEngine,
  NullEngine,
  parseBlkRequest,
  writeBlkStatus,
} from "../dist/index.js";
import { pattern } from "./helpers/raw.js";
import { makePair, type Pair } from "./helpers/rings.js";

const MiB = 1 << 20;
const DISK = MiB;
const HDR = 0x10000; // headers
const BUF = 0x20000; // data buffers
const BUF2 = 0x60000;
const TABLE = 0xf0000;

interface Seg {
  gpa: number;
  len: number;
  /** device-writable */
  w?: boolean;
}

interface Outcome {
  req: BlkRequest;
  /** Return value of parseBlkRequest. */
  needsIo: boolean;
  /** Status byte as the driver reads it. */
  status: number;
  /** used.len as the driver reads it. */
  usedLen: number;
}

let p: Pair;
let mem: GuestMemory;
let disk: Uint8Array;
let diskBuf: SharedArrayBuffer;
let params: BlkParams;
/** What the disk holds before each test. */
const ORIGINAL = pattern(DISK, 99);

function baseParams(): BlkParams {
  return {
    capacityBytes: DISK,
    logicalBlockSize: 512,
    readOnly: false,
    segMax: 126,
    discard: true,
    writeZeroes: true,
    maxDiscardSectors: 2048,
    maxWriteZeroesSectors: 2048,
    serial: encodeSerial("vblk-serial-0001"),
  };
}

beforeEach(() => {
  mem = GuestMemory.allocate(MiB);
  p = makePair(mem, 128, { indirect: true, eventIdx: true });
  diskBuf = new SharedArrayBuffer(DISK);
  disk = new Uint8Array(diskBuf);
  disk.set(ORIGINAL);
  params = baseParams();
});

function hdr(gpa: number, type: number, sector: number | bigint = 0, ioprio = 0): void {
  const v = new DataView(mem.slice(gpa, 16).buffer, gpa, 16);
  v.setUint32(0, type, true);
  v.setUint32(4, ioprio, true);
  v.setBigUint64(8, BigInt(sector), true);
}

function dwzSeg(gpa: number, sector: number | bigint, nsec: number, flags: number): void {
  const v = new DataView(mem.slice(gpa, 16).buffer, gpa, 16);
  v.setBigUint64(0, BigInt(sector), true);
  v.setUint32(8, nsec, true);
  v.setUint32(12, flags, true);
}

/** Byte equality without the deep-equal walk (1 MiB disks). */
function expectSame(actual: Uint8Array, expected: Uint8Array): void {
  expect(actual.length).toBe(expected.length);
  const diff = Buffer.compare(
    Buffer.from(actual.buffer, actual.byteOffset, actual.length),
    Buffer.from(expected.buffer, expected.byteOffset, expected.length),
  );
  if (diff !== 0) {
    const at = actual.findIndex((b, i) => b !== expected[i]);
    expect.fail(`bytes differ first at offset ${at}: ${actual[at]} != ${expected[at]}`);
  }
}

/** Run one chain through the whole device path. */
function run(segs: Seg[], opts: { indirect?: boolean; engine?: BlockEngine } = {}): Outcome {
  const readable = segs.findIndex((s) => s.w === true);
  const nr = readable < 0 ? segs.length : readable;
  const gpas = segs.map((s) => s.gpa);
  const lens = segs.map((s) => s.len);
  const head = opts.indirect
    ? p.dq.addIndirect(TABLE, gpas, lens, nr, segs.length - nr)
    : p.dq.addChain(gpas, lens, nr, segs.length - nr);
  expect(head).toBeGreaterThanOrEqual(0);
  p.dq.publish();
  const ch = p.q.pop()!;
  expect(ch.head).toBe(head);
  const req = new BlkRequest();
  const needsIo = parseBlkRequest(ch, mem, params, req);
  expect(needsIo).toBe(req.action === BlkAction.IO);
  if (needsIo) {
    const engine = opts.engine ?? new MemoryEngine(diskBuf, mem, params.readOnly);
    req.tag = 1234;
    engine.enqueue(req);
    engine.submit();
    let calls = 0;
    engine.reap((tag, result) => {
      expect(tag).toBe(1234);
      finishBlkRequest(req, result);
      calls++;
    });
    expect(calls).toBe(1);
  }
  writeBlkStatus(req, mem);
  p.q.push(ch.head, req.usedLen);
  p.q.publish();
  expect(p.dq.popUsed()).toBe(head);
  const last = segs[segs.length - 1]!;
  return { req, needsIo, status: mem.slice(last.gpa + last.len - 1, 1)[0]!, usedLen: p.dq.lastLen };
}

/** The common framing: header | data | status, one descriptor each. */
function rw(type: number, sector: number | bigint, dataLen: number, o: { indirect?: boolean } = {}): Outcome {
  hdr(HDR, type, sector);
  const write = type === BlkType.OUT;
  return run(
    [
      { gpa: HDR, len: 16 },
      { gpa: BUF, len: dataLen, w: !write },
      { gpa: HDR + 32, len: 1, w: true },
    ],
    o,
  );
}

const IOERR = BlkStatus.IOERR;
const UNSUPP = BlkStatus.UNSUPP;
const OK = BlkStatus.OK;

describe("IN / OUT", () => {
  for (const indirect of [false, true]) {
    it(`OUT then IN moves the bytes (indirect=${indirect})`, () => {
      const data = pattern(8192, 7);
      mem.write(BUF, data);
      const w = rw(BlkType.OUT, 16, 8192, { indirect });
      expect([w.status, w.usedLen, w.needsIo, w.req.op, w.req.offset, w.req.length]).toEqual([
        OK,
        1,
        true,
        IoOp.WRITE,
        16 * 512,
        8192,
      ]);
      expectSame(disk.subarray(16 * 512, 16 * 512 + 8192), data);
      mem.slice(BUF, 8192).fill(0);
      const r = rw(BlkType.IN, 16, 8192, { indirect });
      expect([r.status, r.usedLen, r.req.op]).toEqual([OK, 8193, IoOp.READ]);
      expectSame(mem.slice(BUF, 8192), data);
    });
  }

  it("scatters a read and gathers a write over uneven segments", () => {
    const data = pattern(4096, 3);
    mem.write(BUF, data.subarray(0, 1000));
    mem.write(BUF2, data.subarray(1000, 4000));
    mem.write(BUF + 0x8000, data.subarray(4000));
    hdr(HDR, BlkType.OUT, 40);
    const w = run([
      { gpa: HDR, len: 16 },
      { gpa: BUF, len: 1000 },
      { gpa: BUF2, len: 3000 },
      { gpa: BUF + 0x8000, len: 96 },
      { gpa: HDR + 32, len: 1, w: true },
    ]);
    expect(w.status).toBe(OK);
    expect(w.req.segCount).toBe(3);
    expectSame(disk.subarray(40 * 512, 40 * 512 + 4096), data);
    hdr(HDR, BlkType.IN, 40);
    const r = run([
      { gpa: HDR, len: 16 },
      { gpa: BUF2 + 0x10000, len: 7, w: true },
      { gpa: BUF2 + 0x20000, len: 4000, w: true },
      { gpa: BUF2 + 0x30000, len: 89, w: true },
      { gpa: HDR + 32, len: 1, w: true },
    ]);
    expect([r.status, r.usedLen]).toEqual([OK, 4097]);
    expectSame(mem.slice(BUF2 + 0x10000, 7), data.subarray(0, 7));
    expectSame(mem.slice(BUF2 + 0x20000, 4000), data.subarray(7, 4007));
    expectSame(mem.slice(BUF2 + 0x30000, 89), data.subarray(4007));
  });

  it("a read does not write past its buffers (neighbours keep their bytes)", () => {
    mem.slice(BUF - 16, 512 + 32).fill(0xee);
    const r = rw(BlkType.IN, 0, 512);
    expect(r.status).toBe(OK);
    expectSame(mem.slice(BUF, 512), disk.subarray(0, 512));
    expect(Array.from(mem.slice(BUF - 16, 16))).toEqual(new Array(16).fill(0xee));
    expect(Array.from(mem.slice(BUF + 512, 16))).toEqual(new Array(16).fill(0xee));
  });

  it("the last block of the disk is reachable; one past it is IOERR", () => {
    expect(rw(BlkType.IN, DISK / 512 - 8, 4096).status).toBe(OK);
    expectSame(mem.slice(BUF, 4096), disk.subarray(DISK - 4096));
    const r = rw(BlkType.IN, DISK / 512 - 7, 4096);
    expect([r.status, r.usedLen, r.needsIo]).toEqual([IOERR, 1, false]);
    expect(rw(BlkType.OUT, DISK / 512, 512).status).toBe(IOERR);
  });

  it("ignores ioprio", () => {
    hdr(HDR, BlkType.IN, 0, 0xffff_ffff);
    const r = run([
      { gpa: HDR, len: 16 },
      { gpa: BUF, len: 512, w: true },
      { gpa: HDR + 32, len: 1, w: true },
    ]);
    expect(r.status).toBe(OK);
  });
});

describe("any-layout framing", () => {
  it("header and data in one descriptor (OUT)", () => {
    const data = pattern(1024, 11);
    hdr(HDR, BlkType.OUT, 2);
    mem.write(HDR + 16, data);
    const r = run([
      { gpa: HDR, len: 16 + 1024 },
      { gpa: BUF, len: 1, w: true },
    ]);
    expect([r.status, r.usedLen, r.req.segCount, r.req.length]).toEqual([OK, 1, 1, 1024]);
    expectSame(disk.subarray(1024, 2048), data);
  });

  it("status as the last byte of the data descriptor (IN)", () => {
    hdr(HDR, BlkType.IN, 4);
    const r = run([
      { gpa: HDR, len: 16 },
      { gpa: BUF, len: 2048 + 1, w: true },
    ]);
    expect([r.status, r.usedLen, r.req.length]).toEqual([OK, 2049, 2048]);
    expectSame(mem.slice(BUF, 2048), disk.subarray(2048, 4096));
    expect(mem.slice(BUF + 2048, 1)[0]).toBe(OK);
  });

  it("everything in two descriptors: header+data | data+status, through an indirect table", () => {
    const data = pattern(1536, 5);
    hdr(HDR, BlkType.OUT, 10);
    mem.write(HDR + 16, data.subarray(0, 512));
    mem.write(BUF, data.subarray(512));
    const w = run(
      [
        { gpa: HDR, len: 16 + 512 },
        { gpa: BUF, len: 1024 },
        { gpa: BUF2, len: 1, w: true },
      ],
      { indirect: true },
    );
    expect(w.status).toBe(OK);
    expectSame(disk.subarray(5120, 5120 + 1536), data);
  });

  it.each([
    ["8 + 8", [8, 8]],
    ["3 + 13 (unaligned pieces)", [3, 13]],
    ["1 x 16", [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]],
    ["10 + (6 header + data)", [10, 6 + 512]],
  ])("header split over descriptors: %s", (_n, pieces) => {
    const data = pattern(512, 17);
    hdr(HDR, BlkType.OUT, 6);
    const total = pieces.reduce((a, b) => a + b, 0);
    mem.write(HDR + 16, data.subarray(0, total - 16));
    mem.write(BUF, data.subarray(total - 16));
    // Each piece at its own place in guest memory, copied from the contiguous layout.
    const segs: Seg[] = [];
    let off = 0;
    pieces.forEach((len, i) => {
      const at = BUF2 + i * 0x100 + 1; // odd addresses: the parser's slow path
      mem.write(at, mem.slice(HDR + off, len).slice());
      segs.push({ gpa: at, len });
      off += len;
    });
    if (total - 16 < 512) segs.push({ gpa: BUF, len: 512 - (total - 16) });
    segs.push({ gpa: HDR + 48, len: 1, w: true });
    const r = run(segs);
    expect([r.status, r.req.type, r.req.sector, r.req.length]).toEqual([OK, BlkType.OUT, 6, 512]);
    expectSame(disk.subarray(6 * 512, 7 * 512), data);
  });

  it("a header at an unaligned address reads the same as an aligned one", () => {
    hdr(HDR + 3, BlkType.IN, 0x123);
    const r = run([
      { gpa: HDR + 3, len: 16 },
      { gpa: BUF, len: 512, w: true },
      { gpa: HDR + 64, len: 1, w: true },
    ]);
    expect([r.status, r.req.sector, r.req.offset]).toEqual([OK, 0x123, 0x123 * 512]);
  });
});

describe("FLUSH and GET_ID", () => {
  it("FLUSH goes to the engine and completes OK with used length 1", () => {
    hdr(HDR, BlkType.FLUSH, 0);
    const r = run([
      { gpa: HDR, len: 16 },
      { gpa: HDR + 32, len: 1, w: true },
    ]);
    expect([r.needsIo, r.req.op, r.status, r.usedLen]).toEqual([true, IoOp.FLUSH, OK, 1]);
  });

  function getId(segs: Seg[]): Outcome {
    hdr(HDR, BlkType.GET_ID, 0);
    return run([{ gpa: HDR, len: 16 }, ...segs]);
  }

  it("answers the serial NUL padded to 20 bytes", () => {
    params.serial = encodeSerial("hello");
    mem.slice(BUF, 64).fill(0xee);
    const r = getId([
      { gpa: BUF, len: 20, w: true },
      { gpa: HDR + 32, len: 1, w: true },
    ]);
    expect([r.needsIo, r.status, r.usedLen]).toEqual([false, OK, 21]);
    const expected = new Uint8Array(20);
    expected.set(new TextEncoder().encode("hello"));
    expectSame(mem.slice(BUF, 20), expected);
  });

  it("truncates a serial longer than 20 bytes", () => {
    params.serial = encodeSerial("0123456789abcdefghijKLMNOP");
    expect(params.serial.length).toBe(20);
    const r = getId([
      { gpa: BUF, len: 20, w: true },
      { gpa: HDR + 32, len: 1, w: true },
    ]);
    expect(r.status).toBe(OK);
    expect(new TextDecoder().decode(mem.slice(BUF, 20))).toBe("0123456789abcdefghij");
  });

  it("fills a short buffer and no more", () => {
    mem.slice(BUF, 64).fill(0xee);
    const r = getId([
      { gpa: BUF, len: 8, w: true },
      { gpa: HDR + 32, len: 1, w: true },
    ]);
    expect([r.status, r.usedLen]).toEqual([OK, 9]);
    expect(new TextDecoder().decode(mem.slice(BUF, 8))).toBe("vblk-ser");
    expect(mem.slice(BUF + 8, 1)[0]).toBe(0xee);
  });

  it("writes only 20 bytes into a larger buffer, status in the same descriptor", () => {
    mem.slice(BUF, 64).fill(0xee);
    const r = getId([{ gpa: BUF, len: 33, w: true }]);
    expect([r.status, r.usedLen]).toEqual([OK, 21]);
    expectSame(mem.slice(BUF, 20), params.serial);
    expect(Array.from(mem.slice(BUF + 20, 12))).toEqual(new Array(12).fill(0xee));
    expect(mem.slice(BUF + 32, 1)[0]).toBe(OK);
  });

  it("spreads the serial over several writable buffers", () => {
    const r = getId([
      { gpa: BUF, len: 7, w: true },
      { gpa: BUF2, len: 13, w: true },
      { gpa: HDR + 32, len: 1, w: true },
    ]);
    expect([r.status, r.usedLen]).toEqual([OK, 21]);
    expectSame(mem.slice(BUF, 7), params.serial.subarray(0, 7));
    expectSame(mem.slice(BUF2, 13), params.serial.subarray(7));
  });

  it("without a data buffer is IOERR", () => {
    const r = getId([{ gpa: HDR + 32, len: 1, w: true }]);
    expect([r.status, r.usedLen]).toEqual([IOERR, 1]);
  });
});

describe("DISCARD / WRITE_ZEROES", () => {
  const SEG = HDR + 16;
  function dwz(type: number, sector: number | bigint, nsec: number, flags: number, segBytes = 16): Outcome {
    hdr(HDR, type, 0);
    dwzSeg(SEG, sector, nsec, flags);
    if (segBytes > 16) dwzSeg(SEG + 16, sector, nsec, flags);
    return run([
      { gpa: HDR, len: 16 },
      { gpa: SEG, len: segBytes },
      { gpa: HDR + 63, len: 1, w: true },
    ]);
  }
  const zeroed = (from: number, len: number) => disk.subarray(from, from + len).every((b) => b === 0);
  const untouched = (from: number, len: number) => {
    const orig = ORIGINAL.subarray(from, from + len);
    return disk.subarray(from, from + len).every((b, i) => b === orig[i]);
  };

  it("DISCARD zeroes (memory engine) exactly the range", () => {
    const r = dwz(BlkType.DISCARD, 8, 16, 0);
    expect([r.needsIo, r.req.op, r.req.offset, r.req.length, r.status, r.usedLen]).toEqual([
      true,
      IoOp.DISCARD,
      4096,
      8192,
      OK,
      1,
    ]);
    expect(zeroed(4096, 8192)).toBe(true);
    expect(untouched(4095, 1)).toBe(true);
    expect(untouched(4096 + 8192, 1)).toBe(true);
  });

  it("WRITE_ZEROES without and with UNMAP", () => {
    const a = dwz(BlkType.WRITE_ZEROES, 0, 1, 0);
    expect([a.req.op, a.status]).toEqual([IoOp.WRITE_ZEROES, OK]);
    expect(zeroed(0, 512)).toBe(true);
    expect(untouched(512, 1)).toBe(true);
    const b = dwz(BlkType.WRITE_ZEROES, 100, 2, 1);
    expect([b.req.op, b.status]).toEqual([IoOp.WRITE_ZEROES_UNMAP, OK]);
    expect(zeroed(100 * 512, 1024)).toBe(true);
  });

  it("header and segment in one descriptor", () => {
    hdr(HDR, BlkType.DISCARD, 0);
    dwzSeg(HDR + 16, 2, 1, 0);
    const r = run([
      { gpa: HDR, len: 32 },
      { gpa: HDR + 63, len: 1, w: true },
    ]);
    expect(r.status).toBe(OK);
    expect(zeroed(1024, 512)).toBe(true);
  });

  it.each([
    ["DISCARD with UNMAP", BlkType.DISCARD, 1],
    ["DISCARD with an unknown flag", BlkType.DISCARD, 4],
    ["WRITE_ZEROES with an unknown flag", BlkType.WRITE_ZEROES, 2],
    ["WRITE_ZEROES with UNMAP and an unknown flag", BlkType.WRITE_ZEROES, 0x8000_0001],
  ])("%s -> UNSUPP, disk untouched", (_n, type, flags) => {
    const r = dwz(type, 8, 1, flags);
    expect([r.status, r.usedLen, r.needsIo]).toEqual([UNSUPP, 1, false]);
    expect(untouched(4096, 512)).toBe(true);
  });

  it("not negotiated -> UNSUPP", () => {
    params.discard = false;
    params.writeZeroes = false;
    expect(dwz(BlkType.DISCARD, 8, 1, 0).status).toBe(UNSUPP);
    expect(dwz(BlkType.WRITE_ZEROES, 8, 1, 0).status).toBe(UNSUPP);
    expect(untouched(4096, 512)).toBe(true);
  });

  it("only the negotiated one is accepted", () => {
    params.discard = false;
    expect(dwz(BlkType.DISCARD, 8, 1, 0).status).toBe(UNSUPP);
    expect(dwz(BlkType.WRITE_ZEROES, 8, 1, 0).status).toBe(OK);
  });

  it("more than one segment -> UNSUPP (max_discard_seg = 1)", () => {
    expect(dwz(BlkType.DISCARD, 8, 1, 0, 32).status).toBe(UNSUPP);
    expect(dwz(BlkType.WRITE_ZEROES, 8, 1, 0, 32).status).toBe(UNSUPP);
    expect(untouched(4096, 512)).toBe(true);
  });

  it.each([
    ["a segment of 8 bytes", { segBytes: 8 }],
    ["a segment of 24 bytes", { segBytes: 24 }],
    ["zero sectors", { nsec: 0 }],
    ["more sectors than max_discard_sectors", { nsec: 2049 }],
    ["past capacity", { sector: DISK / 512 - 1, nsec: 2 }],
    ["a sector past 2^53 bytes", { sector: 1n << 44n }],
    ["a huge sector", { sector: (1n << 64n) - 1n }],
  ])("IOERR: %s", (_n, o: { segBytes?: number; nsec?: number; sector?: number | bigint }) => {
    for (const type of [BlkType.DISCARD, BlkType.WRITE_ZEROES]) {
      const r = dwz(type, o.sector ?? 8, o.nsec ?? 1, 0, o.segBytes ?? 16);
      expect([r.status, r.usedLen]).toEqual([IOERR, 1]);
    }
    expect(untouched(0, DISK)).toBe(true);
  });

  it("IOERR: misaligned to a 4096-byte logical block", () => {
    params.logicalBlockSize = 4096;
    expect(dwz(BlkType.DISCARD, 1, 8, 0).status).toBe(IOERR);
    expect(dwz(BlkType.WRITE_ZEROES, 8, 4, 0).status).toBe(IOERR);
    expect(dwz(BlkType.WRITE_ZEROES, 8, 8, 0).status).toBe(OK);
  });

  it("IOERR on a read-only device", () => {
    params.readOnly = true;
    expect(dwz(BlkType.DISCARD, 8, 1, 0).status).toBe(IOERR);
    expect(dwz(BlkType.WRITE_ZEROES, 8, 1, 1).status).toBe(IOERR);
    expect(untouched(4096, 512)).toBe(true);
  });
});

describe("unknown and unsupported types", () => {
  it.each([
    ["GET_LIFETIME", BlkType.GET_LIFETIME],
    ["SECURE_ERASE", BlkType.SECURE_ERASE],
    ["2", 2],
    ["99", 99],
    ["0xffffffff", 0xffff_ffff],
  ])("%s -> UNSUPP, buffers untouched", (_n, type) => {
    hdr(HDR, type, 0);
    mem.slice(BUF, 512).fill(0xee);
    const r = run([
      { gpa: HDR, len: 16 },
      { gpa: BUF, len: 512, w: true },
      { gpa: HDR + 32, len: 1, w: true },
    ]);
    expect([r.needsIo, r.status, r.usedLen]).toEqual([false, UNSUPP, 1]);
    expect(mem.slice(BUF, 512).every((b) => b === 0xee)).toBe(true);
  });
});

describe("IOERR for IN/OUT", () => {
  const before = () => ORIGINAL;

  it("sector not aligned to a 4096-byte logical block", () => {
    params.logicalBlockSize = 4096;
    expect(rw(BlkType.IN, 1, 4096).status).toBe(IOERR);
    expect(rw(BlkType.OUT, 4, 4096).status).toBe(IOERR);
    expect(rw(BlkType.IN, 8, 4096).status).toBe(OK);
    expectSame(disk, before());
  });

  it("length not a multiple of the logical block", () => {
    expect(rw(BlkType.IN, 0, 511).status).toBe(IOERR);
    expect(rw(BlkType.OUT, 0, 513).status).toBe(IOERR);
    params.logicalBlockSize = 4096;
    expect(rw(BlkType.OUT, 8, 512).status).toBe(IOERR);
    expectSame(disk, before());
  });

  it("range past capacity", () => {
    expect(rw(BlkType.OUT, DISK / 512 - 1, 1024).status).toBe(IOERR);
    expect(rw(BlkType.IN, 1 << 30, 512).status).toBe(IOERR);
    expectSame(disk, before());
  });

  it("a sector whose byte offset does not fit in 2^53", () => {
    // A device so large that only the 2^53 rule can refuse (null engine: nothing is touched).
    params.capacityBytes = Number.MAX_SAFE_INTEGER;
    const nul = { engine: new NullEngine() };
    hdr(HDR, BlkType.IN, 2 ** 44 - 8);
    const fits = run(
      [
        { gpa: HDR, len: 16 },
        { gpa: BUF, len: 512, w: true },
        { gpa: HDR + 32, len: 1, w: true },
      ],
      nul,
    );
    expect([fits.status, fits.req.offset]).toEqual([OK, 2 ** 53 - 4096]);
    for (const sector of [1n << 44n, (1n << 44n) + 8n, 1n << 63n, (1n << 64n) - 1n]) {
      hdr(HDR, BlkType.IN, sector);
      const r = run(
        [
          { gpa: HDR, len: 16 },
          { gpa: BUF, len: 512, w: true },
          { gpa: HDR + 32, len: 1, w: true },
        ],
        nul,
      );
      expect([r.status, r.needsIo, r.usedLen]).toEqual([IOERR, false, 1]);
    }
  });

  it("write on a read-only device (reads still work)", () => {
    params.readOnly = true;
    mem.write(BUF, pattern(512, 1));
    const w = rw(BlkType.OUT, 0, 512);
    expect([w.status, w.usedLen, w.needsIo]).toEqual([IOERR, 1, false]);
    expectSame(disk, before());
    expect(rw(BlkType.IN, 0, 512).status).toBe(OK);
  });

  it("more data segments than seg_max", () => {
    params.segMax = 4;
    const segs = (n: number, w: boolean): Seg[] =>
      Array.from({ length: n }, (_, i) => ({ gpa: BUF + i * 512, len: 512, w }));
    hdr(HDR, BlkType.IN, 0);
    expect(run([{ gpa: HDR, len: 16 }, ...segs(4, true), { gpa: HDR + 32, len: 1, w: true }]).status).toBe(
      OK,
    );
    expect(run([{ gpa: HDR, len: 16 }, ...segs(5, true), { gpa: HDR + 32, len: 1, w: true }]).status).toBe(
      IOERR,
    );
    hdr(HDR, BlkType.OUT, 0);
    expect(run([{ gpa: HDR, len: 16 }, ...segs(5, false), { gpa: HDR + 32, len: 1, w: true }]).status).toBe(
      IOERR,
    );
    expectSame(disk, before());
  });

  it("data in the wrong direction", () => {
    // IN with device-readable data after the header.
    hdr(HDR, BlkType.IN, 0);
    mem.slice(BUF2, 512).fill(0xee);
    const a = run([
      { gpa: HDR, len: 16 },
      { gpa: BUF, len: 512 },
      { gpa: BUF2, len: 512, w: true },
      { gpa: HDR + 32, len: 1, w: true },
    ]);
    expect([a.status, a.usedLen]).toEqual([IOERR, 1]);
    expect(mem.slice(BUF2, 512).every((b) => b === 0xee)).toBe(true);
    // OUT with device-writable data before the status.
    hdr(HDR, BlkType.OUT, 0);
    const b = run([
      { gpa: HDR, len: 16 },
      { gpa: BUF, len: 512 },
      { gpa: BUF2, len: 512, w: true },
      { gpa: HDR + 32, len: 1, w: true },
    ]);
    expect(b.status).toBe(IOERR);
    // OUT whose data is all device-writable.
    const c = rw(BlkType.IN, 0, 512); // sanity: IN with writable data is fine
    expect(c.status).toBe(OK);
    hdr(HDR, BlkType.OUT, 0);
    const d = run([
      { gpa: HDR, len: 16 },
      { gpa: BUF, len: 513, w: true },
    ]);
    expect(d.status).toBe(IOERR);
    expectSame(disk, before());
  });
});

describe("finishBlkRequest", () => {
  function parsed(type: number, len: number): BlkRequest {
    hdr(HDR, type, 0);
    p.dq.addChain(
      [HDR, BUF, HDR + 32],
      [16, len, 1],
      type === BlkType.OUT ? 2 : 1,
      type === BlkType.OUT ? 1 : 2,
    );
    p.dq.publish();
    const req = new BlkRequest();
    expect(parseBlkRequest(p.q.pop()!, mem, params, req)).toBe(true);
    return req;
  }

  it.each([
    ["READ, all bytes", BlkType.IN, 4096, OK, 4097],
    ["READ, short", BlkType.IN, 4096 - 512, IOERR, 1],
    ["READ, long", BlkType.IN, 8192, IOERR, 1],
    ["READ, zero bytes", BlkType.IN, 0, IOERR, 1],
    ["READ, -EIO", BlkType.IN, -5, IOERR, 1],
    ["WRITE, all bytes", BlkType.OUT, 4096, OK, 1],
    ["WRITE, short", BlkType.OUT, 1, IOERR, 1],
    ["WRITE, -ENOSPC", BlkType.OUT, -28, IOERR, 1],
  ])("%s", (_n, type, result, status, usedLen) => {
    const req = parsed(type, 4096);
    finishBlkRequest(req, result);
    expect([req.status, req.usedLen]).toEqual([status, usedLen]);
  });

  it("FLUSH: 0 is OK, negative is IOERR", () => {
    hdr(HDR, BlkType.FLUSH, 0);
    p.dq.addChain([HDR, HDR + 32], [16, 1], 1, 1);
    p.dq.publish();
    const req = new BlkRequest();
    parseBlkRequest(p.q.pop()!, mem, params, req);
    finishBlkRequest(req, 0);
    expect([req.status, req.usedLen]).toEqual([OK, 1]);
    finishBlkRequest(req, -5);
    expect([req.status, req.usedLen]).toEqual([IOERR, 1]);
  });

  it("an engine error surfaces as IOERR in the status byte (read-only memory engine under a writable device)", () => {
    mem.write(BUF, pattern(512, 2));
    hdr(HDR, BlkType.OUT, 0);
    const r = run(
      [
        { gpa: HDR, len: 16 },
        { gpa: BUF, len: 512 },
        { gpa: HDR + 32, len: 1, w: true },
      ],
      { engine: new MemoryEngine(diskBuf, mem, true) },
    );
    expect([r.needsIo, r.status, r.usedLen]).toEqual([true, IOERR, 1]);
    expectSame(disk, ORIGINAL);
  });

  it("a request object is reusable: a failed parse does not leak into the next one", () => {
    const req = new BlkRequest();
    hdr(HDR, BlkType.IN, 1 << 30);
    p.dq.addChain([HDR, BUF, HDR + 32], [16, 512, 1], 1, 2);
    hdr(HDR + 64, BlkType.FLUSH, 0);
    p.dq.addChain([HDR + 64, HDR + 96], [16, 1], 1, 1);
    p.dq.publish();
    expect(parseBlkRequest(p.q.pop()!, mem, params, req)).toBe(false);
    expect(req.status).toBe(IOERR);
    expect(parseBlkRequest(p.q.pop()!, mem, params, req)).toBe(true);
    expect([req.status, req.op, req.length, req.segCount, req.usedLen]).toEqual([OK, IoOp.FLUSH, 0, 0, 1]);
  });
});

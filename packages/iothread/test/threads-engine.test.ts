import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Doorbell, GuestMemory, IoOp, type IoRequest } from "@vblk/core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  createThreadsEngine,
  type FileEngineSpec,
  openImageInfo,
  ThreadsEngine,
  type ThreadsEngineOptions,
} from "../dist/threads-engine.js";

declare const WebAssembly: {
  Memory: new (d: {
    initial: number;
    maximum: number;
    shared: true;
  }) => { readonly buffer: SharedArrayBuffer };
};

const MiB = 1 << 20;
let dir = "";

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "vblk-threads-"));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

let fileNo = 0;
function image(bytes: number | Buffer): string {
  const p = path.join(dir, `disk${fileNo++}.img`);
  fs.writeFileSync(p, typeof bytes === "number" ? Buffer.alloc(bytes) : bytes);
  return p;
}

/** O_DIRECT works on the temp directory's file system (not on old tmpfs). */
const directOk = (() => {
  const p = path.join(os.tmpdir(), `vblk-odirect-probe-${process.pid}`);
  try {
    fs.writeFileSync(p, Buffer.alloc(4096));
    fs.closeSync(fs.openSync(p, fs.constants.O_RDONLY | fs.constants.O_DIRECT));
    return true;
  } catch {
    return false;
  } finally {
    fs.rmSync(p, { force: true });
  }
})();

/** Guest memory whose data is page aligned (as the native addon's memfd memory is). */
function alignedGuestMemory(bytes: number): GuestMemory {
  const pages = Math.ceil(bytes / 65536);
  const buffer = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true }).buffer;
  return new GuestMemory([{ gpa: 0, size: bytes, buffer }]);
}

/** segs: [region, offset in region, length] */
function rq(
  op: number,
  tag: number,
  offset: number,
  segs: [number, number, number][] = [],
  length?: number,
): IoRequest {
  return {
    op,
    tag,
    offset,
    length: length ?? segs.reduce((a, s) => a + s[2], 0),
    segCount: segs.length,
    segRegion: Int32Array.from(segs.map((s) => s[0])),
    segOffset: Float64Array.from(segs.map((s) => s[1])),
    segLen: Uint32Array.from(segs.map((s) => s[2])),
  };
}

interface Rig {
  engine: ThreadsEngine;
  mem: GuestMemory;
  bell: Doorbell;
  path: string;
  /** Reap until `n` completions arrived, sleeping on the doorbell in between. Returns them in order. */
  drain(n: number, timeoutMs?: number): Promise<[number, number][]>;
  /** Enqueue, submit, drain; returns the result of each request in tag order. */
  run(reqs: IoRequest[]): Promise<number[]>;
}

const open: ThreadsEngine[] = [];
afterEach(() => {
  for (const e of open.splice(0)) e.close();
});

function rig(
  p: string,
  o: {
    direct?: boolean;
    readOnly?: boolean;
    mem?: GuestMemory;
    sizeBytes?: number;
  } & ThreadsEngineOptions = {},
): Rig {
  const mem = o.mem ?? GuestMemory.allocate(4 * MiB);
  const bell = Doorbell.create();
  const spec: FileEngineSpec = {
    kind: "threads",
    path: p,
    direct: o.direct ?? false,
    readOnly: o.readOnly ?? false,
    sizeBytes: o.sizeBytes ?? fs.statSync(p).size,
    blockSize: 512,
    isBlockDevice: false,
  };
  // Two workers unless a test asks: worker start-up is the slow part here.
  const engine = new ThreadsEngine(spec, { mem, doorbell: bell, iothread: 0 }, { workers: 2, ...o });
  open.push(engine);
  const drain = async (n: number, timeoutMs = 20_000): Promise<[number, number][]> => {
    const out: [number, number][] = [];
    const deadline = performance.now() + timeoutMs;
    while (out.length < n) {
      const snap = bell.snapshot();
      engine.reap((tag, result) => out.push([tag, result]));
      if (out.length >= n) break;
      const left = deadline - performance.now();
      // waitAsync: sleep on the doorbell without blocking this thread's event loop.
      if (left <= 0 || (await bell.waitAsync(snap, left)) === "timed-out")
        throw new Error(`timed out with ${out.length}/${n} completions`);
    }
    return out;
  };
  const run = async (reqs: IoRequest[]): Promise<number[]> => {
    for (const r of reqs) engine.enqueue(r);
    engine.submit();
    const got = await drain(reqs.length);
    const byTag = new Map(got);
    return reqs.map((r) => byTag.get(r.tag)!);
  };
  return { engine, mem, bell, path: p, drain, run };
}

/** Byte-exact comparison without vitest's slow element-wise diff of big arrays. */
function expectSame(got: Uint8Array, want: Uint8Array): void {
  expect(got.length).toBe(want.length);
  const at = Buffer.compare(got, want) === 0 ? -1 : got.findIndex((b, i) => b !== want[i]);
  expect(at, `first differing byte at ${at}`).toBe(-1);
}

function pattern(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed * 2654435761;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

describe.each([
  { direct: false, memory: "SharedArrayBuffer" },
  { direct: true, memory: "SharedArrayBuffer" },
  { direct: true, memory: "aligned" },
])("threads engine, direct=$direct, guest memory $memory", ({ direct, memory }) => {
  const skip = direct && !directOk;
  const mkMem = () => (memory === "aligned" ? alignedGuestMemory(4 * MiB) : GuestMemory.allocate(4 * MiB));

  it.skipIf(skip)("writes then reads back a pattern, single segment", async () => {
    const r = rig(image(2 * MiB), { direct, mem: mkMem() });
    const data = pattern(64 * 1024, 1);
    r.mem.write(0x10000, data);
    expect(await r.run([rq(IoOp.WRITE, 1, 512 * 1024, [[0, 0x10000, data.length]])])).toEqual([data.length]);
    expect(await r.run([rq(IoOp.READ, 2, 512 * 1024, [[0, 0x40000, data.length]])])).toEqual([data.length]);
    expectSame(r.mem.slice(0x40000, data.length), data);
    // It really is in the file.
    const onDisk = fs.readFileSync(r.path).subarray(512 * 1024, 512 * 1024 + data.length);
    expectSame(new Uint8Array(onDisk), data);
    const st = r.engine.stats();
    expect(st.submitted).toBe(2);
    expect(st.completed).toBe(2);
    expect(st.errors).toBe(0);
    if (!direct) expect(st.bounced).toBe(0);
    // A JS SharedArrayBuffer is not aligned: O_DIRECT bounces. Page-aligned memory goes direct.
    if (direct && memory === "SharedArrayBuffer") expect(st.bounced).toBe(2);
    if (direct && memory === "aligned") expect(st.bounced).toBe(0);
    expect(st.bufferedFallback).toBe(0);
  });

  it.skipIf(skip)("multi-segment writes and reads (scatter/gather over several guest buffers)", async () => {
    const r = rig(image(2 * MiB), { direct, mem: mkMem() });
    const segs: [number, number, number][] = [
      [0, 0x1000, 4096],
      [0, 0x9000, 512],
      [0, 0x20000, 8192],
      [0, 0x3000, 3584],
    ];
    const total = segs.reduce((a, s) => a + s[2], 0);
    const data = pattern(total, 2);
    let at = 0;
    for (const [, off, len] of segs) {
      r.mem.write(off, data.subarray(at, at + len));
      at += len;
    }
    expect(await r.run([rq(IoOp.WRITE, 1, 4096, segs)])).toEqual([total]);
    const file = new Uint8Array(fs.readFileSync(r.path));
    expectSame(file.subarray(4096, 4096 + total), data);
    // Read it back into a different layout.
    const back: [number, number, number][] = [
      [0, 0x100000, 1024],
      [0, 0x180000, total - 2048],
      [0, 0x1f0000, 1024],
    ];
    expect(await r.run([rq(IoOp.READ, 2, 4096, back)])).toEqual([total]);
    const got = new Uint8Array(total);
    at = 0;
    for (const [, off, len] of back) {
      got.set(r.mem.slice(off, len), at);
      at += len;
    }
    expectSame(got, data);
  });

  it.skipIf(skip)(
    "unaligned guest buffers (odd offsets and lengths) still move the right bytes",
    async () => {
      const r = rig(image(MiB), { direct, mem: mkMem() });
      const segs: [number, number, number][] = [
        [0, 0x10003, 100],
        [0, 0x20777, 412],
        [0, 0x30001, 1536],
      ];
      const total = 2048;
      const data = pattern(total, 3);
      let at = 0;
      for (const [, off, len] of segs) {
        r.mem.write(off, data.subarray(at, at + len));
        at += len;
      }
      expect(await r.run([rq(IoOp.WRITE, 1, 8192, segs)])).toEqual([total]);
      expectSame(new Uint8Array(fs.readFileSync(r.path)).subarray(8192, 8192 + total), data);
      const back: [number, number, number][] = [
        [0, 0x50005, 1000],
        [0, 0x60009, 1048],
      ];
      expect(await r.run([rq(IoOp.READ, 2, 8192, back)])).toEqual([total]);
      expectSame(r.mem.slice(0x50005, 1000), data.subarray(0, 1000));
      expectSame(r.mem.slice(0x60009, 1048), data.subarray(1000));
      if (direct) expect(r.engine.stats().bounced).toBe(2);
    },
  );

  it.skipIf(skip)("large requests (over the 1 MiB bounce chunk) are split correctly", async () => {
    const r = rig(image(8 * MiB), { direct, mem: mkMem() });
    const n = 3 * MiB + 4096;
    const data = pattern(n, 4);
    r.mem.write(0, data.subarray(0, 2 * MiB));
    r.mem.write(2 * MiB, data.subarray(2 * MiB));
    expect(await r.run([rq(IoOp.WRITE, 1, MiB, [[0, 0, n]])])).toEqual([n]);
    r.mem.slice(0, n).fill(0);
    expect(await r.run([rq(IoOp.READ, 2, MiB, [[0, 0, n]])])).toEqual([n]);
    expectSame(r.mem.slice(0, n), data);
  });

  it.skipIf(skip)("WRITE_ZEROES (with and without UNMAP) writes zeroes; DISCARD succeeds", async () => {
    const r = rig(image(Buffer.alloc(MiB, 0xff)), { direct, mem: mkMem() });
    const res = await r.run([
      rq(IoOp.WRITE_ZEROES, 1, 4096, [], 3 * 4096),
      rq(IoOp.WRITE_ZEROES_UNMAP, 2, 64 * 1024, [], 128 * 1024),
      rq(IoOp.DISCARD, 3, 512 * 1024, [], 4096),
    ]);
    expect(res).toEqual([0, 0, 0]);
    const file = new Uint8Array(fs.readFileSync(r.path));
    expect(file.subarray(4096, 4 * 4096).every((b) => b === 0)).toBe(true);
    expect(file[4095]).toBe(0xff);
    expect(file[4 * 4096]).toBe(0xff);
    expect(file.subarray(64 * 1024, 192 * 1024).every((b) => b === 0)).toBe(true);
    expect(file[192 * 1024]).toBe(0xff);
    // DISCARD does not deallocate or zero: the data is still there.
    expect(file[512 * 1024]).toBe(0xff);
    // A range O_DIRECT cannot take goes through a buffered fd.
    expect(await r.run([rq(IoOp.WRITE_ZEROES, 4, 100, [], 1000)])).toEqual([0]);
    const f2 = new Uint8Array(fs.readFileSync(r.path));
    expect(f2[99]).toBe(0xff);
    expect(f2.subarray(100, 1100).every((b) => b === 0)).toBe(true);
    expect(f2[1100]).toBe(0xff);
    expect(r.engine.stats().bufferedFallback).toBe(direct ? 1 : 0);
  });

  it.skipIf(skip)(
    "reads past the end give a short result; writes past the end fail and never grow the file",
    async () => {
      const r = rig(image(MiB), { direct, mem: mkMem() });
      r.mem.slice(0, 8192).fill(0x5a);
      const res = await r.run([
        rq(IoOp.READ, 1, MiB - 4096, [[0, 0, 8192]]),
        rq(IoOp.READ, 2, MiB, [[0, 0x10000, 4096]]),
        rq(IoOp.READ, 3, 2 * MiB, [[0, 0x10000, 512]]),
        rq(IoOp.WRITE, 4, MiB - 512, [[0, 0x20000, 1024]]),
        rq(IoOp.WRITE_ZEROES, 5, MiB - 512, [], 1024),
        rq(IoOp.DISCARD, 6, MiB, [], 512),
      ]);
      expect(res).toEqual([4096, 0, 0, -5, -5, -5]);
      expect(r.mem.slice(0, 4096).every((b) => b === 0)).toBe(true);
      expect(r.mem.slice(4096, 4096).every((b) => b === 0x5a)).toBe(true);
      expect(fs.statSync(r.path).size).toBe(MiB);
    },
  );
});

describe("threads engine: ordering, concurrency, errors, close", () => {
  it("a FLUSH is held until the writes enqueued before it complete", async () => {
    const r = rig(image(64 * MiB), { workers: 4 });
    const data = pattern(MiB, 5);
    r.mem.write(0, data);
    const n = 24;
    for (let i = 0; i < n; i++) r.engine.enqueue(rq(IoOp.WRITE, i, i * MiB, [[0, 0, MiB]]));
    r.engine.enqueue(rq(IoOp.FLUSH, 1000, 0));
    // A read after the flush is not held back by it.
    r.engine.enqueue(rq(IoOp.READ, 2000, 0, [[0, 2 * MiB, 4096]]));
    r.engine.submit();
    // Nothing has been reaped, so no write is known complete: the flush waits in the IOThread.
    expect(r.engine.heldFlushes).toBe(1);
    expect(r.engine.inflight).toBe(n + 2);
    const order = (await r.drain(n + 2)).map(([tag, result]) => {
      expect(result).toBe(tag === 1000 ? 0 : tag === 2000 ? 4096 : MiB);
      return tag;
    });
    const flushAt = order.indexOf(1000);
    expect(flushAt).toBe(order.length - 1 - (order.indexOf(2000) > flushAt ? 1 : 0));
    for (let i = 0; i < n; i++) expect(order.indexOf(i)).toBeLessThan(flushAt);
    expect(r.engine.heldFlushes).toBe(0);
    expect(r.engine.inflight).toBe(0);
  });

  it("a FLUSH with no writes outstanding goes straight to a worker; flushes keep their own epochs", async () => {
    const r = rig(image(8 * MiB));
    r.engine.enqueue(rq(IoOp.FLUSH, 1, 0));
    expect(r.engine.heldFlushes).toBe(0);
    r.engine.submit();
    expect(await r.drain(1)).toEqual([[1, 0]]);
    // write A, flush F1, write B, flush F2: F1 waits only for A, F2 for A and B.
    r.mem.slice(0, 2 * MiB).fill(7);
    r.engine.enqueue(rq(IoOp.WRITE, 10, 0, [[0, 0, 2 * MiB]]));
    r.engine.enqueue(rq(IoOp.FLUSH, 11, 0));
    r.engine.enqueue(rq(IoOp.WRITE, 12, 2 * MiB, [[0, 0, 2 * MiB]]));
    r.engine.enqueue(rq(IoOp.FLUSH, 13, 0));
    r.engine.submit();
    expect(r.engine.heldFlushes).toBe(2);
    const order = (await r.drain(4)).map(([t]) => t);
    expect(order.indexOf(10)).toBeLessThan(order.indexOf(11));
    expect(order.indexOf(10)).toBeLessThan(order.indexOf(13));
    expect(order.indexOf(12)).toBeLessThan(order.indexOf(13));
  });

  it("1000 concurrent requests all complete, woken by the doorbell", async () => {
    const size = 16 * MiB;
    const initial = randomBytes(size);
    const r = rig(image(initial), { workers: 4, ringSlots: 64 });
    const N = 1000;
    const bs = 4096;
    const reqs: IoRequest[] = [];
    const expectBlock = new Map<number, Uint8Array>();
    for (let i = 0; i < N; i++) {
      const block = i % (size / bs);
      if (i % 3 === 0) {
        // Write a fresh pattern from its own guest buffer; no other request touches this block.
        const d = pattern(bs, 100 + i);
        r.mem.write(i * bs, d);
        expectBlock.set(block, d);
        reqs.push(rq(IoOp.WRITE, i, block * bs, [[0, i * bs, bs]]));
      } else {
        reqs.push(rq(IoOp.READ, i, block * bs, [[0, i * bs, bs]]));
      }
    }
    const seq0 = r.bell.snapshot();
    for (const q of reqs) r.engine.enqueue(q);
    r.engine.submit();
    // 4 workers x 64 slots: the rest waits in the backlog and goes out as completions are reaped.
    expect(r.engine.backlogged).toBe(N - 4 * 64);
    const got = await r.drain(N, 60_000);
    expect(got).toHaveLength(N);
    expect(new Set(got.map(([t]) => t)).size).toBe(N);
    for (const [tag, result] of got) expect(result, `request ${tag}`).toBe(bs);
    // Every completion rang the IOThread's doorbell.
    expect((r.bell.snapshot() - seq0) | 0).toBeGreaterThanOrEqual(N);
    // Reads saw the initial data (the blocks they read are never written).
    for (let i = 0; i < N; i++) {
      if (i % 3 === 0) continue;
      const block = i % (size / bs);
      expect(Buffer.from(r.mem.slice(i * bs, bs)).equals(initial.subarray(block * bs, block * bs + bs))).toBe(
        true,
      );
    }
    const file = fs.readFileSync(r.path);
    for (const [block, d] of expectBlock)
      expectSame(new Uint8Array(file.subarray(block * bs, block * bs + bs)), d);
    const st = r.engine.stats();
    expect(st.submitted).toBe(N);
    expect(st.completed).toBe(N);
    expect(r.engine.inflight).toBe(0);
    expect(r.engine.backlogged).toBe(0);
  });

  it("close() stops and joins every worker; later calls throw", async () => {
    const r = rig(image(MiB), { workers: 3 });
    expect(await r.run([rq(IoOp.READ, 1, 0, [[0, 0, 4096]])])).toEqual([4096]);
    const ids = r.engine.threadIds;
    expect(ids).toHaveLength(3);
    expect(new Set(ids).size).toBe(3);
    expect(r.engine.workers.map((w) => w.threadId)).toEqual(ids);
    const exits = r.engine.workers.map((w) => new Promise<number>((res) => w.once("exit", res)));
    const t0 = performance.now();
    r.engine.close();
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(await Promise.all(exits)).toEqual([0, 0, 0]);
    // After exit a Worker's threadId reads -1.
    expect(r.engine.workers.map((w) => w.threadId)).toEqual([-1, -1, -1]);
    expect(() => r.engine.enqueue(rq(IoOp.READ, 2, 0, [[0, 0, 512]]))).toThrow("threads engine closed");
    expect(() => r.engine.submit()).toThrow("threads engine closed");
    expect(() => r.engine.reap(() => {})).toThrow("threads engine closed");
    r.engine.close(); // idempotent
  });

  it("close() right after creation (workers still starting) and with requests in flight", async () => {
    const r = rig(image(4 * MiB), { workers: 2 });
    for (let i = 0; i < 16; i++) r.engine.enqueue(rq(IoOp.WRITE, i, i * 4096, [[0, 0, 4096]]));
    r.engine.submit();
    const exits = r.engine.workers.map((w) => new Promise<number>((res) => w.once("exit", res)));
    r.engine.close();
    expect(await Promise.all(exits)).toEqual([0, 0]);
  });

  it("a worker that dies fails its requests with -EIO; the others carry on", async () => {
    const r = rig(image(4 * MiB), { workers: 2 });
    const first = Array.from({ length: 8 }, (_, i) => rq(IoOp.WRITE, i, i * 4096, [[0, 0, 4096]]));
    for (const q of first) r.engine.enqueue(q);
    r.engine.submit();
    // Kill worker 0 (most likely before it even started): nothing it was given can complete.
    await r.engine.workers[0]!.terminate();
    const res = await r.run([]).then(() => r.drain(8));
    expect(res).toHaveLength(8);
    for (const [, result] of res) expect([4096, -5]).toContain(result);
    // New requests go to the live worker only.
    const more = await r.run(
      Array.from({ length: 8 }, (_, i) => rq(IoOp.READ, 100 + i, i * 4096, [[0, 0, 4096]])),
    );
    expect(more).toEqual(new Array(8).fill(4096));
    // With every worker gone, requests fail at once.
    await r.engine.workers[1]!.terminate();
    expect(await r.run([rq(IoOp.READ, 200, 0, [[0, 0, 4096]]), rq(IoOp.FLUSH, 201, 0)])).toEqual([-5, -5]);
    expect(r.engine.inflight).toBe(0);
    expect(r.engine.workerError).toBeNull();
  });

  it("cancel() forgets requests that have not reached a worker; a cancelled write releases the FLUSH after it", async () => {
    const r = rig(image(4 * MiB), { workers: 1, ringSlots: 2 });
    for (let i = 0; i < 4; i++) r.engine.enqueue(rq(IoOp.WRITE, i, i * 4096, [[0, 0, 4096]]));
    r.engine.enqueue(rq(IoOp.FLUSH, 10, 0));
    r.engine.enqueue(rq(IoOp.DISCARD, 11, 0, [], 4096));
    expect(r.engine.backlogged).toBe(2);
    expect(r.engine.heldFlushes).toBe(1);
    expect(r.engine.inflight).toBe(6);
    expect(r.engine.cancel(0)).toBe(false); // on the worker's ring
    expect(r.engine.cancel(3)).toBe(true); // in the backlog
    expect(r.engine.cancel(11)).toBe(true); // answered locally, not reaped yet
    expect(r.engine.cancel(99)).toBe(false);
    expect(r.engine.backlogged).toBe(1);
    expect(r.engine.inflight).toBe(4);
    r.engine.submit();
    const order = (await r.drain(4)).map(([t]) => t);
    expect(order.slice(0, 3).sort()).toEqual([0, 1, 2]);
    expect(order[3]).toBe(10);
    expect(r.engine.inflight).toBe(0);
    // A held FLUSH can be cancelled too.
    r.engine.enqueue(rq(IoOp.WRITE, 20, 0, [[0, 0, 4096]]));
    r.engine.enqueue(rq(IoOp.FLUSH, 21, 0));
    expect(r.engine.cancel(21)).toBe(true);
    r.engine.submit();
    expect(await r.drain(1)).toEqual([[20, 4096]]);
    expect(r.engine.heldFlushes).toBe(0);
    expect(r.engine.inflight).toBe(0);
  });

  it("read-only: writes fail with -EROFS, reads and flushes work", async () => {
    const p = image(Buffer.alloc(MiB, 0x11));
    const r = rig(p, { readOnly: true });
    const res = await r.run([
      rq(IoOp.WRITE, 1, 0, [[0, 0, 512]]),
      rq(IoOp.WRITE_ZEROES, 2, 0, [], 512),
      rq(IoOp.DISCARD, 3, 0, [], 512),
      rq(IoOp.READ, 4, 0, [[0, 0, 512]]),
      rq(IoOp.FLUSH, 5, 0),
    ]);
    expect(res).toEqual([-30, -30, -30, 512, 0]);
    expect(r.mem.slice(0, 512).every((b) => b === 0x11)).toBe(true);
    expect(r.engine.stats().errors).toBe(3);
  });

  it("bad requests fail alone: unknown op, segments outside guest memory, length mismatch", async () => {
    const r = rig(image(MiB), {
      mem: new GuestMemory([{ gpa: 0, size: 65536, buffer: new SharedArrayBuffer(65536) }]),
    });
    const res = await r.run([
      rq(99, 1, 0),
      rq(IoOp.READ, 2, 0, [[0, 65536 - 100, 512]]),
      rq(IoOp.READ, 3, 0, [[5, 0, 512]]),
      rq(IoOp.WRITE, 4, 0, [[0, 0, 512]], 1024),
      rq(IoOp.READ, 5, 0, [[0, 0, 512]]),
    ]);
    expect(res).toEqual([-22, -14, -14, -22, 512]);
  });

  it("refuses what it cannot run, with clear messages", async () => {
    const mem = GuestMemory.allocate(MiB);
    const ctx = { mem, doorbell: Doorbell.create(), iothread: 0 };
    const base: FileEngineSpec = {
      kind: "threads",
      path: image(MiB),
      direct: false,
      readOnly: false,
      sizeBytes: MiB,
      blockSize: 512,
      isBlockDevice: false,
    };
    expect(() => new ThreadsEngine({ ...base, workers: 0 }, ctx)).toThrow(
      "threads engine: workers must be an integer from 1 to 64 (I/O threads per IOThread), got 0",
    );
    const missing = path.join(dir, "nope.img");
    expect(() => new ThreadsEngine({ ...base, path: missing }, ctx)).toThrow(
      `image "${missing}": cannot open: no such file`,
    );
    const plain = new GuestMemory([{ gpa: 0, size: 4096, buffer: new ArrayBuffer(4096) }]);
    expect(() => new ThreadsEngine(base, { ...ctx, mem: plain })).toThrow(
      /region 0 is not a SharedArrayBuffer/,
    );
    expect(() => createThreadsEngine({ kind: "null", sizeBytes: 1 }, ctx)).toThrow(/must be "threads"/);
    const e = createThreadsEngine({ ...base, workers: 1 }, ctx);
    expect(e.name).toBe("threads");
    expect(e.wait).toEqual({ kind: "doorbell" });
    expect(e.threadIds).toHaveLength(1);
    e.close();
  });
});

describe("openImageInfo", () => {
  it("regular files: size, 512-byte blocks, not a block device", async () => {
    const p = image(3 * MiB);
    expect(openImageInfo(p, { direct: false, readOnly: true })).toEqual({
      sizeBytes: 3 * MiB,
      logicalBlockSize: 512,
      physicalBlockSize: 512,
      isBlockDevice: false,
    });
    if (directOk) expect(openImageInfo(p, { direct: true, readOnly: false }).logicalBlockSize).toBe(512);
  });

  it("refuses a size that is not a multiple of 512, naming the path", async () => {
    const p = image(1000);
    expect(() => openImageInfo(p, { direct: false, readOnly: false })).toThrow(
      `image "${p}" is 1000 bytes, not a multiple of 512: virtio-blk counts capacity in 512-byte sectors (resize it to 1024 bytes)`,
    );
  });

  it("refuses missing files, directories, and read-write on a read-only file", async () => {
    const missing = path.join(dir, "missing.img");
    expect(() => openImageInfo(missing, { direct: false, readOnly: true })).toThrow(
      `image "${missing}": cannot open: no such file`,
    );
    expect(() => openImageInfo(dir, { direct: false, readOnly: true })).toThrow(
      `image "${dir}" is neither a regular file nor a block device`,
    );
    if (process.getuid?.() !== 0) {
      const p = image(MiB);
      fs.chmodSync(p, 0o444);
      expect(() => openImageInfo(p, { direct: false, readOnly: false })).toThrow(
        /permission denied for read-write/,
      );
    }
  });

  const canLoop = (() => {
    if (process.getuid?.() !== 0) return false;
    try {
      execFileSync("losetup", ["--version"], { stdio: "ignore" });
      return true;
    } catch {
      return false;
    }
  })();

  it.skipIf(!canLoop)("block devices: size from sysfs (stat says 0), block size from the queue", async () => {
    const p = image(5 * MiB);
    const dev = execFileSync("losetup", ["-f", "--show", p], { encoding: "utf8" }).trim();
    try {
      expect(fs.statSync(dev).size).toBe(0);
      const info = openImageInfo(dev, { direct: false, readOnly: true });
      expect(info).toEqual({
        sizeBytes: 5 * MiB,
        logicalBlockSize: 512,
        physicalBlockSize: 512,
        isBlockDevice: true,
      });
      // And the engine runs on it.
      const r = rig(dev, { sizeBytes: info.sizeBytes, readOnly: true, workers: 1 });
      expect(await r.run([rq(IoOp.READ, 1, 5 * MiB - 4096, [[0, 0, 4096]])])).toEqual([4096]);
      r.engine.close();
    } finally {
      execFileSync("losetup", ["-d", dev]);
    }
  });
});

// Real I/O through each native engine on files in a temp dir.
import { closeSync, fsyncSync, openSync, readFileSync, readSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  allocGuestMemory,
  closeFd,
  type EngineKind,
  eventfd,
  eventfdRead,
  eventfdWrite,
  NativeEngine,
  nativeAvailable,
  nativeLoadError,
  OP_DISCARD,
  OP_FLUSH,
  OP_READ,
  OP_WRITE,
  OP_WRITE_ZEROES,
  OP_WRITE_ZEROES_UNMAP,
  openBlockFile,
  probeEngines,
} from "../dist/index.js";
import {
  allZero,
  Batch,
  collect,
  engineOn,
  makeImage,
  makeTmpDir,
  pattern,
  run,
  sameBytes,
} from "./helpers.js";

const EFAULT = 14;
const EINVAL = 22;
const KiB = 1024;
const MiB = 1024 * 1024;

if (!nativeAvailable())
  console.warn(`[backend-libaio] native addon not loaded, engine tests skipped: ${nativeLoadError()}`);

for (const kind of ["io_uring", "libaio"] as EngineKind[]) {
  const probe = nativeAvailable() ? probeEngines()[kind] : nativeLoadError();
  if (probe !== true) console.warn(`[backend-libaio] ${kind} engine tests SKIPPED: ${probe}`);

  describe.skipIf(probe !== true)(`NativeEngine ${kind}`, () => {
    let tmp: ReturnType<typeof makeTmpDir>;
    let mem: Uint8Array; // region 0: 8 MiB
    let mem2: Uint8Array; // region 1: 1 MiB
    const memFds: number[] = [];
    const engines: NativeEngine[] = [];

    beforeAll(() => {
      tmp = makeTmpDir(`engine-${kind}`);
      const a = allocGuestMemory(8 * MiB, "test-r0");
      const b = allocGuestMemory(1 * MiB, "test-r1");
      memFds.push(a.fd, b.fd);
      mem = new Uint8Array(a.buffer);
      mem2 = new Uint8Array(b.buffer);
    });

    afterAll(() => {
      for (const e of engines) e.close();
      for (const fd of memFds) closeFd(fd);
      tmp.cleanup();
    });

    function image(name: string, size: number, fill?: number): string {
      const path = join(tmp.dir, name);
      makeImage(path, size, fill);
      return path;
    }

    function engine(path: string, opts: { direct?: boolean; depth?: number } = {}): NativeEngine {
      const e = engineOn(kind, path, [mem, mem2], opts);
      engines.push(e);
      return e;
    }

    it(
      kind === "io_uring"
        ? "sleep() wakes for a completion or a watched eventfd, and reports which fd fired"
        : "cannot watch fds (epoll serves libaio)",
      () => {
        const path = image("watch.img", 1 * MiB, 0x5a);
        const e = engine(path);
        if (kind !== "io_uring") {
          expect(e.canWatch()).toBe(false);
          expect(() => e.watchFd(0, 1)).toThrow(/cannot watch/);
          return;
        }
        expect(e.canWatch()).toBe(true);
        // nothing in flight, nothing watched: returns at once
        let t = performance.now();
        expect(e.sleep(2000)).toBe(0);
        expect(performance.now() - t).toBeLessThan(500);
        const kick = eventfd(0, true);
        const other = eventfd(0, true);
        try {
          e.watchFd(kick, 7);
          e.watchFd(other, 9);
          // nothing written: the sleep times out
          t = performance.now();
          expect(e.sleep(60)).toBe(0);
          expect(performance.now() - t).toBeGreaterThanOrEqual(50);
          expect(e.takeReady()).toEqual([]);
          // a write wakes it, names the fd and drains it
          eventfdWrite(kick, 1);
          t = performance.now();
          expect(e.sleep(2000)).toBe(0);
          expect(performance.now() - t).toBeLessThan(500);
          expect(e.takeReady()).toEqual([7]);
          expect(eventfdRead(kick)).toBe(0);
          // again: the poll is multishot
          eventfdWrite(kick, 3);
          e.sleep(2000);
          expect(e.takeReady()).toEqual([7]);
          // a completion wakes it too, and is reaped into cq
          const b = new Batch(e);
          b.add(OP_READ, 42, 0, [[0, 0, 4096]]);
          b.submit();
          let got = 0;
          for (let i = 0; i < 10 && got === 0; i++) got = e.sleep(2000);
          expect(got).toBe(1);
          expect([e.cq[0], e.cq[1]]).toEqual([42, 4096]);
          expect(mem[100]).toBe(0x5a);
          // a FLUSH behind a write completes while fds are watched (no IO_DRAIN
          // behind a multishot poll that never ends), and after the write
          mem.fill(0xc3, 8192, 12288);
          b.add(OP_WRITE, 50, 4096, [[0, 8192, 4096]]);
          b.add(OP_FLUSH, 51, 0);
          b.submit();
          const order: number[] = [];
          const deadline = performance.now() + 5000;
          while (order.length < 2 && performance.now() < deadline) {
            const k = e.sleep(1000);
            for (let i = 0; i < k; i++) order.push(e.cq[2 * i]!);
          }
          expect(order).toEqual([50, 51]);
          // unwatched: a write no longer wakes it
          e.unwatchFd(7);
          eventfdWrite(kick, 1);
          t = performance.now();
          e.sleep(60);
          expect(performance.now() - t).toBeGreaterThanOrEqual(50);
          expect(e.takeReady()).toEqual([]);
          expect(e.watchErrors()).toBe(0);
          // a watch the kernel refuses (a closed fd) is counted and wakes the
          // sleeper with its token, so the caller can fall back to epoll
          const dead = eventfd(0, true);
          closeFd(dead);
          e.watchFd(dead, 11);
          for (let i = 0; i < 10 && e.watchErrors() === 0; i++) e.sleep(200);
          expect(e.watchErrors()).toBe(1);
          expect(e.takeReady()).toContain(11);
          e.unwatchFd(11);
        } finally {
          e.unwatchFd(9);
          closeFd(kick);
          closeFd(other);
        }
      },
    );

    it("writes patterns and reads them back (O_DIRECT, zero copy)", () => {
      const path = image("rw.img", 4 * MiB, 0);
      const e = engine(path);
      expect(e.kind).toBe(kind);
      const b = new Batch(e);
      for (let i = 0; i < 16; i++) {
        mem.set(pattern(4096, i), i * 4096);
        b.add(OP_WRITE, 100 + i, (2 * i + 1) * 4096, [[0, i * 4096, 4096]]);
      }
      const w = run(b);
      for (let i = 0; i < 16; i++) expect(w.get(100 + i)).toBe(4096);
      mem.fill(0, 1 * MiB, 1 * MiB + 16 * 4096);
      for (let i = 0; i < 16; i++)
        b.add(OP_READ, 200 + i, (2 * i + 1) * 4096, [[0, 1 * MiB + i * 4096, 4096]]);
      const r = run(b);
      for (let i = 0; i < 16; i++) {
        expect(r.get(200 + i)).toBe(4096);
        expect(mem.subarray(1 * MiB + i * 4096, 1 * MiB + (i + 1) * 4096)).toEqual(pattern(4096, i));
      }
      // What the kernel has on disk, read independently of the engine.
      const onDisk = readFileSync(path);
      for (let i = 0; i < 16; i++) {
        expect(new Uint8Array(onDisk.subarray((2 * i + 1) * 4096, (2 * i + 2) * 4096))).toEqual(
          pattern(4096, i),
        );
      }
      const s = e.stats();
      expect(s.submitted).toBe(32);
      expect(s.completed).toBe(32);
      expect(s.errors).toBe(0);
      expect(s.bounced).toBe(0);
      expect(e.inflight()).toBe(0);
    });

    it("multi-iovec writev/readv across two regions", () => {
      const path = image("iov.img", 1 * MiB, 0xee);
      const e = engine(path);
      const data = pattern(16 * KiB, 99);
      // write: 4 KiB from region 0, 8 KiB from region 1, 4 KiB from region 0 again
      mem.set(data.subarray(0, 4096), 0);
      mem2.set(data.subarray(4096, 12288), 8192);
      mem.set(data.subarray(12288), 20480);
      const b = new Batch(e);
      b.add(OP_WRITE, 1, 64 * KiB, [
        [0, 0, 4096],
        [1, 8192, 8192],
        [0, 20480, 4096],
      ]);
      expect(run(b).get(1)).toBe(16 * KiB);
      // read back split differently
      mem2.fill(0, 65536, 65536 + 12288);
      mem.fill(0, 131072, 131072 + 4096);
      b.add(OP_READ, 2, 64 * KiB, [
        [1, 65536, 12288],
        [0, 131072, 4096],
      ]);
      expect(run(b).get(2)).toBe(16 * KiB);
      const back = new Uint8Array(16 * KiB);
      back.set(mem2.subarray(65536, 65536 + 12288), 0);
      back.set(mem.subarray(131072, 131072 + 4096), 12288);
      expect(back).toEqual(data);
      expect(new Uint8Array(readFileSync(path).subarray(64 * KiB, 80 * KiB))).toEqual(data);
    });

    it("bounces misaligned buffers under O_DIRECT and gets the data right", () => {
      const path = image("bounce.img", 1 * MiB);
      const e = engine(path);
      const data = pattern(8192, 7);
      mem.set(data, 100); // not 512-aligned in memory
      const b = new Batch(e);
      b.add(OP_WRITE, 1, 0, [[0, 100, 8192]]);
      expect(run(b).get(1)).toBe(8192);
      mem.fill(0, 333, 333 + 8192);
      b.add(OP_READ, 2, 0, [[0, 333, 8192]]);
      expect(run(b).get(2)).toBe(8192);
      expect(mem.subarray(333, 333 + 8192)).toEqual(data);
      expect(new Uint8Array(readFileSync(path).subarray(0, 8192))).toEqual(data);
      // iovec lengths not multiples of the block (aligned bases, 1000 + 7192 bytes)
      b.add(OP_READ, 3, 0, [
        [0, 65536, 1000],
        [1, 0, 7192],
      ]);
      expect(run(b).get(3)).toBe(8192);
      expect(mem.subarray(65536, 65536 + 1000)).toEqual(data.subarray(0, 1000));
      expect(mem2.subarray(0, 7192)).toEqual(data.subarray(1000));
      // a read whose disk range is not block aligned: aligned superset read, copy the middle
      const file = readFileSync(path);
      b.add(OP_READ, 4, 10000, [[0, 4096, 3000]]);
      expect(run(b).get(4)).toBe(3000);
      expect(mem.subarray(4096, 7096)).toEqual(new Uint8Array(file.subarray(10000, 13000)));
      const s = e.stats();
      expect(s.bounced).toBe(4);
      expect(s.bouncedBytes).toBe(8192 * 3 + 3000);
      // a sub-block write cannot be done without read-modify-write: refused
      b.add(OP_WRITE, 5, 100, [[0, 0, 512]]);
      expect(run(b).get(5)).toBe(-EINVAL);
    });

    it("does not bounce when the fd is not O_DIRECT", () => {
      const path = image("buffered.img", 256 * KiB);
      const e = engine(path, { direct: false });
      const data = pattern(1000, 3);
      mem.set(data, 7);
      const b = new Batch(e);
      b.add(OP_WRITE, 1, 12345, [[0, 7, 1000]]);
      expect(run(b).get(1)).toBe(1000);
      b.add(OP_FLUSH, 2, 0);
      expect(run(b).get(2)).toBe(0);
      mem.fill(0, 50001, 51001);
      b.add(OP_READ, 3, 12345, [[0, 50001, 1000]]);
      expect(run(b).get(3)).toBe(1000);
      expect(mem.subarray(50001, 51001)).toEqual(data);
      expect(e.stats().bounced).toBe(0);
    });

    it("orders a flush after every write submitted before it", () => {
      const path = image("flush.img", 4 * MiB, 0);
      const e = engine(path, { depth: 32 });
      for (let round = 0; round < 3; round++) {
        const b = new Batch(e);
        for (let i = 0; i < 8; i++) {
          mem.set(pattern(64 * KiB, round * 10 + i), i * 64 * KiB);
          b.add(OP_WRITE, i, i * 64 * KiB, [[0, i * 64 * KiB, 64 * KiB]]);
        }
        b.add(OP_FLUSH, 100, 0);
        b.add(OP_WRITE, 200, 2 * MiB, [[0, 0, 4096]]);
        b.add(OP_READ, 201, 3 * MiB, [[0, 3 * MiB, 4096]]);
        b.submit();
        const order = collect(e, 11);
        const byTag = new Map(order);
        expect(byTag.get(100)).toBe(0);
        const flushAt = order.findIndex(([t]) => t === 100);
        for (let i = 0; i < 8; i++) {
          expect(byTag.get(i)).toBe(64 * KiB);
          expect(order.findIndex(([t]) => t === i)).toBeLessThan(flushAt);
        }
      }
    });

    it("discard punches a hole: reads back zeros and frees blocks", () => {
      const path = image("discard.img", 8 * MiB);
      const fd = openSync(path, "r+");
      fsyncSync(fd);
      closeSync(fd);
      const before = statSync(path).blocks;
      const e = engine(path);
      const b = new Batch(e);
      b.add(OP_DISCARD, 1, 1 * MiB, [], 4 * MiB);
      expect(run(b).get(1)).toBe(0);
      mem.fill(0xaa, 0, 4 * MiB + 8192);
      b.add(OP_READ, 2, 1 * MiB - 4096, [[0, 0, 4 * MiB + 8192]]);
      expect(run(b).get(2)).toBe(4 * MiB + 8192);
      expect(allZero(mem.subarray(4096, 4096 + 4 * MiB))).toBe(true);
      // the blocks on either side keep their data
      const file = readFileSync(path);
      expect(mem.subarray(0, 4096)).toEqual(new Uint8Array(file.subarray(1 * MiB - 4096, 1 * MiB)));
      expect(allZero(mem.subarray(0, 4096))).toBe(false);
      expect(allZero(mem.subarray(4096 + 4 * MiB, 8192 + 4 * MiB))).toBe(false);
      const after = statSync(path).blocks;
      expect(before - after).toBeGreaterThanOrEqual(((4 * MiB) / 512) * 0.9);
      expect(statSync(path).size).toBe(8 * MiB);
    });

    it("write-zeroes zeroes a range; the unmap variant frees blocks too", () => {
      const path = image("wz.img", 8 * MiB);
      const fd = openSync(path, "r+");
      fsyncSync(fd);
      closeSync(fd);
      const e = engine(path);
      const b = new Batch(e);
      const before = statSync(path).blocks;
      b.add(OP_WRITE_ZEROES, 1, 0, [], 2 * MiB);
      expect(run(b).get(1)).toBe(0);
      const mid = statSync(path).blocks;
      expect(mid).toBeGreaterThanOrEqual(before - 64); // stays allocated
      b.add(OP_WRITE_ZEROES_UNMAP, 2, 4 * MiB, [], 2 * MiB);
      expect(run(b).get(2)).toBe(0);
      expect(mid - statSync(path).blocks).toBeGreaterThanOrEqual(((2 * MiB) / 512) * 0.9);
      mem.fill(0x55, 0, 8 * MiB);
      b.add(OP_READ, 3, 0, [[0, 0, 8 * MiB]]);
      expect(run(b).get(3)).toBe(8 * MiB);
      expect(allZero(mem.subarray(0, 2 * MiB))).toBe(true);
      expect(allZero(mem.subarray(2 * MiB, 4 * MiB))).toBe(false);
      expect(allZero(mem.subarray(4 * MiB, 6 * MiB))).toBe(true);
      expect(allZero(mem.subarray(6 * MiB, 8 * MiB))).toBe(false);
      b.add(OP_DISCARD, 4, 0, [], 0); // zero length: nothing to do
      expect(run(b).get(4)).toBe(0);
    });

    it("returns short counts for reads past the end, without crashing", () => {
      const path = image("short.img", 1 * MiB);
      const e = engine(path);
      const b = new Batch(e);
      b.add(OP_READ, 1, 1 * MiB - 4096, [[0, 0, 8192]]);
      b.add(OP_READ, 2, 1 * MiB, [[0, 8192, 4096]]);
      b.add(OP_READ, 3, 64 * MiB, [[0, 16384, 4096]]);
      b.add(OP_READ, 4, 1 * MiB - 512, [[0, 40000, 2048]]); // bounced + past the end
      const r = run(b);
      expect(r.get(1)).toBe(4096);
      expect(r.get(2)).toBe(0);
      expect(r.get(3)).toBe(0);
      expect(r.get(4)).toBe(512);
      const file = readFileSync(path);
      expect(mem.subarray(0, 4096)).toEqual(new Uint8Array(file.subarray(1 * MiB - 4096)));
      expect(mem.subarray(40000, 40512)).toEqual(new Uint8Array(file.subarray(1 * MiB - 512)));
    });

    it("submits a batch of 256 requests with one syscall", () => {
      const path = image("batch.img", 16 * MiB);
      const e = engine(path, { depth: 256 });
      const b = new Batch(e);
      for (let i = 0; i < 256; i++) b.add(OP_READ, i, ((i * 37) % 4096) * 4096, [[0, i * 4096, 4096]]);
      const before = e.stats().submitCalls;
      b.submit();
      expect(e.stats().submitCalls - before).toBe(1);
      const got = new Map(collect(e, 256));
      expect(got.size).toBe(256);
      for (let i = 0; i < 256; i++) expect(got.get(i)).toBe(4096);
      expect(e.stats().submitCalls - before).toBeLessThanOrEqual(2);
      const file = readFileSync(path);
      for (const i of [0, 17, 255]) {
        const off = ((i * 37) % 4096) * 4096;
        expect(mem.subarray(i * 4096, (i + 1) * 4096)).toEqual(
          new Uint8Array(file.subarray(off, off + 4096)),
        );
      }
    });

    it("queues beyond depth internally: 1000 writes + flush + 1000 reads with depth 64", () => {
      const path = image("depth.img", 8 * MiB, 0);
      const e = engine(path, { depth: 64 });
      expect(e.depth).toBe(64);
      expect(e.sqCapacity).toBeGreaterThanOrEqual(1001);
      const b = new Batch(e);
      for (let i = 0; i < 1000; i++) {
        mem.set(pattern(4096, 5000 + i), i * 4096);
        b.add(OP_WRITE, i, ((i * 7) % 2048) * 4096, [[0, i * 4096, 4096]]);
      }
      b.add(OP_FLUSH, 5000, 0);
      b.submit();
      expect(e.inflight()).toBe(1001);
      const w = collect(e, 1001);
      const wt = new Map(w);
      for (let i = 0; i < 1000; i++) expect(wt.get(i)).toBe(4096);
      expect(wt.get(5000)).toBe(0);
      expect(w.at(-1)?.[0]).toBe(5000); // flush after all writes
      mem.fill(0, 0, 1000 * 4096);
      for (let i = 0; i < 1000; i++)
        b.add(OP_READ, 10000 + i, ((i * 7) % 2048) * 4096, [[0, i * 4096, 4096]]);
      b.submit();
      const r = new Map(collect(e, 1000));
      for (let i = 0; i < 1000; i++) {
        expect(r.get(10000 + i)).toBe(4096);
        if (!sameBytes(mem.subarray(i * 4096, (i + 1) * 4096), pattern(4096, 5000 + i))) {
          expect.fail(`read ${i} returned wrong data`);
        }
      }
      expect(e.inflight()).toBe(0);
      const s = e.stats();
      expect(s.completed).toBe(2001);
      expect(s.errors).toBe(0);
    });

    it("completes requests with bad iovecs with -EFAULT and touches no memory", () => {
      const path = image("efault.img", 1 * MiB);
      const e = engine(path);
      mem2.fill(0x5a, mem2.length - 8192);
      const b = new Batch(e);
      b.add(OP_READ, 1, 0, [[7, 0, 4096]]); // no region 7
      b.add(OP_READ, 2, 0, [[1, mem2.length - 4096, 8192]]); // runs off the region
      b.add(OP_READ, 3, 0, [[1, mem2.length + 4096, 4096]]); // starts past it
      b.add(OP_READ, 4, 0, [[1, Number.NaN, 4096]]);
      b.add(OP_READ, 5, 0, [[1, -4096, 4096]]);
      b.add(OP_READ, 6, 0, [
        [1, 0, 4096],
        [1, mem2.length - 100, 4096], // second iovec bad: whole request fails, first not touched
      ]);
      b.add(OP_WRITE, 7, 0, [[0, 2 ** 52, 4096]]);
      b.add(OP_READ, 8, 0, [[1, mem2.length - 8192, 4096]]); // a good one in the same batch
      b.add(9, 9, 0, [[0, 0, 4096]]); // unknown op
      b.add(OP_READ, 10, -4096, [[0, 0, 4096]]); // negative disk offset
      b.add(OP_READ, 11, 0, []); // no iovecs
      mem2.fill(0x5a, 0, 4096);
      const r = run(b);
      for (const t of [1, 2, 3, 4, 5, 6, 7]) expect(r.get(t), `tag ${t}`).toBe(-EFAULT);
      expect(r.get(8)).toBe(4096);
      for (const t of [9, 10, 11]) expect(r.get(t), `tag ${t}`).toBe(-EINVAL);
      expect(mem2.subarray(0, 4096).every((x) => x === 0x5a)).toBe(true);
      expect(mem2.subarray(mem2.length - 4096).every((x) => x === 0x5a)).toBe(true);
      expect(e.stats().errors).toBe(10);
      // a completion produced at submit time still wakes the completion fd
      b.add(OP_READ, 12, 0, [[9, 0, 1]]);
      b.submit();
      expect(e.waitCompletions(1, 1000)).toBe(1);
      expect(e.cq[1]).toBe(-EFAULT);
    });

    it("waitCompletions returns 0 at once when nothing is outstanding", () => {
      const e = engine(image("idle.img", 64 * KiB));
      const t0 = Date.now();
      expect(e.waitCompletions(1, 2000)).toBe(0);
      expect(Date.now() - t0).toBeLessThan(500);
      expect(e.reap()).toBe(0);
    });

    it("a write on a read-only fd completes with -EBADF", () => {
      const path = image("ro.img", 64 * KiB);
      const e = engineOn(kind, path, [mem], { readOnly: true });
      engines.push(e);
      const b = new Batch(e);
      b.add(OP_WRITE, 1, 0, [[0, 0, 4096]]);
      b.add(OP_READ, 2, 0, [[0, 0, 4096]]);
      const r = run(b);
      expect(r.get(1)).toBe(-9);
      expect(r.get(2)).toBe(4096);
    });

    it("throws after close, and close is idempotent", () => {
      const path = image("close.img", 64 * KiB);
      const f = openBlockFile(path, { direct: true, readOnly: false });
      const e = new NativeEngine({
        kind,
        fd: f.fd,
        direct: true,
        blockSize: 512,
        isBlockDevice: false,
        regions: [mem],
      });
      const b = new Batch(e);
      b.add(OP_READ, 1, 0, [[0, 0, 4096]]);
      b.submit(); // in flight while closing: close waits for it
      e.close();
      e.close();
      expect(() => e.submit(1)).toThrow("engine closed");
      expect(() => e.reap()).toThrow("engine closed");
      expect(() => e.waitCompletions(1, 10)).toThrow("engine closed");
      expect(() => e.stats()).toThrow("engine closed");
      expect(() => e.inflight()).toThrow("engine closed");
      // ownsFd was false: the fd is still ours to close
      const buf = Buffer.alloc(16);
      expect(readSync(f.fd, buf, 0, 0, 0)).toBe(0);
      closeFd(f.fd);
    });

    it("rejects bad options with clear errors", () => {
      const path = image("opts.img", 64 * KiB);
      const f = openBlockFile(path, { direct: true, readOnly: false });
      const base = { kind, fd: f.fd, direct: true, blockSize: 512, isBlockDevice: false, regions: [mem] };
      expect(() => new NativeEngine({ ...base, blockSize: 1000 })).toThrow(/power of two/);
      expect(() => new NativeEngine({ ...base, depth: 0 })).toThrow(/depth/);
      expect(() => new NativeEngine({ ...base, maxIov: 5000 })).toThrow(/maxIov/);
      expect(() => new NativeEngine({ ...base, regions: [{} as Uint8Array] })).toThrow(/regions\[0\]/);
      expect(() => new NativeEngine({ ...base, kind: "nope" as EngineKind })).toThrow(/kind/);
      const e = new NativeEngine(base);
      expect(() => e.submit(e.sqCapacity + 1)).toThrow(/count/);
      e.close();
      closeFd(f.fd);
    });
  });
}

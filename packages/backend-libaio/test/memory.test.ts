// Guest memory (memfd-backed SharedArrayBuffers), threads, eventfds, probes.
import { readFileSync } from "node:fs";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { Worker } from "node:worker_threads";
import { describe, expect, it } from "vitest";
import {
  addressOf,
  allocGuestMemory,
  closeFd,
  eventfd,
  eventfdRead,
  eventfdWrite,
  getThreadAffinity,
  gettid,
  mapFd,
  NativeEngine,
  nativeAvailable,
  nativeLoadError,
  pageSize,
  probeEngines,
  schedYield,
  setProbeOverrideForTests,
  setThreadAffinity,
  spinWait16,
} from "../dist/index.js";
import { distUrl } from "./helpers.js";

const native = nativeAvailable();
if (!native)
  console.warn(`[backend-libaio] native addon not loaded, memory tests SKIPPED: ${nativeLoadError()}`);

/** Runs `body` (the source of an async function taking (m, workerData)) in a worker that imported the package. */
function inWorker<T>(body: string, workerData: unknown): Promise<T> {
  const code = `
    const { parentPort, workerData } = require("node:worker_threads");
    import(workerData.distUrl).then(async (m) => {
      const fn = ${body};
      parentPort.postMessage({ ok: await fn(m, workerData.data) });
    }).catch((e) => parentPort.postMessage({ err: String(e && e.stack || e) }));`;
  return new Promise((resolve, reject) => {
    const w = new Worker(code, { eval: true, workerData: { distUrl, data: workerData } });
    w.once("message", (msg: { ok?: T; err?: string }) => {
      void w.terminate();
      if (msg.err) reject(new Error(msg.err));
      else resolve(msg.ok as T);
    });
    w.once("error", reject);
  });
}

function forceGc(): void {
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as () => void;
  for (let i = 0; i < 3; i++) gc();
}

describe.skipIf(!native)("allocGuestMemory / mapFd / addressOf", () => {
  it("gives page-aligned SharedArrayBuffer memory backed by a memfd", () => {
    const { buffer, fd } = allocGuestMemory(4 * 1024 * 1024, "vblk-test-align");
    expect(buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(buffer.byteLength).toBe(4 * 1024 * 1024);
    const u8 = new Uint8Array(buffer);
    expect(addressOf(u8) % 4096n).toBe(0n);
    expect(addressOf(u8.subarray(100)) - addressOf(u8)).toBe(100n);
    expect(addressOf(new DataView(buffer, 512))).toBe(addressOf(u8) + 512n);
    expect(pageSize()).toBeGreaterThanOrEqual(4096);
    expect(u8[0]).toBe(0);
    u8[4 * 1024 * 1024 - 1] = 9;
    expect(fd).toBeGreaterThan(2);
    closeFd(fd);
    // a JS SharedArrayBuffer, for contrast, is usually not page aligned
    expect(typeof addressOf(new Uint8Array(new SharedArrayBuffer(64)))).toBe("bigint");
  });

  it("is shared with a worker thread through workerData, with Atomics.wait/notify", async () => {
    const { buffer, fd } = allocGuestMemory(1024 * 1024);
    const i32 = new Int32Array(buffer);
    const u8 = new Uint8Array(buffer);
    u8.set([1, 2, 3, 4], 4096);
    const p = inWorker<number>(
      `async (m, sab) => {
        const u8 = new Uint8Array(sab);
        const i32 = new Int32Array(sab);
        const sum = u8[4096] + u8[4097] + u8[4098] + u8[4099];
        for (let i = 0; i < 4096; i++) u8[8192 + i] = i & 0xff;
        Atomics.store(i32, 0, 1);
        Atomics.notify(i32, 0);
        // now wait for the main thread to answer
        Atomics.wait(i32, 1, 0, 5000);
        return sum * 1000 + Atomics.load(i32, 1);
      }`,
      buffer,
    );
    expect(Atomics.wait(i32, 0, 0, 10_000)).not.toBe("timed-out");
    for (let i = 0; i < 4096; i++) if (u8[8192 + i] !== (i & 0xff)) expect.fail(`byte ${i}`);
    Atomics.store(i32, 1, 7);
    Atomics.notify(i32, 1);
    expect(await p).toBe(10 * 1000 + 7);
    closeFd(fd);
  });

  it("mapFd maps the same memory again (also at an unaligned offset, and read-only)", () => {
    const { buffer, fd } = allocGuestMemory(64 * 1024);
    const a = new Uint8Array(buffer);
    const other = mapFd(fd, 16 * 1024, 4096 + 100);
    expect(other).toBeInstanceOf(SharedArrayBuffer);
    expect(other.byteLength).toBe(16 * 1024);
    const b = new Uint8Array(other);
    b[0] = 42;
    expect(a[4096 + 100]).toBe(42);
    a[4096 + 101] = 43;
    expect(b[1]).toBe(43);
    const ro = new Uint8Array(mapFd(fd, 8192, 0, true));
    a[5] = 77;
    expect(ro[5]).toBe(77);
    expect(() => mapFd(fd, 0, 0)).toThrow(/size/);
    expect(() => mapFd(999_999, 4096, 0)).toThrow(/mapFd.*Bad file descriptor/);
    closeFd(fd);
  });

  it("unmaps guest memory when the SharedArrayBuffer is garbage collected", async () => {
    const name = `vblk-gc-${process.pid}-${Date.now()}`;
    const mapped = () => readFileSync("/proc/self/maps", "utf8").includes(name);
    (() => {
      const { buffer, fd } = allocGuestMemory(16 * 1024 * 1024, name);
      new Uint8Array(buffer).fill(1);
      closeFd(fd);
    })();
    expect(mapped()).toBe(true);
    for (let i = 0; i < 20 && mapped(); i++) {
      forceGc();
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(mapped()).toBe(false);
  });

  it("an engine keeps its regions alive after JS drops them, and a forgotten engine is finalized", async () => {
    const probe = probeEngines();
    const kind = probe.io_uring === true ? "io_uring" : probe.libaio === true ? "libaio" : undefined;
    if (!kind) return;
    const name = `vblk-keep-${process.pid}-${Date.now()}`;
    const mapped = () => readFileSync("/proc/self/maps", "utf8").includes(name);
    const gcUntilUnmapped = async () => {
      for (let i = 0; i < 20 && mapped(); i++) {
        forceGc();
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    const fd = eventfd(); // any fd will do: no I/O is issued
    const make = (suffix: string) => {
      const g = allocGuestMemory(1024 * 1024, name + suffix);
      closeFd(g.fd);
      return new NativeEngine({
        kind,
        fd,
        direct: false,
        blockSize: 512,
        isBlockDevice: false,
        regions: [new Uint8Array(g.buffer)],
      });
    };
    // 1. the engine is alive, the views and SAB are unreachable from JS: memory stays mapped
    let e: NativeEngine | undefined = make("-a");
    await gcUntilUnmapped();
    expect(mapped()).toBe(true);
    // 2. closing the engine lets go of it
    e.close();
    e = undefined;
    await gcUntilUnmapped();
    expect(mapped()).toBe(false);
    // 3. an engine nobody closed is finalized by GC, releasing it as well
    make("-b");
    expect(mapped()).toBe(true);
    await gcUntilUnmapped();
    expect(mapped()).toBe(false);
    closeFd(fd);
  });

  it("refuses bad sizes", () => {
    expect(() => allocGuestMemory(0)).toThrow(/size/);
    expect(() => allocGuestMemory(-1)).toThrow(/size/);
    expect(() => allocGuestMemory(1.5)).toThrow(/integer/);
  });
});

describe.skipIf(!native)("eventfd helpers", () => {
  it("write / non-blocking read / close", () => {
    const fd = eventfd();
    expect(eventfdRead(fd)).toBe(0);
    eventfdWrite(fd);
    eventfdWrite(fd, 2);
    expect(eventfdRead(fd)).toBe(3);
    expect(eventfdRead(fd)).toBe(0);
    closeFd(fd);
    expect(() => closeFd(fd)).toThrow(/EBADF|Bad file descriptor/);
    const blocking = eventfd(5, false);
    expect(eventfdRead(blocking)).toBe(5);
    expect(eventfdRead(blocking)).toBe(0); // did not block
    closeFd(blocking);
  });
});

describe.skipIf(!native)("threads: gettid and per-thread affinity", () => {
  it("pins only the worker thread that asks", async () => {
    const mine = getThreadAffinity();
    expect(mine.length).toBeGreaterThan(0);
    const cpu = mine[mine.length - 1]!;
    const res = await inWorker<{ tid: number; aff: number[] }>(
      `async (m, cpu) => { m.setThreadAffinity([cpu]); return { tid: m.gettid(), aff: m.getThreadAffinity() }; }`,
      cpu,
    );
    expect(res.aff).toEqual([cpu]);
    expect(res.tid).not.toBe(gettid());
    expect(gettid()).toBeGreaterThan(0);
    expect(getThreadAffinity()).toEqual(mine); // this thread untouched
    expect(() => setThreadAffinity([])).toThrow(/empty/);
    expect(() => setThreadAffinity([100_000])).toThrow(/range/);
  });

  it("spinWait16 returns as soon as another thread changes the word, false after its time", async () => {
    const sab = new SharedArrayBuffer(64);
    const u16 = new Uint16Array(sab);
    u16[5] = 7;
    let t = performance.now();
    expect(spinWait16(u16, 5, 7, 2_000_000)).toBe(false); // 2 ms, unchanged
    expect(performance.now() - t).toBeGreaterThanOrEqual(1.9);
    expect(spinWait16(u16, 5, 6, 1e9)).toBe(true); // already different
    // another thread stores 8 after ~20 ms; the spin (up to 5 s) sees it
    const done = inWorker<boolean>(
      `async (m, sab) => { const a = new Uint16Array(sab); const t = Date.now(); while (Date.now() - t < 20); Atomics.store(a, 5, 8); return true; }`,
      sab,
    );
    t = performance.now();
    expect(spinWait16(u16, 5, 7, 5e9)).toBe(true);
    expect(performance.now() - t).toBeLessThan(4000);
    expect(u16[5]).toBe(8);
    await done;
    schedYield(); // returns
    expect(() => spinWait16(new Uint32Array(4) as never, 0, 0, 1)).toThrow(/Uint16Array/);
    expect(() => spinWait16(u16, 99, 0, 1)).toThrow(/index/);
  });
});

describe("probeEngines", () => {
  it("reports each engine as true or a reason, and can be overridden for tests", () => {
    const p = probeEngines();
    for (const k of ["io_uring", "libaio"] as const) {
      expect(p[k] === true || typeof p[k] === "string").toBe(true);
      if (p[k] !== true) console.warn(`[backend-libaio] ${k} unavailable here: ${p[k]}`);
    }
    setProbeOverrideForTests({ io_uring: "io_uring_setup failed: Operation not permitted (simulated)" });
    expect(probeEngines().io_uring).toMatch(/simulated/);
    expect(probeEngines().libaio).toBe(p.libaio);
    setProbeOverrideForTests(undefined);
    expect(probeEngines()).toEqual(p);
  });
});

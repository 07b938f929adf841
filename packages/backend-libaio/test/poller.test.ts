// Poller (epoll) wake-ups from eventfds written in other threads and from engine completions.
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  allocGuestMemory,
  closeFd,
  type EngineKind,
  eventfd,
  eventfdRead,
  eventfdWrite,
  nativeAvailable,
  nativeLoadError,
  OP_READ,
  Poller,
  probeEngines,
} from "../dist/index.js";
import { Batch, distUrl, engineOn, makeImage, makeTmpDir } from "./helpers.js";

const native = nativeAvailable();
if (!native)
  console.warn(`[backend-libaio] native addon not loaded, Poller tests SKIPPED: ${nativeLoadError()}`);

/** A worker that imports the package and writes `fd` after `delayMs`. */
function writeFromWorker(fd: number, delayMs: number): Promise<void> {
  const code = `
    const { workerData, parentPort } = require("node:worker_threads");
    import(workerData.distUrl).then((m) => setTimeout(() => {
      m.eventfdWrite(workerData.fd, 1);
      parentPort.postMessage("done");
    }, workerData.delayMs));`;
  return new Promise((resolve, reject) => {
    const w = new Worker(code, { eval: true, workerData: { distUrl, fd, delayMs } });
    w.once("message", () => {
      void w.terminate();
      resolve();
    });
    w.once("error", reject);
  });
}

describe.skipIf(!native)("Poller", () => {
  let p: Poller;
  beforeAll(() => {
    p = new Poller();
  });
  afterAll(() => p.close());

  it("wakes when another thread writes an eventfd, and drains it", async () => {
    const fd = eventfd();
    p.add(fd, 0xdead_beef);
    const done = writeFromWorker(fd, 100);
    const t0 = performance.now();
    // wait() blocks this thread; the worker runs on its own
    const n = p.wait(10_000);
    const dt = performance.now() - t0;
    expect(n).toBe(1);
    expect(p.ready[0]! >>> 0).toBe(0xdead_beef);
    expect(dt).toBeLessThan(5000);
    expect(eventfdRead(fd)).toBe(0); // drained by wait()
    expect(p.wait(0)).toBe(0); // level-triggered readiness cleared
    await done;
    p.remove(fd);
    closeFd(fd);
  });

  it("times out with 0 (integer and fractional timeouts)", () => {
    const fd = eventfd();
    p.add(fd, 1);
    let t0 = performance.now();
    expect(p.wait(30)).toBe(0);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(25);
    t0 = performance.now();
    expect(p.wait(2.5)).toBe(0);
    const dt = performance.now() - t0;
    expect(dt).toBeGreaterThanOrEqual(2);
    expect(dt).toBeLessThan(1000);
    expect(p.wait(0)).toBe(0);
    p.remove(fd);
    closeFd(fd);
  });

  it("reports several ready fds, honours drainEventfd: false and remove()", () => {
    const a = eventfd();
    const b = eventfd();
    const c = eventfd();
    p.add(a, 1);
    p.add(b, 2, { drainEventfd: false });
    p.add(c, 3);
    eventfdWrite(a);
    eventfdWrite(b, 5);
    expect(p.wait(1000)).toBe(2);
    expect([...p.ready.subarray(0, 2)].sort()).toEqual([1, 2]);
    expect(eventfdRead(a)).toBe(0);
    expect(eventfdRead(b)).toBe(5); // left for the owner
    p.add(c, 33); // re-adding updates the token
    eventfdWrite(c);
    expect(p.wait(1000)).toBe(1);
    expect(p.ready[0]).toBe(33);
    p.remove(c);
    eventfdWrite(c);
    expect(p.wait(0)).toBe(0);
    p.remove(c); // not watched: fine
    for (const fd of [a, b, c]) {
      p.remove(fd);
      closeFd(fd);
    }
  });

  it("throws after close", () => {
    const q = new Poller();
    q.close();
    q.close();
    expect(() => q.wait(0)).toThrow("poller closed");
  });

  for (const kind of ["io_uring", "libaio"] as EngineKind[]) {
    const probe = native ? probeEngines()[kind] : "native addon not loaded";
    if (probe !== true) console.warn(`[backend-libaio] Poller + ${kind} test SKIPPED: ${probe}`);
    it.skipIf(probe !== true)(`wakes on ${kind} engine completions (completionFd)`, () => {
      const tmp = makeTmpDir(`poll-${kind}`);
      try {
        const path = join(tmp.dir, "p.img");
        makeImage(path, 16 * 1024 * 1024);
        const g = allocGuestMemory(4 * 1024 * 1024);
        const e = engineOn(kind, path, [new Uint8Array(g.buffer)]);
        p.add(e.completionFd, 4242);
        for (let round = 0; round < 20; round++) {
          const b = new Batch(e);
          b.add(OP_READ, round, (round % 4) * 4 * 1024 * 1024, [[0, 0, 4 * 1024 * 1024]]);
          b.submit();
          let got = 0;
          let wakes = 0;
          while (got === 0) {
            const n = p.wait(5000);
            expect(n, "woken before the timeout").toBeGreaterThan(0);
            expect(p.ready[0]).toBe(4242);
            wakes++;
            got = e.reap();
          }
          expect(got).toBe(1);
          expect(e.cq[1]).toBe(4 * 1024 * 1024);
          expect(wakes).toBeLessThanOrEqual(3);
        }
        expect(p.wait(0)).toBe(0); // nothing left signalled
        p.remove(e.completionFd);
        e.close();
        closeFd(g.fd);
      } finally {
        tmp.cleanup();
      }
    });

    it.skipIf(probe !== true)(`${kind}: reap() leaves completionFd to the poller unless drainOnReap`, () => {
      const tmp = makeTmpDir(`drain-${kind}`);
      try {
        const path = join(tmp.dir, "d.img");
        makeImage(path, 1024 * 1024);
        const g = allocGuestMemory(1024 * 1024);
        for (const drainOnReap of [false, true]) {
          const e = engineOn(kind, path, [new Uint8Array(g.buffer)], { readOnly: true, drainOnReap });
          const b = new Batch(e);
          b.add(OP_READ, 1, 0, [[0, 0, 4096]]);
          b.submit();
          let got = 0;
          for (let i = 0; i < 10_000 && got === 0; i++) got = e.reap(); // spin, no sleeping
          if (got === 0) got = e.waitCompletions(1, 5000);
          expect(got).toBe(1);
          if (drainOnReap) expect(eventfdRead(e.completionFd)).toBe(0);
          else expect(eventfdRead(e.completionFd)).toBeGreaterThan(0);
          e.close();
        }
        closeFd(g.fd);
      } finally {
        tmp.cleanup();
      }
    });
  }
});

/**
 * The device with real IOThreads (worker threads) and real driver threads.
 */
import { mkdtempSync, openSync, readSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { nativeAvailable, spinWait16 } from "@vblk/backend-libaio";
import { DescFlag, GuestMemory, Status } from "@vblk/core";
import { connectDriver, openDriverQueue, VirtioBlkDevice } from "@vblk/iothread";
import { afterAll, describe, expect, it } from "vitest";
import { runJobs } from "./helpers/jobs.js";

const MiB = 1 << 20;
const dir = mkdtempSync(join(tmpdir(), "vblk-dev-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("VirtioBlkDevice with IOThreads", () => {
  it("4 queues on 2 IOThreads: 10^5 requests, every completion right, counters add up per IOThread", async () => {
    const memory = GuestMemory.allocate(64 * MiB);
    const device = await VirtioBlkDevice.create({
      memory,
      engine: "null",
      sizeBytes: 256 * MiB,
      numQueues: 4,
      iothreads: 2,
      queueSize: 128,
    });
    try {
      expect(device.mapping.queueToIothread).toEqual([0, 1, 0, 1]);
      const conn = await connectDriver(device);
      const per = 25_000;
      const results = await runJobs(
        conn.queues.map((desc, i) => ({
          desc,
          dataGpa: conn.end + i * MiB,
          depth: i % 2 === 0 ? 32 : 1,
          count: per,
          mode: "read" as const,
          firstSector: 0,
          span: 4096,
          bs: 4096,
        })),
      );
      for (const r of results) {
        expect(r.completed).toBe(per);
        expect(r.errors).toBe(0);
        expect(r.badLen).toBe(0);
      }
      const c = device.counters();
      // Each queue's counters are in the block of the IOThread the mapping names.
      for (const q of c.queues) {
        expect(q.iothread).toBe(device.mapping.iothreads[device.mapping.queueToIothread[q.queue]!]);
        expect(q.requests).toBe(per);
        expect(q.reads).toBe(per);
        expect(q.bytesRead).toBe(per * 4096);
      }
      const byThread = c.iothreads.map((t) => t.queues);
      expect(byThread).toEqual([
        [0, 2],
        [1, 3],
      ]);
      // Both IOThreads did work.
      for (const t of c.iothreads) expect(t.loops).toBeGreaterThan(0);
      expect(c.queues.reduce((a, q) => a + q.requests, 0)).toBe(4 * per);
    } finally {
      await device.close();
    }
  });

  it("writes then reads back patterns through the threads engine, and the file holds them", async () => {
    const path = join(dir, "threads.img");
    writeFileSync(path, Buffer.alloc(32 * MiB));
    const memory = GuestMemory.allocate(32 * MiB);
    const device = await VirtioBlkDevice.create({
      memory,
      engine: "threads",
      path,
      numQueues: 2,
      iothreads: 2,
      cache: "writeback",
    });
    try {
      let conn = await connectDriver(device);
      const spec = (i: number, mode: "write" | "verify") => ({
        desc: conn.queues[i]!,
        dataGpa: conn.end + i * 4 * MiB,
        depth: 16,
        count: 2000,
        mode,
        firstSector: i * 16 * 2048, // each queue its own 16 MiB half
        span: 2000,
        bs: 4096,
        tag: i,
      });
      const w = await runJobs([spec(0, "write"), spec(1, "write")]);
      for (const r of w) expect(r.errors).toBe(0);
      // A new driver instance: reset the device and set the queues up again.
      conn = await connectDriver(device);
      const v = await runJobs([spec(0, "verify"), spec(1, "verify")]);
      for (const r of v) {
        expect(r.errors).toBe(0);
        expect(r.badData).toBe(0);
        expect(r.completed).toBe(2000);
      }
      // Directly from the file: block 7 of queue 1.
      const fd = openSync(path, "r");
      const buf = Buffer.alloc(4096);
      const sector = 16 * 2048 + 7 * 8;
      readSync(fd, buf, 0, 4096, sector * 512);
      const w32 = new Uint32Array(buf.buffer, buf.byteOffset, 1024);
      expect(w32[0]).toBe((sector * 2654435761 + 0 * 40503 + 1) >>> 0);
      expect(w32[5]).toBe((sector * 2654435761 + 5 * 40503 + 1) >>> 0);
    } finally {
      await device.close();
    }
  });

  it("a malformed ring sets DEVICE_NEEDS_RESET, a reset recovers, nothing hangs", async () => {
    const memory = GuestMemory.allocate(16 * MiB);
    const irqs: number[] = [];
    const device = await VirtioBlkDevice.create({
      memory,
      engine: "memory",
      sizeBytes: 8 * MiB,
      numQueues: 1,
      onInterrupt: (s) => irqs.push(s),
    });
    try {
      const reasons: string[] = [];
      device.on("needs-reset", (r: string) => reasons.push(r));
      const conn = await connectDriver(device);
      const d = conn.queues[0]!;
      // Head 0 whose NEXT points past the queue.
      const dv = new DataView(memory.regions[0]!.buffer as SharedArrayBuffer);
      dv.setUint32(d.ring.descAddr, conn.end, true);
      dv.setUint32(d.ring.descAddr + 8, 16, true);
      dv.setUint16(d.ring.descAddr + 12, DescFlag.NEXT, true);
      dv.setUint16(d.ring.descAddr + 14, 9999, true);
      dv.setUint16(d.ring.availAddr + 4, 0, true);
      Atomics.store(
        new Uint16Array(memory.regions[0]!.buffer as SharedArrayBuffer),
        (d.ring.availAddr + 2) / 2,
        1,
      );
      device.notify(0);
      const t0 = Date.now();
      while (reasons.length === 0 && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 10));
      expect(reasons[0]).toMatch(/NEXT_OUT_OF_RANGE/);
      expect(device.transport.status & Status.DEVICE_NEEDS_RESET).toBe(Status.DEVICE_NEEDS_RESET);
      expect(irqs.some((s) => (s & 2) !== 0)).toBe(true); // config-change interrupt
      // The driver resets and starts over: the device works again.
      const again = await connectDriver(device);
      const [r] = await runJobs([
        {
          desc: again.queues[0]!,
          dataGpa: again.end,
          depth: 8,
          count: 100,
          mode: "read",
          firstSector: 0,
          span: 100,
          bs: 4096,
        },
      ]);
      expect(r!.errors).toBe(0);
      expect(device.transport.status & Status.DEVICE_NEEDS_RESET).toBe(0);
    } finally {
      await device.close();
    }
  });

  it("reset under load finishes in-flight requests first and is bounded in time", async () => {
    const memory = GuestMemory.allocate(32 * MiB);
    const device = await VirtioBlkDevice.create({ memory, engine: "null", numQueues: 2, iothreads: 2 });
    try {
      const conn = await connectDriver(device);
      const jobs = runJobs(
        conn.queues.map((desc, i) => ({
          desc,
          dataGpa: conn.end + i * MiB,
          depth: 64,
          count: 5_000_000,
          mode: "read" as const,
          firstSector: 0,
          span: 1000,
          bs: 4096,
        })),
        20_000,
      ).catch((e: Error) => e);
      const w0 = Date.now();
      while (!device.counters().queues.every((q) => q.requests > 1000) && Date.now() - w0 < 10_000)
        await new Promise((r) => setTimeout(r, 20));
      const t0 = Date.now();
      const positions = await device.stopQueues();
      expect(Date.now() - t0).toBeLessThan(5000);
      // Everything popped was completed into the used ring before stop returned.
      for (const p of positions) expect(p.nextUsed).toBe(p.nextAvail);
      expect(device.counters().queues.every((q) => q.requests > 0)).toBe(true);
      await device.close();
      const r = await jobs;
      expect(r).toBeInstanceOf(Error); // the drivers were cut off, not hung forever
    } finally {
      await device.close();
    }
  });

  it("an IOThread that throws puts the device in NEEDS_RESET; the other keeps its queues", async () => {
    const memory = GuestMemory.allocate(8 * MiB);
    const device = await VirtioBlkDevice.create({ memory, engine: "null", numQueues: 2, iothreads: 2 });
    try {
      const reasons: string[] = [];
      device.on("needs-reset", (r: string) => reasons.push(r));
      await connectDriver(device);
      device.iothreads[0]!.injectFault();
      const t0 = Date.now();
      while (reasons.length === 0 && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 10));
      expect(reasons[0]).toMatch(/iothread0.*injected fault/s);
      expect(device.transport.status & Status.DEVICE_NEEDS_RESET).toBe(Status.DEVICE_NEEDS_RESET);
      expect(device.iothreads[1]!.state).toBe("running");
    } finally {
      await device.close();
    }
  });

  it("an IOThread that dies puts the device in NEEDS_RESET and close() still returns", async () => {
    const memory = GuestMemory.allocate(8 * MiB);
    const device = await VirtioBlkDevice.create({ memory, engine: "null", numQueues: 2, iothreads: 2 });
    const reasons: string[] = [];
    device.on("needs-reset", (r: string) => reasons.push(r));
    await connectDriver(device);
    await device.iothreads[1]!.terminate();
    const t0 = Date.now();
    while (reasons.length === 0 && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 10));
    expect(reasons[0]).toMatch(/iothread1/);
    expect(device.transport.status & Status.DEVICE_NEEDS_RESET).toBe(Status.DEVICE_NEEDS_RESET);
    const c0 = Date.now();
    await device.close();
    expect(Date.now() - c0).toBeLessThan(20_000);
  });

  /** A null-engine device with one queue and a driver handle on it, closed afterwards. */
  async function withDriverHandle(
    fn: (h: ReturnType<typeof openDriverQueue>, dataGpa: number) => Promise<void> | void,
  ): Promise<void> {
    const memory = GuestMemory.allocate(MiB);
    const device = await VirtioBlkDevice.create({ memory, engine: "null", sizeBytes: MiB });
    try {
      const conn = await connectDriver(device);
      await fn(openDriverQueue(conn.queues[0]!, memory), conn.end);
    } finally {
      await device.close();
    }
  }

  it("a driver that spins for completions calls its relax hook, then sleeps and times out", () =>
    withDriverHandle((h, data) => {
      let relaxed = 0;
      h.relax = () => relaxed++;
      // nothing submitted: 3 ms of spinning, then a 5 ms sleep that times out
      expect(h.waitUsed(3_000_000, 5)).toBe(false);
      expect(relaxed).toBeGreaterThan(0);
      expect(h.sleeps).toBe(1);
      // with a request in flight the spin ends as soon as it completes
      h.blk.read(0, data, 512, "t");
      h.submit();
      expect(h.waitUsed(1_000_000_000, 5_000)).toBe(true);
      expect(h.blk.popCompletion()).toBeGreaterThanOrEqual(0);
      expect(h.blk.lastToken).toBe("t");
      expect(h.blk.lastStatus).toBe(0);
      // the native PAUSE spin (when the addon loaded) waits the same way
      if (nativeAvailable()) {
        h.spinWait = spinWait16;
        h.blk.read(8, data, 512, "u");
        h.submit();
        expect(h.waitUsed(1_000_000_000, 5_000)).toBe(true);
        expect(h.blk.popCompletion()).toBeGreaterThanOrEqual(0);
        expect(h.blk.lastToken).toBe("u");
        const sleeps = h.sleeps;
        expect(h.waitUsed(2_000_000, 5)).toBe(false); // nothing in flight: spins 2 ms, sleeps, times out
        expect(h.sleeps).toBe(sleeps + 1);
      } else console.warn("[device] native addon not loaded: spinWait16 part SKIPPED");
    }));

  it("a driver's adaptive spin grows after short sleeps and shrinks after long ones (haltpoll's rule)", () =>
    withDriverHandle((h, data) => {
      // off (pollMaxNs 0): the window is exactly waitUsed's pollNs
      expect(h.waitUsed(100_000, 1)).toBe(false);
      expect(h.adaptiveNs).toBe(0);
      h.pollMaxNs = 8_000_000;
      // first wait: the window starts at pollNs; a timeout leaves it alone
      expect(h.waitUsed(100_000, 1)).toBe(false);
      expect(h.adaptiveNs).toBe(100_000);
      h.noteSleep(50_000); // a completion ended a sleep well within the cap
      expect(h.adaptiveNs).toBe(200_000);
      h.noteSleep(7_000_000);
      expect(h.adaptiveNs).toBe(400_000);
      h.noteSleep(9_000_000); // longer than the cap: really idle
      expect(h.adaptiveNs).toBe(200_000);
      h.noteSleep(9_000_000);
      h.noteSleep(9_000_000);
      expect(h.adaptiveNs).toBe(100_000); // never below the first pollNs
      for (let i = 0; i < 10; i++) h.noteSleep(1000);
      expect(h.adaptiveNs).toBe(8_000_000); // never above the cap
      // the wait now spins the adaptive window (3 ms), not the 100 us asked for
      h.adaptiveNs = 3_000_000;
      const t = performance.now();
      expect(h.waitUsed(100_000, 1)).toBe(false);
      expect(performance.now() - t).toBeGreaterThanOrEqual(3.5);
      // and a completion still ends it at once
      h.blk.read(0, data, 512, "a");
      h.submit();
      expect(h.waitUsed(100_000, 5_000)).toBe(true);
      expect(h.blk.popCompletion()).toBeGreaterThanOrEqual(0);
    }));

  it("rejects bad options with messages that name them", async () => {
    const memory = GuestMemory.allocate(MiB);
    await expect(VirtioBlkDevice.create({ memory, engine: "bogus" as never })).rejects.toThrow(
      /engine.*allowed/,
    );
    await expect(VirtioBlkDevice.create({ memory, engine: "null", queueSize: 3 })).rejects.toThrow(/queue/i);
    await expect(VirtioBlkDevice.create({ memory, engine: "null", numQueues: 0 })).rejects.toThrow(/num/i);
    await expect(VirtioBlkDevice.create({ memory, engine: "threads" })).rejects.toThrow(/path/);
    await expect(VirtioBlkDevice.create({ memory, engine: "null", cache: "x" as never })).rejects.toThrow(
      /cache.*none, writeback/,
    );
    await expect(
      VirtioBlkDevice.create({
        memory,
        engine: "null",
        numQueues: 2,
        iothreadVqMapping: [
          { iothread: "a", vqs: [0] },
          { iothread: "b", vqs: [0] },
        ],
      }),
    ).rejects.toThrow(/vq 0/);
  });
});

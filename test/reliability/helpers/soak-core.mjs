// Soak (docs/RELIABILITY.md): mixed random I/O with verification over 4
// queues / 2 IOThreads for a given time, sampling the process's resident
// memory. Shared by scripts/soak.mjs and test/reliability/soak.test.ts.
//
// Device: an image file (engine auto: io_uring > libaio > threads, O_DIRECT
// into page-aligned guest RAM) or the memory engine. Load: rel-driver.mjs
// jobs, one worker thread per queue, each on its own quarter of the disk:
// reads and writes of 4-64 KiB at random, a FLUSH every 64 requests; every
// block read back is checked against the generation last written to it.
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import { allocGuestMemory, closeFd, nativeAvailable } from "@vblk/backend-libaio";
import { GuestMemory } from "@vblk/core";
import { connectDriver, VirtioBlkDevice } from "@vblk/iothread";

const MiB = 1 << 20;

export async function runSoak({
  seconds,
  sampleEveryMs = 5000,
  engine = "auto",
  diskMiB = 256,
  depth = 32,
  onSample = () => {},
}) {
  const dir = mkdtempSync(join(tmpdir(), "vblk-soak-"));
  const path = join(dir, "soak.img");
  const file = engine !== "memory" && engine !== "null";
  if (file) {
    // Allocated (not sparse), written 1 MiB at a time (a big Buffer would sit in the RSS figures).
    const fd = openSync(path, "w");
    const zero = Buffer.alloc(MiB);
    for (let i = 0; i < diskMiB; i++) writeSync(fd, zero);
    closeSync(fd);
  }
  const rss0 = process.memoryUsage().rss;
  const guestBytes = 64 * MiB;
  let memory;
  if (nativeAvailable()) {
    const g = allocGuestMemory(guestBytes);
    closeFd(g.fd);
    memory = new GuestMemory([{ gpa: 0, size: guestBytes, buffer: g.buffer }]);
  } else memory = GuestMemory.allocate(guestBytes);
  const device = await VirtioBlkDevice.create({
    memory,
    engine,
    ...(file ? { path, cache: nativeAvailable() ? "none" : "writeback" } : { sizeBytes: diskMiB * MiB }),
    numQueues: 4,
    iothreads: 2,
    queueSize: 128,
  });
  const samples = [];
  const ctl = new Int32Array(new SharedArrayBuffer(4 * 5));
  const workers = [];
  try {
    const conn = await connectDriver(device);
    const blocksPerQueue = (diskMiB * 256) / 4;
    const results = conn.queues.map((desc, i) => {
      const w = new Worker(new URL("./rel-driver.mjs", import.meta.url), {
        workerData: {
          desc,
          dataGpa: conn.end + i * 8 * MiB,
          depth,
          seed: 1 + i * 7919 + (Date.now() % 1000),
          firstBlock: i * blocksPerQueue,
          blocks: blocksPerQueue,
          maxBlocks: 16,
          writePct: 50,
          flushEvery: 64,
          ctl: ctl.buffer,
          slot: i,
        },
      });
      workers.push(w);
      return new Promise((res, rej) => {
        w.once("message", res);
        w.once("error", rej);
      });
    });
    const t0 = performance.now();
    const completed = () => [1, 2, 3, 4].reduce((a, i) => a + Atomics.load(ctl, i), 0);
    let last = 0;
    for (;;) {
      const left = seconds * 1000 - (performance.now() - t0);
      if (left <= 0) break;
      await new Promise((r) => setTimeout(r, Math.min(sampleEveryMs, left)));
      const c = completed();
      const s = {
        t: Math.round((performance.now() - t0) / 1000),
        rssMiB: process.memoryUsage().rss / MiB,
        completed: c,
        iops: Math.round((c - last) / (Math.min(sampleEveryMs, left) / 1000)),
        needsReset: device.needsResetReason ?? null,
      };
      last = c;
      samples.push(s);
      onSample(s);
      if (device.needsResetReason !== undefined) break;
    }
    Atomics.store(ctl, 0, 1);
    const jobs = await Promise.all(results);
    const secs = (performance.now() - t0) / 1000;
    const tot = (k) => jobs.reduce((a, j) => a + j[k], 0);
    const rss = samples.map((s) => s.rssMiB);
    return {
      engine: device.engineName,
      seconds: Math.round(secs),
      queues: 4,
      iothreads: 2,
      completed: tot("completed"),
      reads: tot("reads"),
      writes: tot("writes"),
      flushes: tot("flushes"),
      iops: Math.round(tot("completed") / secs),
      blocksVerified: tot("blocksVerified"),
      verifyErrors: tot("verifyErrors"),
      errors: tot("errors"),
      bogus: tot("bogus"),
      stalls: tot("stalls"),
      firstError: jobs.map((j) => j.firstError).find((e) => e) ?? "",
      needsReset: device.needsResetReason ?? null,
      rssBeforeMiB: rss0 / MiB,
      rssStartMiB: rss[0] ?? 0,
      rssEndMiB: rss[rss.length - 1] ?? 0,
      rssMaxMiB: Math.max(...rss),
      samples,
    };
  } finally {
    Atomics.store(ctl, 0, 1);
    await Promise.all(workers.map((w) => w.terminate()));
    await device.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

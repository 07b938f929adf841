/**
 * Reset and stop under full load with every engine (null, memory, threads,
 * io_uring, libaio): bounded time, verified data, nothing completed twice,
 * and no leaked file descriptors, threads or memory (counted from /proc/self
 * before and after).
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import v8 from "node:v8";
import vm from "node:vm";
import { allocGuestMemory, closeFd, nativeAvailable, probeEngines } from "@vblk/backend-libaio";
import { GuestMemory } from "@vblk/core";
import { connectDriver, type EngineName, VirtioBlkDevice } from "@vblk/iothread";
import { afterAll, describe, expect, it } from "vitest";
import { sleep, until } from "./helpers/async-driver.js";
import { type RelJobResult, startRelJobs } from "./helpers/rel-jobs.js";

v8.setFlagsFromString("--expose-gc");
const gc = vm.runInNewContext("gc") as () => void;
const MiB = 1 << 20;
const BOUND_MS = 5000;
const dir = mkdtempSync(join(tmpdir(), "vblk-rel-reset-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const fds = () => readdirSync("/proc/self/fd").length;
/** OS threads of this process, io_uring's kernel workers (iou-*) aside: they come and go on their own. */
const threads = () =>
  readdirSync("/proc/self/task").filter((t) => {
    try {
      return !readFileSync(`/proc/self/task/${t}/comm`, "utf8").startsWith("iou-");
    } catch {
      return false;
    }
  }).length;
const rss = () => {
  gc();
  return process.memoryUsage().rss;
};

const native = nativeAvailable();
const probe = native ? probeEngines() : { io_uring: "addon not built", libaio: "addon not built" };
const engines: { name: EngineName; skip: string | false }[] = [
  { name: "null", skip: false },
  { name: "memory", skip: false },
  { name: "threads", skip: false },
  { name: "io_uring", skip: probe.io_uring === true ? false : String(probe.io_uring) },
  { name: "libaio", skip: probe.libaio === true ? false : String(probe.libaio) },
];

function checkJobs(rs: RelJobResult[], verify: boolean): void {
  for (const r of rs) {
    expect(r.bogus, r.firstError).toBe(0);
    expect(r.errors, r.firstError).toBe(0);
    expect(r.verifyErrors, r.firstError).toBe(0);
    expect(r.completed).toBeGreaterThan(0);
    if (verify) expect(r.blocksVerified).toBeGreaterThan(0);
  }
}

/** One cycle: create, load, reset under load, load again, stop under load, close. Returns the times. */
async function cycle(engine: EngineName): Promise<{ resetMs: number; stopMs: number; closeMs: number }> {
  const file = engine === "threads" || engine === "io_uring" || engine === "libaio";
  const path = join(dir, `${engine}.img`);
  if (file) writeFileSync(path, Buffer.alloc(16 * MiB));
  const guest = native ? allocGuestMemory(24 * MiB) : null;
  const memory = guest
    ? new GuestMemory([{ gpa: 0, size: 24 * MiB, buffer: guest.buffer }])
    : GuestMemory.allocate(24 * MiB);
  if (guest) closeFd(guest.fd); // the mapping stays until the buffer is collected
  const device = await VirtioBlkDevice.create({
    memory,
    engine,
    ...(file
      ? { path, cache: native ? ("none" as const) : ("writeback" as const) }
      : { sizeBytes: 16 * MiB }),
    numQueues: 2,
    iothreads: 2,
    queueSize: 64,
  });
  const verify = engine !== "null";
  const load = (conn: Awaited<ReturnType<typeof connectDriver>>) =>
    startRelJobs(
      conn.queues.map((desc, i) => ({
        desc,
        dataGpa: conn.end + i * 4 * MiB,
        depth: 32,
        firstBlock: i * 2048,
        blocks: 2048,
        maxBlocks: 8,
        writePct: verify ? 50 : 0,
      })),
    );
  try {
    let conn = await connectDriver(device);
    let jobs = load(conn);
    await until(() => jobs.progress().every((n) => n > 600), 20_000, "load");
    // Reset (Status = 0) under full load: in-flight I/O completes, then queues stop.
    let t0 = Date.now();
    device.transport.write(0x070, 4, 0);
    await until(() => device.transport.read(0x070, 4) === 0, BOUND_MS, "the reset");
    const resetMs = Date.now() - t0;
    checkJobs(await jobs.stop(), verify);
    conn = await connectDriver(device);
    jobs = load(conn);
    await until(() => jobs.progress().every((n) => n > 600), 20_000, "load after the reset");
    t0 = Date.now();
    const pos = await device.stopQueues();
    const stopMs = Date.now() - t0;
    for (const p of pos) expect(p.nextUsed).toBe(p.nextAvail);
    checkJobs(await jobs.stop(), verify);
    t0 = Date.now();
    await device.close();
    return { resetMs, stopMs, closeMs: Date.now() - t0 };
  } finally {
    await device.close();
  }
}

describe("reset and stop under full load, every engine: bounded, no leaks", () => {
  for (const e of engines) {
    it.skipIf(e.skip !== false)(`${e.name}`, async () => {
      await cycle(e.name); // warm-up: modules, libuv pool, V8 helper threads
      await sleep(50);
      const f0 = fds();
      const t0 = threads();
      const m0 = rss();
      const times = [];
      for (let i = 0; i < 2; i++) times.push(await cycle(e.name));
      for (const t of times) {
        expect(t.resetMs).toBeLessThan(BOUND_MS);
        expect(t.stopMs).toBeLessThan(BOUND_MS);
        expect(t.closeMs).toBeLessThan(BOUND_MS);
      }
      await until(() => fds() <= f0, 3000, `file descriptors back to ${f0} (now ${fds()})`);
      await until(() => threads() <= t0, 5000, `threads back to ${t0} (now ${threads()})`);
      const grown = (rss() - m0) / MiB;
      console.log(
        `${e.name}: reset ${times.map((t) => t.resetMs).join("/")} ms, stop ${times.map((t) => t.stopMs).join("/")} ms, close ${times.map((t) => t.closeMs).join("/")} ms; fds ${f0} -> ${fds()}, threads ${t0} -> ${threads()}, RSS +${grown.toFixed(1)} MiB`,
      );
      expect(grown).toBeLessThan(64);
    });
  }
  if (!native) console.warn("SKIP io_uring/libaio reset tests: the native addon is not built");
});

/**
 * rerror/werror (report, ignore, stop, enospc), stop/resume, short I/O,
 * added latency, the nth-request fault and the request timeout, through a
 * real VirtioBlkDevice (IOThreads) over the fault-injecting engine.
 */
import { BlkStatus, type FaultRule, GuestMemory } from "@vblk/core";
import { connectDriver, type StopReason, VirtioBlkDevice, type VirtioBlkDeviceOptions } from "@vblk/iothread";
import { afterEach, describe, expect, it } from "vitest";
import { AsyncDriver, pattern, sleep, until } from "./helpers/async-driver.js";

const MiB = 1 << 20;
const OK = BlkStatus.OK;
const IOERR = BlkStatus.IOERR;
const open: VirtioBlkDevice[] = [];
const drivers: AsyncDriver[] = [];
afterEach(async () => {
  for (const d of drivers.splice(0)) d.close();
  await Promise.all(open.splice(0).map((d) => d.close()));
});

async function rig(
  faults: FaultRule[],
  extra: Partial<VirtioBlkDeviceOptions> = {},
): Promise<{ device: VirtioBlkDevice; disk: Uint8Array; q: AsyncDriver[]; stops: StopReason[] }> {
  const memory = GuestMemory.allocate(16 * MiB);
  const disk = new SharedArrayBuffer(8 * MiB);
  const device = await VirtioBlkDevice.create({
    memory,
    engine: "memory",
    disk,
    numQueues: 1,
    queueSize: 64,
    faults,
    ...extra,
  });
  open.push(device);
  const stops: StopReason[] = [];
  device.on("stopped", (r: StopReason) => stops.push(r));
  const conn = await connectDriver(device);
  const q = conn.queues.map((desc, i) => new AsyncDriver(desc, conn.end + i * 4 * MiB));
  drivers.push(...q);
  return { device, disk: new Uint8Array(disk), q, stops };
}

const onDisk = (disk: Uint8Array, sector: number, len: number) =>
  disk.slice(sector * 512, sector * 512 + len);

describe("error policies", () => {
  it("report (the rerror default): a failed READ completes IOERR, its neighbours OK", async () => {
    const { q, device } = await rig([{ op: "read", sector: 8, sectors: 8, action: "error", errno: "EIO" }]);
    const [a, b, c] = await Promise.all([q[0]!.read(0, 4096), q[0]!.read(8, 4096), q[0]!.read(16, 4096)]);
    expect([a!.status, b!.status, c!.status]).toEqual([OK, IOERR, OK]);
    expect(b!.len).toBe(1);
    expect(device.faults!.fired(0)).toBe(1);
    expect(device.isStopped).toBe(false);
    expect(device.counters().queues[0]!.errors).toBe(1);
  });

  it("werror=enospc (the default): ENOSPC stops the device, EIO is reported", async () => {
    const { q, device, stops } = await rig([
      { op: "write", sector: 0, sectors: 8, action: "error", errno: "EIO" },
      { op: "write", sector: 64, sectors: 8, action: "error", errno: "ENOSPC", count: 1 },
    ]);
    const eio = await q[0]!.write(0, pattern(0, 1, 4096));
    expect(eio.status).toBe(IOERR);
    expect(device.isStopped).toBe(false);
    const kept = q[0]!.write(64, pattern(64, 1, 4096));
    await until(() => stops.length === 1, 5000, "the stopped event");
    expect(stops[0]).toMatchObject({
      errno: 28,
      error: "ENOSPC",
      op: "write",
      sector: 64,
      queue: 0,
      iothread: 0,
    });
    expect(device.stopReason).toEqual(stops[0]);
    expect(device.policyCounters().kept).toBe(1);
    expect(device.resume()).toBe(true);
    expect((await kept).status).toBe(OK); // count: 1 -> the retry succeeds
    expect(device.policyCounters()).toMatchObject({ kept: 0, stops: 1, retried: 1 });
  });

  it("ignore: failed READ and WRITE complete OK (a read returns the full length)", async () => {
    const { q, device } = await rig([{ sector: 8, action: "error", errno: "EIO" }], {
      rerror: "ignore",
      werror: "ignore",
    });
    const r = await q[0]!.read(8, 4096);
    const w = await q[0]!.write(8, pattern(8, 1, 4096));
    expect([r.status, r.len, w.status, w.len]).toEqual([OK, 4097, OK, 1]);
    expect(device.policyCounters().ignored).toBe(2);
  });

  it("stop: nothing is popped while stopped; resume retries the kept write first, in order, then the rest", async () => {
    const { q, device, disk, stops } = await rig(
      [{ op: "write", sector: 100, action: "error", errno: "EIO" }],
      {
        werror: "stop",
      },
    );
    const d = q[0]!;
    const w1 = d.write(100, pattern(100, 1, 4096));
    await until(() => device.isStopped, 5000, "the stop");
    const before = device.counters().queues[0]!.requests;
    // The guest goes on submitting: none of it may be popped while stopped.
    const w2 = d.write(200, pattern(200, 2, 4096));
    const w3 = d.write(100, pattern(100, 3, 4096));
    const f = d.flush();
    await sleep(150);
    expect(device.counters().queues[0]!.requests).toBe(before);
    expect(d.outstanding).toBe(4);
    expect(stops).toHaveLength(1);
    expect(stops[0]).toMatchObject({ errno: 5, error: "EIO", op: "write", sector: 100 });
    // The disk is fixed; the VMM resumes.
    device.faults!.disable(0);
    device.resume();
    const done = await Promise.all([w1, w2, w3, f]);
    expect(done.map((c) => c.status)).toEqual([OK, OK, OK, OK]);
    expect(d.order[0]).toBe(done[0]!.head); // the kept write completed first
    expect(onDisk(disk, 100, 4096)).toEqual(pattern(100, 3, 4096)); // w3 after the retried w1
    expect(onDisk(disk, 200, 4096)).toEqual(pattern(200, 2, 4096));
    expect(device.isStopped).toBe(false);
    expect(d.bogus).toEqual([]);
  });

  it("stop pauses every IOThread of the device, and a failing retry stops it again", async () => {
    const { q, device, stops } = await rig([{ op: "write", sector: 100, action: "error", errno: "ENOSPC" }], {
      numQueues: 2,
      iothreads: 2,
    });
    const w1 = q[0]!.write(100, pattern(100, 1, 4096));
    await until(() => stops.length === 1, 5000, "the stop");
    // Queue 1 lives on the other IOThread: it is paused too.
    const before = device.counters().queues[1]!.requests;
    const r = q[1]!.read(0, 4096);
    await sleep(150);
    expect(device.counters().queues[1]!.requests).toBe(before);
    // Resume with the disk still full: the retry fails, the device stops again.
    device.resume();
    await until(() => stops.length === 2, 5000, "the second stop");
    expect(device.policyCounters()).toMatchObject({ stops: 2, retried: 1, kept: 1 });
    device.faults!.disable(0);
    device.resume();
    expect((await w1).status).toBe(OK);
    expect((await r).status).toBe(OK);
  });

  it("rerror=stop; a reset while stopped completes the kept request with IOERR, in bounded time", async () => {
    const { q, device, stops } = await rig([{ op: "read", sector: 0, action: "error", errno: "EIO" }], {
      rerror: "stop",
    });
    const r = q[0]!.read(0, 4096);
    await until(() => stops.length === 1, 5000, "the stop");
    expect(stops[0]).toMatchObject({ op: "read", error: "EIO" });
    const t0 = Date.now();
    await device.stopQueues();
    expect(Date.now() - t0).toBeLessThan(3000);
    const c = await r;
    expect(c.status).toBe(IOERR);
    expect(device.policyCounters().kept).toBe(0);
    // After the reset the device runs again, not stopped.
    const conn = await connectDriver(device);
    const d2 = new AsyncDriver(conn.queues[0]!, conn.end);
    drivers.push(d2);
    expect(device.isStopped).toBe(false);
    expect((await d2.read(64, 4096)).status).toBe(OK);
  });

  it("short READ and WRITE are IOERR (EIO under the policies); zero-byte shorts too", async () => {
    const { q, disk } = await rig([
      { op: "read", sector: 8, action: "short", bytes: 512 },
      { op: "write", sector: 16, action: "short", bytes: 1024 },
      { op: "write", sector: 24, action: "short", bytes: 0 },
    ]);
    const r = await q[0]!.read(8, 4096);
    const w = await q[0]!.write(16, pattern(16, 1, 4096));
    const z = await q[0]!.write(24, pattern(24, 1, 4096));
    expect([r.status, w.status, z.status]).toEqual([IOERR, IOERR, IOERR]);
    // The short write moved its first 1024 bytes only.
    expect(onDisk(disk, 16, 1024)).toEqual(pattern(16, 1, 4096).subarray(0, 1024));
    expect(onDisk(disk, 18, 3072).every((b) => b === 0)).toBe(true);
  });

  it("werror=stop on a short write stops with EIO", async () => {
    const { q, stops, device } = await rig([{ op: "write", action: "short", bytes: 512, count: 1 }], {
      werror: "stop",
    });
    const w = q[0]!.write(0, pattern(0, 1, 4096));
    await until(() => stops.length === 1, 5000, "the stop");
    expect(stops[0]).toMatchObject({ error: "EIO", op: "write", sector: 0 });
    device.resume();
    expect((await w).status).toBe(OK);
  });

  it("the nth request fails once; added latency delays completions", async () => {
    const { q, device } = await rig([
      { nth: 3, action: "error", errno: "EIO" },
      { op: "flush", action: "delay", delayMs: 120 },
    ]);
    const s: number[] = [];
    for (let i = 0; i < 5; i++) s.push((await q[0]!.read(i * 8, 4096)).status);
    expect(s).toEqual([OK, OK, IOERR, OK, OK]);
    expect(device.faults!.fired(0)).toBe(1);
    const t0 = performance.now();
    expect((await q[0]!.flush()).status).toBe(OK);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(115);
  });

  it("a hung request completes IOERR after requestTimeoutMs, is counted, and stop stays bounded", async () => {
    const { q, device } = await rig([{ op: "read", sector: 50, action: "hang" }], { requestTimeoutMs: 200 });
    const t0 = performance.now();
    const hung = q[0]!.read(50, 4096);
    // Other requests go on meanwhile.
    for (let i = 0; i < 5; i++) expect((await q[0]!.read(i * 8, 4096)).status).toBe(OK);
    const c = await hung;
    const ms = performance.now() - t0;
    expect(c.status).toBe(IOERR);
    expect(ms).toBeGreaterThanOrEqual(195);
    expect(ms).toBeLessThan(2000);
    expect(device.policyCounters()).toMatchObject({ timedOut: 1, lateCompletions: 0 });
    // The head is reused by the next request: nothing completes twice.
    expect((await q[0]!.read(0, 4096)).status).toBe(OK);
    expect(q[0]!.bogus).toEqual([]);
    const s0 = Date.now();
    await device.stopQueues();
    expect(Date.now() - s0).toBeLessThan(2000);
  });

  it("rejects bad policy, timeout and fault options with messages that name them", async () => {
    const memory = GuestMemory.allocate(MiB);
    const base = { memory, engine: "null" as const };
    await expect(VirtioBlkDevice.create({ ...base, rerror: "bogus" as never })).rejects.toThrow(
      /rerror: unknown error policy "bogus"; allowed: report, ignore, stop, enospc/,
    );
    await expect(VirtioBlkDevice.create({ ...base, werror: "halt" as never })).rejects.toThrow(
      /werror: .*allowed: report, ignore, stop, enospc/,
    );
    await expect(VirtioBlkDevice.create({ ...base, requestTimeoutMs: -1 })).rejects.toThrow(
      /requestTimeoutMs/,
    );
    await expect(
      VirtioBlkDevice.create({ ...base, faults: [{ action: "explode" as never }] }),
    ).rejects.toThrow(/faults\[0\]: action must be one of error, short, delay, hang/);
    await expect(
      VirtioBlkDevice.create({ ...base, faults: [{ action: "error", errno: "EWHAT" as never }] }),
    ).rejects.toThrow(/faults\[0\]: errno/);
  });
});

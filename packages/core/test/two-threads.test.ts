/**
 * The real thing: the device side (SplitQueue + parser + engine) runs in a
 * worker thread, the driver side (BlkDriver) here; they share guest memory
 * and talk through a kick doorbell (driver -> device) and a call doorbell
 * (device -> driver), with polling before sleeping on both sides.
 */
import { randomFillSync } from "node:crypto";
import { Worker } from "node:worker_threads";
import { describe, expect, it } from "vitest";
import {
  BlkDriver,
  type BlkParams,
  BlkStatus,
  Doorbell,
  DriverQueue,
  encodeSerial,
  GuestMemory,
  layoutSplitRing,
} from "../dist/index.js";

const WORKER = new URL("./helpers/device-worker.mjs", import.meta.url);
const MiB = 1 << 20;

interface DeviceReport {
  stats: {
    popped: number;
    batches: number;
    interrupts: number;
    sleeps: number;
    wakeTimeouts: number;
    maxBatch: number;
  };
  nextAvail: number;
  nextUsed: number;
  inflight: number;
}

interface Rig {
  mem: GuestMemory;
  dq: DriverQueue;
  drv: BlkDriver;
  kick: Doorbell;
  call: Doorbell;
  dataGpa: number;
  /** Stop the device and get its report. */
  stop(): Promise<DeviceReport>;
}

async function rig(o: {
  size: number;
  eventIdx: boolean;
  pollMs: number;
  engine: { kind: "null" } | { kind: "memory"; buffer: SharedArrayBuffer };
  capacity: number;
  dataBytes: number;
}): Promise<Rig> {
  const ring = layoutSplitRing(o.size, 0);
  const scratchGpa = ring.end;
  const dataGpa = Math.ceil((scratchGpa + BlkDriver.scratchBytes(o.size)) / 4096) * 4096;
  const mem = GuestMemory.allocate(dataGpa + o.dataBytes);
  const dq = new DriverQueue(mem, { ...ring, eventIdx: o.eventIdx });
  const drv = new BlkDriver(dq, mem, scratchGpa);
  const kick = Doorbell.create();
  const call = Doorbell.create();
  const control = new SharedArrayBuffer(8);
  const params: BlkParams = {
    capacityBytes: o.capacity,
    logicalBlockSize: 512,
    readOnly: false,
    segMax: o.size - 2,
    discard: true,
    writeZeroes: true,
    maxDiscardSectors: 1 << 20,
    maxWriteZeroesSectors: 1 << 20,
    serial: encodeSerial("two-threads"),
  };
  const w = new Worker(WORKER, {
    workerData: {
      regions: mem.describe(),
      ring,
      eventIdx: o.eventIdx,
      kick: kick.describe(),
      call: call.describe(),
      control,
      engine: o.engine,
      params,
      pollMs: o.pollMs,
    },
  });
  let report: ((m: { type: string } & Partial<DeviceReport> & { message?: string }) => void) | null = null;
  const messages: Array<{ type: string; message?: string }> = [];
  w.on("message", (m) => {
    messages.push(m);
    report?.(m);
  });
  const exited = new Promise<number>((resolve) => w.on("exit", resolve));
  await new Promise<void>((resolve, reject) => {
    w.once("message", (m) => (m.type === "ready" ? resolve() : reject(new Error(JSON.stringify(m)))));
    w.once("error", reject);
  });
  return {
    mem,
    dq,
    drv,
    kick,
    call,
    dataGpa,
    async stop() {
      const got = new Promise<DeviceReport>((resolve, reject) => {
        const done = messages.find((m) => m.type !== "ready");
        const handle = (m: { type: string; message?: string } & Partial<DeviceReport>) => {
          if (m.type === "done") resolve(m as DeviceReport);
          else if (m.type === "error") reject(new Error(`device worker failed: ${m.message}`));
        };
        if (done) handle(done);
        else report = handle;
        setTimeout(() => reject(new Error("device worker did not stop in 10 s")), 10_000);
      });
      Atomics.store(new Int32Array(control), 0, 1);
      kick.ring();
      try {
        return await got;
      } finally {
        await w.terminate();
        await exited;
      }
    },
  };
}

/** Driver loop: keep `depth` requests in flight until `total` completed; poll, then sleep on the call doorbell. */
function drive(
  r: Rig,
  o: {
    total: number;
    depth: number;
    pollMs: number;
    /** Submit request number k; returns the head or -1 (queue full / not now). */
    submit: (k: number) => number;
    /** Check one completion; return an error string or null. */
    check: (head: number, k: number) => string | null;
    deadlineMs?: number;
  },
): { errors: string[]; sleeps: number; kicks: number; timeouts: number } {
  const { dq, drv } = r;
  const byHead = new Int32Array(dq.size).fill(-1); // request number in flight on each head
  const errors: string[] = [];
  let submitted = 0;
  let completed = 0;
  let sleeps = 0;
  let kicks = 0;
  let timeouts = 0;
  const t0 = performance.now();
  const deadline = t0 + (o.deadlineMs ?? 30_000);
  dq.disableInterrupts();
  let idleSince = performance.now();
  while (completed < o.total) {
    let added = 0;
    while (submitted < o.total && dq.outstanding < o.depth) {
      const head = o.submit(submitted);
      if (head < 0) break;
      if (byHead[head] !== -1) errors.push(`head ${head} handed out while in flight`);
      byHead[head] = submitted;
      submitted++;
      added++;
    }
    if (added > 0) {
      dq.publish();
      if (dq.kickNeeded()) {
        r.kick.ring();
        kicks++;
      }
    }
    let got = 0;
    for (let h = drv.popCompletion(); h >= 0; h = drv.popCompletion()) {
      const k = byHead[h]!;
      if (k < 0) errors.push(`used id ${h} was not submitted`);
      else if (drv.lastToken !== k) errors.push(`head ${h}: token ${drv.lastToken} != ${k}`);
      else {
        const e = o.check(h, k);
        if (e !== null) errors.push(e);
      }
      byHead[h] = -1;
      completed++;
      got++;
    }
    if (errors.length > 20) break;
    if (got > 0 || added > 0) {
      idleSince = performance.now();
      continue;
    }
    const now = performance.now();
    if (now > deadline) {
      errors.push(`deadline: ${completed}/${o.total} completed, ${submitted} submitted`);
      break;
    }
    if (now - idleSince < o.pollMs) continue;
    const s = r.call.snapshot();
    if (dq.enableInterrupts()) {
      dq.disableInterrupts();
      continue;
    }
    sleeps++;
    if (r.call.wait(s, 2000) === "timed-out") timeouts++;
    dq.disableInterrupts();
    idleSince = performance.now();
  }
  if (completed === o.total && dq.outstanding !== 0) errors.push(`${dq.outstanding} still outstanding`);
  return { errors, sleeps, kicks, timeouts };
}

describe("driver here, device in a worker thread", () => {
  for (const c of [
    { depth: 64, size: 256, eventIdx: true, pollMs: 0.02, name: "depth 64, EVENT_IDX, short polling" },
    // No polling at depth 1: every request goes through kick -> sleep -> interrupt, the path
    // where a lost wake-up would show. (On a loaded 2-core machine this is also faster than
    // two spinning threads fighting for the cores.)
    {
      depth: 1,
      size: 8,
      eventIdx: false,
      pollMs: 0,
      name: "depth 1, NO_NOTIFY/NO_INTERRUPT flags, no polling",
    },
  ]) {
    it(`10^5 requests through the null engine: ${c.name}`, async () => {
      const total = 100_000;
      const r = await rig({
        size: c.size,
        eventIdx: c.eventIdx,
        pollMs: c.pollMs,
        engine: { kind: "null" },
        capacity: 64 * MiB,
        dataBytes: 64 * 1024,
      });
      const kinds = new Uint8Array(total); // 0 read, 1 write, 2 flush
      const res = drive(r, {
        total,
        depth: c.depth,
        pollMs: c.pollMs,
        submit: (k) => {
          const kind = k % 7 === 6 ? 2 : k % 3 === 0 ? 1 : 0;
          kinds[k] = kind;
          const sector = (k * 8) % (64 * 2048 - 8);
          if (kind === 2) return r.drv.flush(k);
          return kind === 1
            ? r.drv.write(sector, r.dataGpa, 4096, k)
            : r.drv.read(sector, r.dataGpa, 4096, k);
        },
        check: (h, k) => {
          const want = kinds[k] === 0 ? 4097 : 1;
          if (r.drv.lastStatus !== BlkStatus.OK)
            return `request ${k} (head ${h}): status ${r.drv.lastStatus}`;
          if (r.drv.lastLen !== want) return `request ${k} (head ${h}): used len ${r.drv.lastLen} != ${want}`;
          return null;
        },
      });
      const dev = await r.stop();
      expect(res.errors).toEqual([]);
      expect(res.timeouts).toBe(0);
      expect(dev.stats.wakeTimeouts).toBe(0);
      expect(dev.stats.popped).toBe(total);
      expect(dev.inflight).toBe(0);
      // 10^5 > 65536: both 16-bit indices wrapped and agree.
      expect(total).toBeGreaterThan(65536);
      expect(r.dq.nextAvail).toBe(total & 0xffff);
      expect(dev.nextAvail).toBe(total & 0xffff);
      expect(dev.nextUsed).toBe(total & 0xffff);
      expect(r.dq.free).toBe(c.size);
      if (c.depth === 1) {
        expect(dev.stats.maxBatch).toBe(1);
        // Both sides really slept and were woken (most requests went through the doorbells).
        expect(dev.stats.sleeps).toBeGreaterThan(total / 4);
        expect(res.sleeps).toBeGreaterThan(total / 4);
      }
      // Notification suppression did its job: far fewer kicks/interrupts than requests at depth 64.
      if (c.depth === 64) {
        expect(dev.stats.maxBatch).toBeGreaterThan(1);
        expect(res.kicks).toBeLessThan(total);
      }
    });
  }

  it("memory engine: random writes then reads, every byte checked", async () => {
    const capacity = 4 * MiB;
    const maxLen = 16 * 1024;
    const size = 128;
    const diskBuf = new SharedArrayBuffer(capacity);
    const disk = new Uint8Array(diskBuf);
    randomFillSync(disk);
    const shadow = disk.slice();
    const r = await rig({
      size,
      eventIdx: true,
      pollMs: 0.05,
      engine: { kind: "memory", buffer: diskBuf },
      capacity,
      dataBytes: size * maxLen,
    });
    const slot = (head: number) => r.dataGpa + head * maxLen;
    const busy = new Uint8Array(capacity / 512);
    let seed = 0x9e3779b9;
    const rand = (n: number) => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) % n;
    };
    const total = 6000;
    const ops: Array<{ write: boolean; sector: number; len: number; data?: Uint8Array }> = [];
    let reads = 0;
    let writes = 0;
    const res = drive(r, {
      total,
      depth: 32,
      pollMs: 0.05,
      submit: (k) => {
        // First half mostly writes, second half mostly reads; in-flight ranges never overlap.
        const write = k < total / 2 ? rand(10) < 8 : rand(10) < 2;
        const len = (1 + rand(maxLen / 512)) * 512;
        const sector = rand(capacity / 512 - len / 512 + 1);
        for (let s = sector; s < sector + len / 512; s++) if (busy[s] !== 0) return -1;
        const head = r.dq.peekHead();
        const buf = r.mem.slice(slot(head), len);
        let data: Uint8Array | undefined;
        if (write) {
          randomFillSync(buf);
          data = buf.slice();
        } else buf.fill(0xee);
        const h = write ? r.drv.write(sector, slot(head), len, k) : r.drv.read(sector, slot(head), len, k);
        if (h !== head) throw new Error(`peekHead ${head} but got ${h}`);
        busy.fill(1, sector, sector + len / 512);
        ops[k] = data === undefined ? { write, sector, len } : { write, sector, len, data };
        return h;
      },
      check: (h, k) => {
        const op = ops[k]!;
        busy.fill(0, op.sector, op.sector + op.len / 512);
        if (r.drv.lastStatus !== BlkStatus.OK) return `request ${k}: status ${r.drv.lastStatus}`;
        const off = op.sector * 512;
        if (op.write) {
          writes++;
          if (r.drv.lastLen !== 1) return `write ${k}: used len ${r.drv.lastLen}`;
          shadow.set(op.data!, off);
          if (Buffer.compare(disk.subarray(off, off + op.len), op.data!) !== 0)
            return `write ${k}: disk differs`;
        } else {
          reads++;
          if (r.drv.lastLen !== op.len + 1) return `read ${k}: used len ${r.drv.lastLen}`;
          const got = r.mem.slice(slot(h), op.len);
          if (Buffer.compare(got, shadow.subarray(off, off + op.len)) !== 0)
            return `read ${k} of ${op.len} at sector ${op.sector}: data differs`;
        }
        return null;
      },
    });
    const dev = await r.stop();
    expect(res.errors).toEqual([]);
    expect(dev.stats.popped).toBe(total);
    expect(reads).toBeGreaterThan(total / 4);
    expect(writes).toBeGreaterThan(total / 4);
    expect(Buffer.compare(disk, shadow)).toBe(0);
  });
});

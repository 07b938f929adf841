/**
 * Micro-benchmarks of the hot paths of @vblk/core, single thread, with
 * tinybench. Each task iteration does a batch of BATCH operations (so the
 * timer's own cost and resolution do not dominate) and only the operations
 * themselves are timed (overriddenDuration): the untimed part of an
 * iteration prepares the rings and recycles descriptors.
 *
 *   node bench/dist/micro.js [--time MS] [--json]
 *
 * Figures are per operation: one chain added, popped, parsed or completed,
 * or one request for the round trip.
 */

import { pathToFileURL } from "node:url";
import {
  BlkDriver,
  type BlkParams,
  BlkRequest,
  type DescriptorChain,
  DriverQueue,
  encodeSerial,
  finishBlkRequest,
  GuestMemory,
  layoutSplitRing,
  NullEngine,
  parseBlkRequest,
  SplitQueue,
  writeBlkStatus,
} from "@vblk/core";
import { Bench } from "tinybench";

const BATCH = 64;
const QUEUE_SIZE = 256;
const MiB = 1 << 20;

interface Rig {
  mem: GuestMemory;
  dq: DriverQueue;
  q: SplitQueue;
  drv: BlkDriver;
  dataGpa: number;
  tableGpa: number;
  params: BlkParams;
  reqs: BlkRequest[];
}

function rig(eventIdx = true): Rig {
  const ring = layoutSplitRing(QUEUE_SIZE, 0);
  const scratch = ring.end;
  const tableGpa = scratch + BlkDriver.scratchBytes(QUEUE_SIZE);
  const dataGpa = 4 * MiB;
  const mem = GuestMemory.allocate(8 * MiB);
  const dq = new DriverQueue(mem, { ...ring, eventIdx });
  const q = new SplitQueue(mem, { ...ring, eventIdx, indirect: true });
  const drv = new BlkDriver(dq, mem, scratch);
  const params: BlkParams = {
    capacityBytes: 1 << 30,
    logicalBlockSize: 512,
    readOnly: false,
    segMax: QUEUE_SIZE - 2,
    discard: true,
    writeZeroes: true,
    maxDiscardSectors: 1 << 20,
    maxWriteZeroesSectors: 1 << 20,
    serial: encodeSerial("micro"),
  };
  const reqs = Array.from({ length: QUEUE_SIZE }, () => new BlkRequest());
  return { mem, dq, q, drv, dataGpa, tableGpa, params, reqs };
}

/** Header, 4 KiB data, status: the shape of a read request, as three descriptors. */
function addRead(r: Rig, i: number): number {
  return r.drv.read(i * 8, r.dataGpa + i * 4096, 4096, i);
}

const tablesPerHead = 3 * 16;
const g3 = new Float64Array(3);
const l3 = new Uint32Array([16, 4096, 1]);
function addIndirectRead(r: Rig, i: number): number {
  const head = r.dq.peekHead();
  g3[0] = r.drv.scratchGpa + head * 64;
  g3[1] = r.dataGpa + i * 4096;
  g3[2] = g3[0] + 32;
  return r.dq.addIndirect(r.tableGpa + head * tablesPerHead, g3, l3, 1, 2, i);
}

/** Device completes everything popped; driver reaps it. */
function recycle(r: Rig, popped: DescriptorChain[]): void {
  for (const ch of popped) r.q.push(ch.head, 1);
  popped.length = 0;
  r.q.publish();
  r.q.needsInterrupt();
  while (r.dq.popUsed() >= 0) {}
}

function popAll(r: Rig, into: DescriptorChain[]): void {
  for (let ch = r.q.pop(); ch !== null; ch = r.q.pop()) into.push(ch);
}

type Timed = { overriddenDuration: number };

export interface MicroResult {
  name: string;
  opsPerSec: number;
  meanNs: number;
  p50Ns: number;
  p99Ns: number;
  rmePercent: number;
  samples: number;
}

export async function runMicro(timeMs = 1000): Promise<MicroResult[]> {
  const bench = new Bench({ time: timeMs, warmupTime: Math.min(200, timeMs / 4), throws: true });
  const now = () => bench.now();
  const popped: DescriptorChain[] = [];

  {
    const r = rig();
    bench.add("DriverQueue addChain (3 desc) + publish", (): Timed => {
      const t0 = now();
      for (let i = 0; i < BATCH; i++) addRead(r, i);
      r.dq.publish();
      const t = now() - t0;
      r.dq.kickNeeded();
      popAll(r, popped);
      recycle(r, popped);
      return { overriddenDuration: t };
    });
  }
  // Time only the device's pops of a batch the driver added with `add`.
  for (const [name, add] of [
    ["SplitQueue pop (direct, 3 desc)", addRead],
    ["SplitQueue pop (indirect, 3 entries)", addIndirectRead],
  ] as const) {
    const r = rig();
    bench.add(name, (): Timed => {
      for (let i = 0; i < BATCH; i++) add(r, i);
      r.dq.publish();
      const t0 = now();
      popAll(r, popped);
      const t = now() - t0;
      recycle(r, popped);
      return { overriddenDuration: t };
    });
  }
  {
    const r = rig();
    bench.add("parseBlkRequest (read, 3 desc)", (): Timed => {
      for (let i = 0; i < BATCH; i++) addRead(r, i);
      r.dq.publish();
      popAll(r, popped);
      const t0 = now();
      for (let i = 0; i < popped.length; i++) {
        const ch = popped[i]!;
        parseBlkRequest(ch, r.mem, r.params, r.reqs[ch.head]!);
      }
      const t = now() - t0;
      recycle(r, popped);
      return { overriddenDuration: t };
    });
  }
  {
    const r = rig();
    bench.add("SplitQueue push + publish", (): Timed => {
      for (let i = 0; i < BATCH; i++) addRead(r, i);
      r.dq.publish();
      popAll(r, popped);
      const t0 = now();
      for (let i = 0; i < popped.length; i++) r.q.push(popped[i]!.head, 4097);
      r.q.publish();
      const t = now() - t0;
      popped.length = 0;
      r.q.needsInterrupt();
      while (r.dq.popUsed() >= 0) {}
      return { overriddenDuration: t };
    });
  }
  {
    const r = rig();
    const engine = new NullEngine();
    const complete = (tag: number, result: number) => {
      const req = r.reqs[tag]!;
      finishBlkRequest(req, result);
      writeBlkStatus(req, r.mem);
      r.q.push(req.head, req.usedLen);
    };
    bench.add("round trip, depth 64, null engine (driver -> device -> driver)", (): Timed => {
      const t0 = now();
      for (let i = 0; i < BATCH; i++) addRead(r, i);
      r.dq.publish();
      r.dq.kickNeeded();
      for (let ch = r.q.pop(); ch !== null; ch = r.q.pop()) {
        const req = r.reqs[ch.head]!;
        if (parseBlkRequest(ch, r.mem, r.params, req)) {
          req.tag = ch.head;
          engine.enqueue(req);
        } else {
          writeBlkStatus(req, r.mem);
          r.q.push(req.head, req.usedLen);
        }
      }
      engine.submit();
      engine.reap(complete);
      r.q.publish();
      r.q.needsInterrupt();
      while (r.drv.popCompletion() >= 0) {
        if (r.drv.lastStatus !== 0) throw new Error(`status ${r.drv.lastStatus}`);
      }
      return { overriddenDuration: now() - t0 };
    });
  }

  await bench.run();
  return bench.tasks.map((task) => {
    const res = task.result;
    if (res.state !== "completed") throw new Error(`${task.name}: ${res.state}`);
    const lat = res.latency; // ms per iteration (BATCH operations)
    const perOpNs = (ms: number) => (ms * 1e6) / BATCH;
    return {
      name: task.name,
      opsPerSec: (BATCH * 1000) / lat.mean,
      meanNs: perOpNs(lat.mean),
      p50Ns: perOpNs(lat.p50),
      p99Ns: perOpNs(lat.p99),
      rmePercent: lat.rme,
      samples: lat.samplesCount,
    };
  });
}

function fmtOps(x: number): string {
  if (x >= 1e6) return `${(x / 1e6).toFixed(2)} M`;
  if (x >= 1e3) return `${(x / 1e3).toFixed(1)} k`;
  return x.toFixed(0);
}

export function formatTable(results: MicroResult[]): string {
  const rows = results.map((r) => [
    r.name,
    fmtOps(r.opsPerSec),
    r.meanNs.toFixed(1),
    r.p50Ns.toFixed(1),
    r.p99Ns.toFixed(1),
    `±${r.rmePercent.toFixed(2)}%`,
    String(r.samples),
  ]);
  const head = ["task", "ops/s", "mean ns", "p50 ns", "p99 ns", "rme", "samples"];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) =>
    `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(" | ")} |`;
  const sep = `|${widths.map((w, i) => (i === 0 ? "-".repeat(w + 2) : `${"-".repeat(w + 1)}:`)).join("|")}|`;
  return [line(head), sep, ...rows.map(line)].join("\n");
}

async function main(argv: string[]): Promise<void> {
  const json = argv.includes("--json");
  const ti = argv.indexOf("--time");
  const timeMs = ti >= 0 ? Number(argv[ti + 1]) : 1000;
  if (!Number.isFinite(timeMs) || timeMs <= 0) throw new Error(`--time needs a positive number of ms`);
  const results = await runMicro(timeMs);
  if (json) {
    const out = {
      node: process.version,
      platform: `${process.platform}-${process.arch}`,
      batch: BATCH,
      queueSize: QUEUE_SIZE,
      timeMsPerTask: timeMs,
      date: new Date().toISOString(),
      results,
    };
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  } else {
    process.stdout.write(
      `vblk micro-benchmarks (${process.version}, ${process.platform}-${process.arch}; ` +
        `per operation, batches of ${BATCH}, queue size ${QUEUE_SIZE}, ${timeMs} ms per task)\n\n`,
    );
    process.stdout.write(`${formatTable(results)}\n`);
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).catch((e: unknown) => {
    process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  });
}

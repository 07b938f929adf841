/**
 * One vblk-bench run on the main thread:
 *
 *   image (file / temp / none)  ->  guest RAM  ->  VirtioBlkDevice (IOThreads)
 *   ->  connectDriver (the guest's init through mmio)  ->  piscina pool of
 *   numjobs workers, job i on queue i  ->  start barrier  ->  progress
 *   ->  results  ->  counters  ->  close everything (also on error / abort)
 *
 * Guest physical memory:
 *
 *   0            (page 0 unused, as in real guests)
 *   0x1000       rings + BlkDriver scratch of queue 0, 1, ... (4 KiB aligned)
 *   dataBase     job 0: iodepth buffers of bs | job 1: ... (each 4 KiB aligned)
 */
import { BlkDriver, GuestMemory, layoutSplitRing } from "@vblk/core";
import {
  connectDriver,
  type IoThreadCounters,
  type QueueCounters,
  VirtioBlkDevice,
  type VirtioBlkDeviceOptions,
  validateMapping,
} from "@vblk/iothread";
import { Piscina } from "piscina";
import { type PreparedImage, prepareImage } from "./image.js";
import {
  controlBuffer,
  type JobResult,
  type JobTask,
  PROGRESS_BASE,
  PROGRESS_FIELDS,
  W_ARRIVED,
  W_DONE,
  W_GO,
  W_STOP,
} from "./job-types.js";
import { allocGuestRegion, type Placement, placeThreads } from "./native.js";
import { type BenchOptions, DEFAULT_SIZE, OptionError } from "./options.js";
import { type GroupStats, groupStats, jobStats } from "./stats.js";

export const BENCH_VERSION = "vblk-bench-0.1";

export interface IoThreadReport extends IoThreadCounters {
  /** Busy time over the measured wall time, percent. */
  busyPct: number;
  /** Requests of the queues it serves. */
  requests: number;
  batches: number;
  interrupts: number;
  kicks: number;
}

export interface JobReport {
  job: number;
  queue: number;
  stats: GroupStats;
  kicks: number;
  sleeps: number;
  error: number;
  stopped: boolean;
}

export interface BenchResult {
  version: string;
  options: BenchOptions;
  /** Engine the device runs (auto resolved). */
  engine: string;
  filename: string | undefined;
  imageBytes: number;
  tempImage: boolean;
  /** Bytes of the range jobs work over. */
  rangeBytes: number;
  /** Guest RAM is page aligned (native addon), so O_DIRECT engines can use it in place. */
  guestMemoryAligned: boolean;
  timestampMs: number;
  /** Measured wall window on the main thread (after ramp). */
  wallMs: number;
  group: GroupStats;
  jobs: JobReport[];
  /** Whole process (jobs + IOThreads + engine threads), percent of one CPU. */
  cpu: { usr: number; sys: number; ctx: number; majf: number; minf: number };
  device: {
    numQueues: number;
    queueSize: number;
    eventIdx: boolean;
    pollMaxNs: number;
    pollEngine: boolean;
    iothreadWait: "ring" | "epoll";
    driverPollNs: number;
    driverPollMaxNs: number;
    placement: Placement;
    warmupMs: number;
    mode: string;
    mapping: { iothread: string; vqs: number[] }[];
    mappingText: string;
    iothreads: IoThreadReport[];
    queues: QueueCounters[];
  };
  verify: { blocks: number; errors: number } | undefined;
  /** 0, or the first job error (5 EIO, 95 EOPNOTSUPP, 84 EILSEQ verify failure). */
  error: number;
  errorMessages: string[];
  warnings: string[];
  interrupted: boolean;
}

export interface ProgressSnapshot {
  elapsedMs: number;
  jobs: number;
  states: number[];
  /** Cumulative completions since the start (ramp included). */
  readIos: number;
  writeIos: number;
  readBytes: number;
  writeBytes: number;
  /** 0..1, the slowest job's. */
  fraction: number;
}

export interface VerifyPhaseInfo {
  /** The image file, for file engines. */
  path: string | undefined;
  /** The disk, for the memory engine. */
  disk: SharedArrayBuffer | undefined;
  bs: number;
  /** Byte range each job wrote. */
  ranges: { job: number; start: number; bytes: number }[];
}

export interface RunContext {
  /** A prepared image to use (shared between runs); else one is made (and removed) as needed. */
  image?: PreparedImage;
  /** Abort: jobs stop at once, the report covers what was done. */
  signal?: AbortSignal;
  /** Called about once a second while jobs run. */
  onProgress?: (p: ProgressSnapshot) => void;
  progressIntervalMs?: number;
  /** --verify: called after the write phase, before the read-back phase. */
  betweenVerifyPhases?: (info: VerifyPhaseInfo) => Promise<void> | void;
}

/** Engines that read and write a file. */
export function usesFile(engine: string): boolean {
  return engine !== "null" && engine !== "memory";
}

/** Device-level checks that need the library (before any image is made). */
export function checkDeviceOptions(opts: BenchOptions): void {
  const problems = validateMapping({
    numQueues: opts.numQueues,
    ...(opts.iothreadVqMapping !== undefined
      ? { iothreadVqMapping: opts.iothreadVqMapping }
      : { iothreads: opts.iothreads ?? 1 }),
  });
  if (problems.length > 0) {
    const opt = opts.iothreadVqMapping !== undefined ? "iothread-vq-mapping" : "iothreads";
    throw new OptionError(
      opt,
      `--${opt}: ${problems.map((m) => m.replace(/^(iothread-vq-mapping|iothreads|num-queues): /, "")).join("; ")}; allowed: ${
        opt === "iothreads"
          ? "an integer from 1 to 1024"
          : `entries {"iothread": name, "vqs"?: [...]} covering vqs 0..${opts.numQueues - 1} (--num-queues) once each, or all without vqs (round-robin)`
      }`,
    );
  }
}

function alignUp(x: number, a: number): number {
  return Math.ceil(x / a) * a;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Guest memory layout: rings first, then each job's data buffers. */
export const RING_BASE = 0x1000;

export function guestLayout(opts: BenchOptions): { dataBase: number; perJob: number; total: number } {
  let next = RING_BASE;
  for (let q = 0; q < opts.numQueues; q++) {
    const ring = layoutSplitRing(opts.queueSize, next);
    next = alignUp(ring.end + BlkDriver.scratchBytes(opts.queueSize), 4096);
  }
  const perJob = alignUp(opts.bs * opts.iodepth, 4096);
  return { dataBase: next, perJob, total: next + perJob * opts.numjobs };
}

interface Snapshot {
  t: number;
  cpu: NodeJS.CpuUsage;
  ru: NodeJS.ResourceUsage;
  counters: { iothreads: IoThreadCounters[]; queues: QueueCounters[] };
}

function snapshot(device: VirtioBlkDevice): Snapshot {
  return {
    t: performance.now(),
    cpu: process.cpuUsage(),
    ru: process.resourceUsage(),
    counters: device.counters(),
  };
}

const GAUGES = new Set(["pollNs", "maxBatch", "queue", "iothread", "name", "queues"]);

function delta<T extends object>(end: T, start: T | undefined): T {
  const out = { ...end } as Record<string, unknown>;
  if (start === undefined) return out as T;
  for (const [k, v] of Object.entries(end)) {
    const s = (start as Record<string, unknown>)[k];
    if (!GAUGES.has(k) && typeof v === "number" && typeof s === "number") out[k] = v - s;
  }
  return out as T;
}

/** Run one job set. Creates (and removes) a temporary image when the engine needs a file and none is given. */
export async function runBench(opts: BenchOptions, ctx: RunContext = {}): Promise<BenchResult> {
  checkDeviceOptions(opts);
  let image = ctx.image;
  let own = false;
  if (image === undefined && usesFile(opts.ioengine)) {
    image = await prepareImage({
      filename: opts.filename,
      directory: opts.directory,
      size: opts.size,
      bs: opts.bs,
      ...(ctx.signal ? { signal: ctx.signal } : {}),
    });
    own = true;
  }
  try {
    return await runOnImage(opts, image, ctx);
  } finally {
    if (own) image!.remove();
  }
}

async function runOnImage(
  opts: BenchOptions,
  image: PreparedImage | undefined,
  ctx: RunContext,
): Promise<BenchResult> {
  const warnings: string[] = [];
  const fileEngine = usesFile(opts.ioengine);
  if (!fileEngine && opts.filename !== undefined)
    warnings.push(`--filename ignored: ioengine=${opts.ioengine} does not use a file`);
  const imageBytes = fileEngine ? image!.sizeBytes : (opts.size ?? DEFAULT_SIZE);
  let rangeBytes = Math.min(opts.size ?? imageBytes, imageBytes);
  rangeBytes = Math.floor(rangeBytes / opts.bs) * opts.bs;
  if (rangeBytes < opts.bs) throw new OptionError("size", `--size: less than one block of --bs=${opts.bs}`);
  const nblocks = rangeBytes / opts.bs;
  if (opts.verify && Math.floor(nblocks / opts.numjobs) === 0)
    throw new OptionError(
      "size",
      `--size: ${nblocks} block(s) cannot be split over ${opts.numjobs} verify jobs`,
    );

  const layout = guestLayout(opts);
  const { region, aligned } = allocGuestRegion(layout.total);
  const memory = new GuestMemory([region]);
  if (!aligned && fileEngine && opts.direct && opts.ioengine !== "threads")
    warnings.push("guest RAM is not page aligned (native addon unavailable): O_DIRECT engines may bounce");
  const disk = opts.ioengine === "memory" ? new SharedArrayBuffer(imageBytes) : undefined;

  const nativeEngine = ["io_uring", "libaio", "auto"].includes(opts.ioengine);
  // The JIT warm-up only makes sense before a timed window (a size-bound run would lose I/Os to it).
  const warmupMs = opts.timeBased && !opts.verify ? opts.warmupMs : 0;
  const placement = placeThreads(
    opts.iothreadCpus,
    opts.cpusAllowed,
    nativeEngine,
    fileEngine ? image!.path : undefined,
  );
  const devOpts: VirtioBlkDeviceOptions = {
    memory,
    numQueues: opts.numQueues,
    queueSize: opts.queueSize,
    ...(opts.iothreadVqMapping !== undefined
      ? { iothreadVqMapping: opts.iothreadVqMapping }
      : { iothreads: opts.iothreads ?? 1 }),
    engine: opts.ioengine,
    ...(fileEngine ? { path: image!.path } : { sizeBytes: imageBytes }),
    ...(disk ? { disk } : {}),
    cache: opts.direct ? "none" : "writeback",
    pollMaxNs: opts.pollMaxNs,
    pollEngine: opts.pollEngine,
    sleepInEngine: opts.iothreadWait === "ring",
    eventIdx: opts.eventIdx,
    ...(placement.iothreadCpus ? { iothreadCpus: placement.iothreadCpus } : {}),
  };
  // Start the job threads first: their start-up overlaps the device's.
  const pool = new Piscina({
    filename: new URL("./job-worker.js", import.meta.url).href,
    minThreads: opts.numjobs,
    maxThreads: opts.numjobs,
    concurrentTasksPerWorker: 1,
    idleTimeout: 60_000,
  });
  let device: VirtioBlkDevice;
  try {
    device = await VirtioBlkDevice.create(devOpts);
  } catch (e) {
    await pool.destroy();
    throw e;
  }
  const ctl = controlBuffer(opts.numjobs);
  const ctl32 = new Int32Array(ctl);
  const stop = () => {
    Atomics.store(ctl32, W_STOP, 1);
    Atomics.notify(ctl32, W_GO);
  };
  const onAbort = () => stop();
  ctx.signal?.addEventListener("abort", onAbort);
  let deviceProblem: string | undefined;
  device.on("needs-reset", (reason: string) => {
    deviceProblem = `device needs reset: ${reason}`;
    stop();
  });
  let ticker: NodeJS.Timeout | undefined;
  let rampTimer: NodeJS.Timeout | undefined;
  try {
    const conn = await connectDriver(device, { queueSize: opts.queueSize, base: RING_BASE });
    if (conn.end > layout.dataBase)
      throw new Error(`internal: driver rings end at ${conn.end}, past the data area at ${layout.dataBase}`);

    const per = Math.floor(nblocks / opts.numjobs);
    const tasks: JobTask[] = [];
    for (let j = 0; j < opts.numjobs; j++) {
      const range = opts.verify
        ? { start: j * per * opts.bs, bytes: per * opts.bs }
        : { start: 0, bytes: rangeBytes };
      tasks.push({
        job: j,
        desc: conn.queues[j],
        control: ctl,
        dataGpa: layout.dataBase + j * layout.perJob,
        bs: opts.bs,
        iodepth: opts.iodepth,
        rw: opts.rw,
        rwmixread: opts.rwmixread,
        rangeStart: range.start,
        rangeBytes: range.bytes,
        seed: (opts.seed + Math.imul(j, 0x9e3779b9)) >>> 0,
        verifySeed: opts.seed,
        rampMs: opts.rampMs + warmupMs,
        runtimeMs: opts.runtimeMs ?? Number.POSITIVE_INFINITY,
        timeBased: opts.timeBased,
        totalIos:
          opts.numberIos ??
          (opts.verify || opts.timeBased ? Number.POSITIVE_INFINITY : Math.floor(range.bytes / opts.bs)),
        verify: opts.verify !== undefined,
        driverPollNs: opts.driverPollNs,
        driverPollMaxNs: opts.driverPollMaxNs,
        iodepthBatchSubmit: opts.iodepthBatchSubmit,
        cpus: placement.jobCpus,
      });
    }

    let failure: Error | undefined;
    const running = tasks.map((t) =>
      pool.run(t).then(
        (r) => r as JobResult,
        (e: Error) => {
          failure ??= e;
          stop();
          throw e;
        },
      ),
    );
    const settledAll = Promise.allSettled(running);

    const waitArrived = async (phase: number) => {
      const t0 = performance.now();
      while (Atomics.load(ctl32, W_ARRIVED + phase) + Atomics.load(ctl32, W_DONE) < opts.numjobs) {
        if (failure || Atomics.load(ctl32, W_STOP) !== 0) return;
        if (performance.now() - t0 > 120_000)
          throw new Error(`jobs did not reach the start of phase ${phase} in 120 s`);
        await sleep(2);
      }
    };
    const release = (phase: number) => {
      Atomics.store(ctl32, W_GO, phase + 1);
      Atomics.notify(ctl32, W_GO);
    };

    await waitArrived(0);
    const startT = performance.now();
    let base = snapshot(device);
    release(0);
    if (opts.rampMs + warmupMs > 0 && !opts.verify)
      rampTimer = setTimeout(() => {
        base = snapshot(device);
      }, opts.rampMs + warmupMs);
    if (ctx.onProgress) {
      const prog = new Float64Array(ctl, PROGRESS_BASE, opts.numjobs * PROGRESS_FIELDS);
      ticker = setInterval(() => {
        const p: ProgressSnapshot = {
          elapsedMs: performance.now() - startT,
          jobs: opts.numjobs,
          states: [],
          readIos: 0,
          writeIos: 0,
          readBytes: 0,
          writeBytes: 0,
          fraction: 1,
        };
        for (let j = 0; j < opts.numjobs; j++) {
          const o = j * PROGRESS_FIELDS;
          p.readIos += prog[o]!;
          p.writeIos += prog[o + 1]!;
          p.readBytes += prog[o + 2]!;
          p.writeBytes += prog[o + 3]!;
          p.states.push(prog[o + 4]!);
          p.fraction = Math.min(p.fraction, prog[o + 5]!);
        }
        ctx.onProgress!(p);
      }, ctx.progressIntervalMs ?? 1000);
    }

    if (opts.verify) {
      await waitArrived(1);
      if (!failure && Atomics.load(ctl32, W_STOP) === 0 && ctx.betweenVerifyPhases)
        await ctx.betweenVerifyPhases({
          path: fileEngine ? image!.path : undefined,
          disk,
          bs: opts.bs,
          ranges: tasks.map((t) => ({ job: t.job, start: t.rangeStart, bytes: t.rangeBytes })),
        });
      release(1);
    }

    const settled = await settledAll;
    if (rampTimer) clearTimeout(rampTimer);
    const end = snapshot(device);
    if (failure) throw failure;
    const results = settled.map((s) => (s as PromiseFulfilledResult<JobResult>).value);
    return buildResult(opts, device, results, base, end, {
      engine: device.engineName,
      image,
      imageBytes,
      rangeBytes,
      aligned,
      placement,
      warmupMs,
      warnings,
      deviceProblem,
      interrupted: ctx.signal?.aborted ?? false,
    });
  } finally {
    if (ticker) clearInterval(ticker);
    if (rampTimer) clearTimeout(rampTimer);
    ctx.signal?.removeEventListener("abort", onAbort);
    stop();
    await pool.destroy();
    await device.close();
  }
}

function buildResult(
  opts: BenchOptions,
  device: VirtioBlkDevice,
  results: JobResult[],
  base: Snapshot,
  end: Snapshot,
  x: {
    engine: string;
    image: PreparedImage | undefined;
    imageBytes: number;
    rangeBytes: number;
    aligned: boolean;
    placement: Placement;
    warmupMs: number;
    warnings: string[];
    deviceProblem: string | undefined;
    interrupted: boolean;
  },
): BenchResult {
  const group = groupStats(results, opts.percentiles);
  const wallMs = Math.max(end.t - base.t, 1e-3);
  const cpuUser = end.cpu.user - base.cpu.user;
  const cpuSys = end.cpu.system - base.cpu.system;
  const queues = end.counters.queues.map((q) =>
    delta(
      q,
      base.counters.queues.find((b) => b.queue === q.queue),
    ),
  );
  const iothreads: IoThreadReport[] = end.counters.iothreads.map((t) => {
    const d = delta(
      t,
      base.counters.iothreads.find((b) => b.name === t.name),
    );
    const mine = queues.filter((q) => t.queues.includes(q.queue));
    const sum = (k: "requests" | "batches" | "interrupts" | "kicks") => mine.reduce((a, q) => a + q[k], 0);
    return {
      ...d,
      busyPct: (100 * d.busyNs) / (wallMs * 1e6),
      requests: sum("requests"),
      batches: sum("batches"),
      interrupts: sum("interrupts"),
      kicks: sum("kicks"),
    };
  });
  const errorMessages = results.flatMap((r) => r.errorMessages);
  if (x.deviceProblem) errorMessages.unshift(x.deviceProblem);
  const firstErr = results.find((r) => r.error !== 0)?.error ?? (x.deviceProblem ? 5 : 0);
  const m = device.mapping;
  return {
    version: BENCH_VERSION,
    options: opts,
    engine: x.engine,
    filename: x.image?.path,
    imageBytes: x.imageBytes,
    tempImage: x.image?.temp ?? false,
    rangeBytes: x.rangeBytes,
    guestMemoryAligned: x.aligned,
    timestampMs: Date.now(),
    wallMs,
    group,
    jobs: results.map((r) => ({
      job: r.job,
      queue: r.job,
      stats: jobStats(r, opts.percentiles, group),
      kicks: r.kicks,
      sleeps: r.sleeps,
      error: r.error,
      stopped: r.stopped,
    })),
    cpu: {
      usr: (100 * cpuUser) / (wallMs * 1000),
      sys: (100 * cpuSys) / (wallMs * 1000),
      ctx:
        end.ru.voluntaryContextSwitches +
        end.ru.involuntaryContextSwitches -
        base.ru.voluntaryContextSwitches -
        base.ru.involuntaryContextSwitches,
      majf: end.ru.majorPageFault - base.ru.majorPageFault,
      minf: end.ru.minorPageFault - base.ru.minorPageFault,
    },
    device: {
      numQueues: opts.numQueues,
      queueSize: opts.queueSize,
      eventIdx: opts.eventIdx,
      pollMaxNs: opts.pollMaxNs,
      pollEngine: opts.pollEngine,
      iothreadWait: opts.iothreadWait,
      driverPollNs: opts.driverPollNs,
      driverPollMaxNs: opts.driverPollMaxNs,
      placement: x.placement,
      warmupMs: x.warmupMs,
      mode: m.mode,
      mapping: m.iothreads.map((name, i) => ({ iothread: name, vqs: [...(m.iothreadQueues[i] ?? [])] })),
      mappingText: device.describeMapping(),
      iothreads,
      queues,
    },
    verify: opts.verify
      ? {
          blocks: results.reduce((a, r) => a + r.verifyBlocks, 0),
          errors: results.reduce((a, r) => a + r.verifyErrors, 0),
        }
      : undefined,
    error: firstErr,
    errorMessages,
    warnings: [...x.warnings, ...results.flatMap((r) => r.warnings)],
    interrupted: x.interrupted || results.some((r) => r.stopped),
  };
}

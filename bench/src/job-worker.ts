/**
 * One bench job = one guest vCPU submitting to its own virtqueue, run as a
 * piscina task on its own worker thread. It keeps `iodepth` requests in
 * flight and times each one:
 *
 *   issue (add chain)  -> submit (publish + kick if needed) -> completion popped
 *   |<------- slat ------->|<------------- clat ------------->|
 *   |<----------------------- lat --------------------------->|
 *
 *   loop: fill up to iodepth (one submit for the batch),
 *         waitUsed(driverPollNs): spin, then sleep on the interrupt doorbell,
 *         pop every completion (one timestamp per reaped batch), recycle slots.
 *
 * Latencies go into fio-style bucket histograms (lat-histogram.ts, ns),
 * returned to the main thread in the task's result (plain data: they survive
 * structured cloning).
 */
import { type DriverQueueDesc, openDriverQueue } from "@vblk/iothread";
import {
  type DirRaw,
  type JobPhaseKind,
  type JobResult,
  JobState,
  type JobTask,
  PROGRESS_BASE,
  PROGRESS_FIELDS,
  W_ARRIVED,
  W_DONE,
  W_GO,
  W_STOP,
} from "./job-types.js";
import { latRecord, latReset, newLatHistogram } from "./lat-histogram.js";
import { nativeSpin, pinThread, spinRelax } from "./native.js";
import { XorShift128 } from "./prng.js";
import { checkVerifyBlock, fillVerifyBlock } from "./verify.js";

const READ = 0;
const WRITE = 1;
/** Give up when nothing completes for this long with requests in flight. */
const STALL_MS = 15_000;
const MAX_MESSAGES = 10;

function newDir(): DirRaw {
  return {
    ios: 0,
    bytes: 0,
    runtimeMs: 0,
    errors: 0,
    slat: newLatHistogram(),
    clat: newLatHistogram(),
    lat: newLatHistogram(),
    perSecIos: [],
    perSecBytes: [],
  };
}

function resetDir(d: DirRaw): void {
  d.ios = 0;
  d.bytes = 0;
  d.errors = 0;
  latReset(d.slat);
  latReset(d.clat);
  latReset(d.lat);
  d.perSecIos.length = 0;
  d.perSecBytes.length = 0;
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/** A stride coprime with n: i -> (i * stride + start) mod n visits every block once. */
function permutationStride(n: number, rng: XorShift128): number {
  if (n <= 2) return 1;
  let s = Math.floor(n * 0.6180339887) | 1;
  s += 2 * rng.below(Math.max(1, Math.floor(n / 16)));
  s %= n;
  if (s === 0) s = 1;
  while (gcd(s, n) !== 1) s = (s + 1) % n || 1;
  return s;
}

const STATUS_NAMES = ["OK", "IOERR", "UNSUPP"];

export default function runJob(task: JobTask): JobResult {
  const ctl = new Int32Array(task.control);
  const prog = new Float64Array(
    task.control,
    PROGRESS_BASE + task.job * PROGRESS_FIELDS * 8,
    PROGRESS_FIELDS,
  );
  const result: JobResult = {
    job: task.job,
    read: newDir(),
    write: newDir(),
    kicks: 0,
    sleeps: 0,
    error: 0,
    errorMessages: [],
    verifyBlocks: 0,
    verifyErrors: 0,
    stopped: false,
    warnings: [],
  };
  try {
    if (task.cpus !== undefined) {
      const why = pinThread(task.cpus);
      if (why !== undefined && task.job === 0) result.warnings.push(why);
    }
    const h = openDriverQueue(task.desc as DriverQueueDesc);
    h.relax = spinRelax();
    h.pollMaxNs = task.driverPollMaxNs;
    h.spinWait = nativeSpin();
    const blk = h.blk;
    const bs = task.bs;
    const sectorsPerByte = 1 / 512;
    const data = h.mem.slice(task.dataGpa, bs * task.iodepth);
    const rng = new XorShift128(task.seed);
    const dirs = [result.read, result.write];
    const phases: JobPhaseKind[] = task.verify ? ["verify-write", "verify-read"] : ["run"];
    const nblocks = Math.floor(task.rangeBytes / bs);
    const stride = permutationStride(nblocks, rng);
    const permStart = rng.below(nblocks);
    let verifyWritten = 0;

    // Per-slot state (a slot = one data buffer = one request in flight).
    const depth = task.iodepth;
    const freeSlots = new Int32Array(depth);
    const issueT = new Float64Array(depth);
    const subT = new Float64Array(depth);
    const slotOff = new Float64Array(depth);
    const slotDir = new Uint8Array(depth);
    const batch = new Int32Array(depth);

    const batchSubmit = task.iodepthBatchSubmit > 0 ? task.iodepthBatchSubmit : depth;
    /** Publish (and kick) requests batch[from..to); returns the time, which starts the next chunk. */
    const publishChunk = (from: number, to: number, recording: boolean): number => {
      h.submit();
      const ts = performance.now();
      for (let i = from; i < to; i++) {
        const s = batch[i]!;
        subT[s] = ts;
        if (recording) {
          const ns = Math.round((ts - issueT[s]!) * 1e6);
          latRecord(dirs[slotDir[s]!]!.slat, ns > 0 ? ns : 1);
        }
      }
      return ts;
    };

    for (let p = 0; p < phases.length; p++) {
      const kind = phases[p]!;
      // ---- barrier: arrive, sleep until the main thread releases phase p
      prog[4] = JobState.waiting;
      Atomics.add(ctl, W_ARRIVED + p, 1);
      Atomics.notify(ctl, W_ARRIVED + p);
      const waitStart = performance.now();
      for (;;) {
        const go = Atomics.load(ctl, W_GO);
        if (go > p || Atomics.load(ctl, W_STOP) !== 0) break;
        if (performance.now() - waitStart > 120_000)
          throw new Error(`job ${task.job}: never released (phase ${kind})`);
        Atomics.wait(ctl, W_GO, go, 1000);
      }
      if (Atomics.load(ctl, W_STOP) !== 0) {
        result.stopped = true;
        break;
      }

      // ---- phase setup
      const isRun = kind === "run";
      const random = task.rw.startsWith("rand");
      const mixed = isRun && (task.rw === "rw" || task.rw === "randrw");
      const fixedDir =
        kind === "verify-read"
          ? READ
          : kind === "verify-write"
            ? WRITE
            : task.rw.endsWith("read")
              ? READ
              : WRITE;
      const tStart = performance.now();
      const rampEnd = isRun ? tStart + task.rampMs : tStart;
      let recording = !(isRun && task.rampMs > 0);
      let measureStart = tStart;
      let lastDone = tStart;
      const deadline =
        kind === "verify-read"
          ? Number.POSITIVE_INFINITY
          : tStart + (isRun ? task.rampMs : 0) + task.runtimeMs;
      const limit =
        kind === "verify-read"
          ? verifyWritten
          : kind === "verify-write"
            ? Math.min(nblocks, task.totalIos)
            : task.totalIos;
      const timeBased = isRun && task.timeBased;
      const state = isRun
        ? recording
          ? JobState.running
          : JobState.ramp
        : kind === "verify-write"
          ? JobState.verifyWrite
          : JobState.verifyRead;
      prog[4] = state;
      let issued = 0;
      let completedOk = 0;
      let inflight = 0;
      let nfree = depth;
      for (let i = 0; i < depth; i++) freeSlots[i] = depth - 1 - i;
      let stopIssue = limit === 0;
      let lastProgress = tStart;
      let lastCompletionT = tStart;
      let seqCursor = 0;
      const cumIos = [0, 0];
      const cumBytes = [0, 0];

      for (;;) {
        // ---- issue up to iodepth
        if (!stopIssue && nfree > 0) {
          let added = 0;
          let chunkStart = 0;
          // One clock read per published chunk: a request's issue time is
          // when its chunk started (performance.now() costs ~55 ns here).
          let tChunk = performance.now();
          while (nfree > 0) {
            if (issued >= limit) {
              stopIssue = true;
              break;
            }
            const slot = freeSlots[nfree - 1]!;
            let dir: number;
            let off: number;
            if (isRun) {
              dir = mixed ? (rng.nextU32() % 100 < task.rwmixread ? READ : WRITE) : fixedDir;
              const b = random ? rng.below(nblocks) : seqCursor++ % nblocks;
              off = task.rangeStart + b * bs;
            } else {
              dir = fixedDir;
              const b = random ? (issued * stride + permStart) % nblocks : issued;
              off = task.rangeStart + b * bs;
            }
            const gpa = task.dataGpa + slot * bs;
            if (dir === WRITE && !isRun)
              fillVerifyBlock(data.subarray(slot * bs, slot * bs + bs), off, task.verifySeed, task.job);
            const head =
              dir === READ
                ? blk.read(off * sectorsPerByte, gpa, bs, slot)
                : blk.write(off * sectorsPerByte, gpa, bs, slot);
            if (head < 0) break; // ring full (cannot happen when queue-size >= 3 x iodepth)
            nfree--;
            issueT[slot] = tChunk;
            slotOff[slot] = off;
            slotDir[slot] = dir;
            batch[added++] = slot;
            issued++;
            inflight++;
            if (added - chunkStart === batchSubmit) {
              tChunk = publishChunk(chunkStart, added, recording);
              chunkStart = added;
            }
          }
          if (added > chunkStart) publishChunk(chunkStart, added, recording);
        }
        if (inflight === 0) {
          if (stopIssue) break;
          if (nfree === depth) throw new Error(`job ${task.job}: the queue has no room for one request`);
          continue;
        }

        // ---- wait for completions
        if (!h.waitUsed(task.driverPollNs, 100)) {
          const t = performance.now();
          if (t - lastCompletionT > STALL_MS)
            throw new Error(
              `job ${task.job}: no completion for ${STALL_MS / 1000} s with ${inflight} request(s) in flight (device stalled?)`,
            );
          if (Atomics.load(ctl, W_STOP) !== 0) {
            stopIssue = true;
            result.stopped = true;
          }
          continue;
        }
        const tc = performance.now();
        lastCompletionT = tc;
        if (!recording && tc >= rampEnd) {
          recording = true;
          // the window starts at the end of the ramp; this batch completed after it
          measureStart = rampEnd;
          resetDir(result.read);
          resetDir(result.write);
          prog[4] = JobState.running;
        }
        const sec = recording ? Math.floor((tc - measureStart) / 1000) : 0;
        for (;;) {
          const head = blk.popCompletion();
          if (head < 0) break;
          const slot = blk.lastToken as number;
          const dir = slotDir[slot]!;
          const d = dirs[dir]!;
          const off = slotOff[slot]!;
          inflight--;
          freeSlots[nfree++] = slot;
          const status = blk.lastStatus;
          cumIos[dir]!++;
          cumBytes[dir]! += bs;
          if (status !== 0) {
            d.errors++;
            if (result.error === 0) result.error = status === 2 ? 95 : 5;
            if (result.errorMessages.length < MAX_MESSAGES)
              result.errorMessages.push(
                `job ${task.job}: ${dir === READ ? "read" : "write"} of ${bs} bytes at offset ${off} failed: status ${status} (${STATUS_NAMES[status] ?? "?"})`,
              );
            stopIssue = true; // like fio without continue_on_error
            continue;
          }
          completedOk++;
          if (kind === "verify-read") {
            result.verifyBlocks++;
            const msg = checkVerifyBlock(data.subarray(slot * bs, slot * bs + bs), off);
            if (msg !== undefined) {
              result.verifyErrors++;
              if (result.error === 0) result.error = 84;
              if (result.errorMessages.length < MAX_MESSAGES)
                result.errorMessages.push(`job ${task.job}: ${msg}`);
            }
          }
          if (recording) {
            d.ios++;
            d.bytes += bs;
            let ns = Math.round((tc - subT[slot]!) * 1e6);
            latRecord(d.clat, ns > 0 ? ns : 1);
            ns = Math.round((tc - issueT[slot]!) * 1e6);
            latRecord(d.lat, ns > 0 ? ns : 1);
            const ps = d.perSecIos;
            while (ps.length <= sec) {
              ps.push(0);
              d.perSecBytes.push(0);
            }
            ps[sec]!++;
            d.perSecBytes[sec]! += bs;
          }
        }
        lastDone = tc;

        // ---- time, stop flag, progress
        if (tc >= deadline && (timeBased || task.runtimeMs !== Number.POSITIVE_INFINITY)) stopIssue = true;
        if (!stopIssue && Atomics.load(ctl, W_STOP) !== 0) {
          stopIssue = true;
          result.stopped = true;
        }
        if (tc - lastProgress > 50) {
          lastProgress = tc;
          prog[0] = cumIos[0]!;
          prog[1] = cumIos[1]!;
          prog[2] = cumBytes[0]!;
          prog[3] = cumBytes[1]!;
          const byTime = Number.isFinite(deadline) ? (tc - tStart) / (deadline - tStart) : 0;
          const byIos = Number.isFinite(limit) && limit > 0 ? issued / limit : 0;
          prog[5] = Math.min(1, timeBased ? byTime : Math.max(byTime, byIos));
        }
      }
      prog[0] = cumIos[0]!;
      prog[1] = cumIos[1]!;
      prog[2] = cumBytes[0]!;
      prog[3] = cumBytes[1]!;
      if (kind === "verify-write") verifyWritten = completedOk;

      // ---- measured window of this phase
      if (recording) {
        const window = Math.max(lastDone - measureStart, 1e-3);
        const active: DirRaw[] = [];
        if (mixed || fixedDir === READ) active.push(result.read);
        if (mixed || fixedDir === WRITE) active.push(result.write);
        // keep only whole seconds as per-second samples (fio's bw/iops samples)
        const whole = Math.floor(window / 1000);
        for (const d of active) {
          d.runtimeMs += window;
          if (d.perSecIos.length > whole) {
            d.perSecIos.length = whole;
            d.perSecBytes.length = whole;
          }
        }
      }
      if (result.error !== 0 && result.error !== 84) break;
      if (result.stopped) break;
    }
    result.kicks = h.kicks;
    result.sleeps = h.sleeps;
  } finally {
    prog[4] = JobState.done;
    prog[5] = 1;
    Atomics.add(ctl, W_DONE, 1);
    Atomics.notify(ctl, W_DONE);
  }
  return result;
}

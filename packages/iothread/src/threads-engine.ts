/**
 * The pure-JS engine (like QEMU's aio=threads): a small pool of I/O worker
 * threads per IOThread, each doing blocking preadv/pwritev/fdatasync on its
 * own file descriptor, straight on views of guest memory (SharedArrayBuffers).
 * No native addon and no postMessage on the hot path: requests and
 * completions travel through rings in one SharedArrayBuffer per worker.
 *
 *   IOThread (owns the engine)                    I/O worker k (one of `workers`)
 *   enqueue(req) -> slot in SQ k, segs in SEG k
 *   submit()     -> publish SQ head, ring bell k ---> wakes, pops the slot,
 *                                                    preadv/pwritev/fdatasync,
 *                                                    frees segs (SEG tail),
 *   reap(cb)     <- pops CQ k  <------------------- pushes (id, result) to CQ k,
 *                                                    rings the IOThread's doorbell
 *
 *   per-worker SharedArrayBuffer
 *   +----------------+-----------------+----------------+-------------------+---------+
 *   | control words  | SQ: offset,len  | SQ: op,id,     | SEG ring: offset, | CQ: id, |
 *   | bell, heads,   | (f64 x2)/slot   | segStart,      | region, len       | result  |
 *   | tails, stop,   |                 | segCount (i32) | (f64,i32,u32)     | (i32x2) |
 *   | state, stats   |                 |                |                   |         |
 *   +----------------+-----------------+----------------+-------------------+---------+
 *
 * Each ring has one producer and one consumer. The IOThread never has more
 * than `ringSlots` requests outstanding on a worker, so neither the SQ nor
 * the CQ can overflow; what does not fit waits in a JS backlog and goes out
 * as completions are reaped. Requests go to the worker with the fewest
 * outstanding.
 *
 * Ordering: a FLUSH is held in the IOThread until every write-type request
 * (WRITE, WRITE_ZEROES, DISCARD) enqueued before it has completed, then sent
 * to a worker (fdatasync covers the whole file, whichever fd wrote it).
 * Requests enqueued after a FLUSH are not held back by it.
 *
 * O_DIRECT (spec.direct): the kernel wants the buffer address, the length
 * and the file offset aligned to the logical block size. JS cannot see
 * addresses, and a SharedArrayBuffer made by JS is NOT page aligned (its data
 * starts 16 bytes into a page), while one made by the native addon is. So a
 * worker learns per guest-memory region: the first block-aligned request
 * tries direct I/O on the guest buffers; EINVAL marks the region misaligned
 * and from then on its requests go through an aligned bounce buffer (a
 * WebAssembly.Memory, which V8 allocates page aligned), counted in
 * stats().bounced. A request whose file offset (or, for writes, length) is
 * not block aligned uses a buffered (non-O_DIRECT) fd instead
 * (stats().bufferedFallback).
 *
 * DISCARD succeeds without deallocating anything (the spec allows a device
 * not to deallocate; Node has no fallocate/punch-hole) and is answered in the
 * IOThread without a worker hop. WRITE_ZEROES (with or without UNMAP) writes
 * zero buffers. Reads past the end of the disk return fewer bytes (a short
 * result); writes past it fail with -EIO and never grow the file.
 */
import {
  closeSync,
  existsSync,
  constants as fsc,
  fstatSync,
  openSync,
  readFileSync,
  readSync,
  realpathSync,
  statSync,
} from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import {
  type BlockEngine,
  type CompletionWait,
  Doorbell,
  type EngineContext,
  type EngineSpec,
  type EngineStats,
  type GuestRegionInit,
  IoOp,
  type IoRequest,
} from "@vblk/core";

// ---------------------------------------------------------------------------
// Shared layout (also used by threads-engine-worker.ts)

export const ERRNO = { EIO: 5, EBADF: 9, EFAULT: 14, EINVAL: 22, EROFS: 30 } as const;

/** Int32 word indices of the control block at the start of each worker's buffer. */
export const CTL = {
  /** The worker's doorbell (2 words): the IOThread rings it after publishing SQ entries. */
  BELL: 0,
  /** SQ producer index (IOThread). */
  SQ_HEAD: 16,
  /** SQ consumer index (worker). */
  SQ_TAIL: 24,
  /** CQ producer index (worker). */
  CQ_HEAD: 32,
  /** SEG ring consumer index (worker): segments before it are free. */
  SEG_TAIL: 40,
  /** Set to 1 by close(): the worker finishes what was published, then exits. */
  STOP: 48,
  /** WorkerState. */
  STATE: 49,
  /** errno of the worker's open(), 0 when it opened the file. */
  OPEN_ERRNO: 50,
  /** Requests that went through the aligned bounce buffer. */
  BOUNCED: 56,
  /** Requests that used a buffered fd although the engine is O_DIRECT. */
  BUFFERED: 57,
  WORDS: 64,
} as const;

export const WorkerState = { STARTING: 0, RUNNING: 1, EXITED: 2 } as const;

/** Words per slot of the SQ's Int32 part: op, id, segStart, segCount. */
const SQ_I32 = 4;
/** Words per slot of the SQ's Float64 part: offset, length. */
const SQ_F64 = 2;

/** Typed views over one worker's SharedArrayBuffer. */
export class RingLayout {
  readonly ctl: Int32Array;
  readonly sqF64: Float64Array;
  readonly sqI32: Int32Array;
  readonly segOffset: Float64Array;
  readonly segRegion: Int32Array;
  readonly segLen: Uint32Array;
  readonly cq: Int32Array;

  static bytes(slots: number, segs: number): number {
    return CTL.WORDS * 4 + slots * (SQ_F64 * 8 + SQ_I32 * 4 + 8) + segs * (8 + 4 + 4);
  }

  constructor(
    readonly sab: SharedArrayBuffer,
    readonly slots: number,
    readonly segs: number,
  ) {
    let at = 0;
    this.ctl = new Int32Array(sab, at, CTL.WORDS);
    at += CTL.WORDS * 4;
    this.sqF64 = new Float64Array(sab, at, slots * SQ_F64);
    at += slots * SQ_F64 * 8;
    this.segOffset = new Float64Array(sab, at, segs);
    at += segs * 8;
    this.sqI32 = new Int32Array(sab, at, slots * SQ_I32);
    at += slots * SQ_I32 * 4;
    this.segRegion = new Int32Array(sab, at, segs);
    at += segs * 4;
    this.segLen = new Uint32Array(sab, at, segs);
    at += segs * 4;
    this.cq = new Int32Array(sab, at, slots * 2);
    at += slots * 8;
    if (at !== RingLayout.bytes(slots, segs)) throw new Error("threads engine: ring layout size mismatch");
  }
}

/** What each I/O worker receives (structured-cloned; the buffers are shared). */
export interface ThreadsWorkerData {
  kind: "vblk-threads-engine";
  sab: SharedArrayBuffer;
  slots: number;
  segs: number;
  /** The IOThread's doorbell, rung after completions are posted. */
  done: { buffer: SharedArrayBuffer; index: number };
  regions: GuestRegionInit[];
  path: string;
  direct: boolean;
  readOnly: boolean;
  sizeBytes: number;
  blockSize: number;
  /** Busy-poll for new work this long (microseconds) before sleeping. */
  pollUs: number;
}

// ---------------------------------------------------------------------------
// The engine (runs in the IOThread)

export type FileEngineSpec = Extract<EngineSpec, { path: string }>;

export interface ThreadsEngineOptions {
  /** I/O worker threads (default spec.workers, else 4). */
  workers?: number;
  /** SQ/CQ slots per worker, a power of two (default 128). */
  ringSlots?: number;
  /** Segment ring entries per worker, a power of two >= 1024 (default 4096); the most segments one request may have. */
  segSlots?: number;
  /** A worker busy-polls this long (us) for new work before sleeping (default 20; 0 = sleep at once). */
  pollUs?: number;
  /** close() waits at most this long (ms) for the workers to finish and exit (default 5000). */
  closeTimeoutMs?: number;
}

export interface ThreadsEngineStats extends EngineStats {
  /** Requests that used a buffered fd although the engine is O_DIRECT. */
  bufferedFallback: number;
}

export const DEFAULT_THREADS_WORKERS = 4;
export const MAX_THREADS_WORKERS = 64;

/** A request waiting in the IOThread (backlog or held FLUSH), copied out of the caller's object. */
interface Pending extends IoRequest {
  /** Write epoch (write-type ops), flush epoch (held FLUSH), or -1. */
  epoch: number;
}

interface WorkerSlot {
  worker: Worker;
  threadId: number;
  ring: RingLayout;
  bell: Doorbell;
  /** Local copies of the indices this side produces / consumes. */
  sqHead: number;
  cqTail: number;
  segHead: number;
  outstanding: number;
  dirty: boolean;
  /** The thread ended without being asked to (crashed or was terminated). */
  dead: boolean;
  /** Dead, and everything it was given has been failed: skip it. */
  gone: boolean;
}

function isPow2(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

function isWriteOp(op: number): boolean {
  return (
    op === IoOp.WRITE || op === IoOp.WRITE_ZEROES || op === IoOp.WRITE_ZEROES_UNMAP || op === IoOp.DISCARD
  );
}

/** The worker script next to this module (dist/), or dist/ when this module runs from src/. */
function workerUrl(): URL {
  const here = new URL("./threads-engine-worker.js", import.meta.url);
  if (here.protocol !== "file:" || existsSync(fileURLToPath(here))) return here;
  const dist = new URL("../dist/threads-engine-worker.js", import.meta.url);
  return existsSync(fileURLToPath(dist)) ? dist : here;
}

// Not in the ES or Node type libraries this package builds with; present at run time in Node.
declare const WebAssembly: {
  Memory: new (d: {
    initial: number;
    maximum?: number;
    shared?: boolean;
  }) => { readonly buffer: ArrayBuffer };
};

/**
 * A zeroed buffer of `bytes` (rounded up to 64 KiB) whose data is page aligned:
 * V8 allocates WebAssembly memory with the page allocator, while ArrayBuffer
 * and SharedArrayBuffer data sit 16 bytes into a page.
 */
export function alignedBytes(bytes: number): Uint8Array {
  const pages = Math.max(1, Math.ceil(bytes / 65536));
  return new Uint8Array(new WebAssembly.Memory({ initial: pages, maximum: pages }).buffer, 0, bytes);
}

export class ThreadsEngine implements BlockEngine {
  readonly name = "threads";
  readonly wait: CompletionWait = { kind: "doorbell" };
  private readonly ws: WorkerSlot[] = [];
  private readonly slots: number;
  private readonly segs: number;
  private readonly closeTimeoutMs: number;
  private readonly sizeBytes: number;
  private readonly readOnly: boolean;
  private readonly done: Doorbell;
  private closed = false;
  private liveWorkers: number;
  private lastWorkerError: Error | null = null;

  // Requests on a worker ring, by id.
  private readonly recTag: Float64Array;
  private readonly recEpoch: Float64Array;
  private readonly freeIds: Int32Array;
  private freeCount: number;

  private backlog: Pending[] = [];
  private backlogHead = 0;
  private held: Pending[] = [];
  private heldHead = 0;
  private localTags: number[] = [];
  private localResults: number[] = [];

  // FLUSH ordering: write-type requests outstanding per epoch; a FLUSH closes the epoch.
  private epoch = 0;
  private readonly epochCount = new Map<number, number>();
  private epochQueue: number[] = [];
  private epochQueueHead = 0;

  private enqueued = 0;
  private cancelled = 0;
  private readonly st = { submitted: 0, completed: 0, submitCalls: 0, errors: 0 };

  constructor(spec: FileEngineSpec, ctx: EngineContext, opts: ThreadsEngineOptions = {}) {
    const workers = opts.workers ?? spec.workers ?? DEFAULT_THREADS_WORKERS;
    if (!Number.isInteger(workers) || workers < 1 || workers > MAX_THREADS_WORKERS)
      throw new Error(
        `threads engine: workers must be an integer from 1 to ${MAX_THREADS_WORKERS} (I/O threads per IOThread), got ${workers}`,
      );
    const slots = opts.ringSlots ?? 128;
    if (!isPow2(slots) || slots > 65536)
      throw new Error(`threads engine: ringSlots must be a power of two up to 65536, got ${slots}`);
    const segs = opts.segSlots ?? 4096;
    if (!isPow2(segs) || segs < 1024 || segs > 1 << 20)
      throw new Error(`threads engine: segSlots must be a power of two from 1024 to 2^20, got ${segs}`);
    const pollUs = opts.pollUs ?? 20;
    if (!(pollUs >= 0)) throw new Error(`threads engine: pollUs must be >= 0, got ${pollUs}`);
    if (!isPow2(spec.blockSize) || spec.blockSize < 512 || spec.blockSize > 65536)
      throw new Error(
        `threads engine: blockSize must be a power of two from 512 to 65536, got ${spec.blockSize}`,
      );
    if (!Number.isSafeInteger(spec.sizeBytes) || spec.sizeBytes < 0)
      throw new Error(`threads engine: sizeBytes must be a safe integer >= 0, got ${spec.sizeBytes}`);
    const regions = ctx.mem.describe();
    regions.forEach((r, i) => {
      if (!(r.buffer instanceof SharedArrayBuffer))
        throw new Error(
          `threads engine: guest memory region ${i} is not a SharedArrayBuffer; the I/O workers cannot see it`,
        );
    });
    // Fail here, in the caller's thread, if the workers could not open the file.
    const flags = (spec.readOnly ? fsc.O_RDONLY : fsc.O_RDWR) | (spec.direct ? fsc.O_DIRECT : 0);
    try {
      closeSync(openSync(spec.path, flags));
    } catch (e) {
      throw openError(spec.path, spec.direct, spec.readOnly, e);
    }

    this.slots = slots;
    this.segs = segs;
    this.closeTimeoutMs = opts.closeTimeoutMs ?? 5000;
    this.sizeBytes = spec.sizeBytes;
    this.readOnly = spec.readOnly;
    this.done = ctx.doorbell;
    const cap = workers * slots;
    this.recTag = new Float64Array(cap);
    this.recEpoch = new Float64Array(cap);
    this.freeIds = new Int32Array(cap);
    for (let i = 0; i < cap; i++) this.freeIds[i] = cap - 1 - i;
    this.freeCount = cap;
    this.liveWorkers = workers;

    const url = workerUrl();
    try {
      for (let k = 0; k < workers; k++) {
        const sab = new SharedArrayBuffer(RingLayout.bytes(slots, segs));
        const ring = new RingLayout(sab, slots, segs);
        const data: ThreadsWorkerData = {
          kind: "vblk-threads-engine",
          sab,
          slots,
          segs,
          done: ctx.doorbell.describe(),
          regions,
          path: spec.path,
          direct: spec.direct,
          readOnly: spec.readOnly,
          sizeBytes: spec.sizeBytes,
          blockSize: spec.blockSize,
          pollUs,
        };
        const worker = new Worker(url, { workerData: data });
        // Never keep a process alive; close() is what ends the workers.
        worker.unref();
        const w: WorkerSlot = {
          worker,
          threadId: worker.threadId,
          ring,
          bell: new Doorbell(sab, CTL.BELL),
          sqHead: 0,
          cqTail: 0,
          segHead: 0,
          outstanding: 0,
          dirty: false,
          dead: false,
          gone: false,
        };
        // These events arrive only when the owning thread runs its event loop.
        // A worker that dies fails its requests with -EIO at the next reap().
        worker.on("error", (e) => {
          this.lastWorkerError ??= e;
        });
        worker.on("exit", () => {
          if (Atomics.load(ring.ctl, CTL.STATE) === WorkerState.EXITED) return;
          w.dead = true;
          this.liveWorkers--;
          this.done.ring();
        });
        this.ws.push(w);
      }
    } catch (e) {
      this.closed = true;
      for (const w of this.ws) void w.worker.terminate();
      throw e;
    }
  }

  /** The I/O workers (for tests and diagnostics). */
  get workers(): readonly Worker[] {
    return this.ws.map((w) => w.worker);
  }

  /** threadId of each I/O worker. */
  get threadIds(): number[] {
    return this.ws.map((w) => w.threadId);
  }

  /** The first error a worker thread threw (null when none did). */
  get workerError(): Error | null {
    return this.lastWorkerError;
  }

  /** FLUSH requests held back until earlier writes complete. */
  get heldFlushes(): number {
    return this.held.length - this.heldHead;
  }

  /** Requests waiting in the IOThread because every worker ring was full. */
  get backlogged(): number {
    return this.backlog.length - this.backlogHead;
  }

  get inflight(): number {
    return this.enqueued - this.st.completed - this.cancelled;
  }

  private check(): void {
    if (this.closed) throw new Error("threads engine closed");
  }

  private completeLocally(tag: number, result: number): void {
    this.localTags.push(tag);
    this.localResults.push(result);
    this.st.submitted++;
    // Wake an IOThread that might go to sleep before reaping this.
    this.done.ring();
  }

  enqueue(req: IoRequest): void {
    this.check();
    this.enqueued++;
    const op = req.op;
    switch (op) {
      case IoOp.READ:
      case IoOp.WRITE:
        if (req.segCount > this.segs) {
          this.completeLocally(req.tag, -ERRNO.EINVAL);
          return;
        }
        break;
      case IoOp.FLUSH:
      case IoOp.WRITE_ZEROES:
      case IoOp.WRITE_ZEROES_UNMAP:
        break;
      case IoOp.DISCARD:
        // Success without deallocation.
        if (this.readOnly) this.completeLocally(req.tag, -ERRNO.EROFS);
        else if (req.offset < 0 || req.length < 0 || req.offset + req.length > this.sizeBytes)
          this.completeLocally(req.tag, -ERRNO.EIO);
        else this.completeLocally(req.tag, 0);
        return;
      default:
        this.completeLocally(req.tag, -ERRNO.EINVAL);
        return;
    }
    if (this.readOnly && isWriteOp(op)) {
      this.completeLocally(req.tag, -ERRNO.EROFS);
      return;
    }
    if (this.liveWorkers <= 0) {
      this.completeLocally(req.tag, -ERRNO.EIO);
      return;
    }
    let epoch = -1;
    if (isWriteOp(op)) {
      epoch = this.epoch;
      this.addWrite(epoch);
    } else if (op === IoOp.FLUSH && this.minWriteEpoch() <= this.epoch) {
      // Writes are outstanding: hold the FLUSH until they (and only they) complete.
      this.held.push(copyRequest(req, this.epoch));
      this.epoch++;
      return;
    }
    if (this.backlogged > 0 || !this.place(req, epoch)) this.backlog.push(copyRequest(req, epoch));
  }

  submit(): void {
    this.check();
    if (this.publish()) this.st.submitCalls++;
  }

  reap(onComplete: (tag: number, result: number) => void): number {
    this.check();
    let n = 0;
    if (this.localTags.length > 0) {
      const tags = this.localTags;
      const results = this.localResults;
      this.localTags = [];
      this.localResults = [];
      for (let i = 0; i < tags.length; i++) {
        const r = results[i]!;
        if (r < 0) this.st.errors++;
        this.st.completed++;
        n++;
        onComplete(tags[i]!, r);
      }
    }
    const mask = this.slots - 1;
    let died = false;
    for (const w of this.ws) {
      if (w.gone) continue;
      const cq = w.ring.cq;
      // Read `dead` first: once it is set, CQ_HEAD no longer moves.
      const dead = w.dead;
      const head = Atomics.load(w.ring.ctl, CTL.CQ_HEAD);
      while (w.cqTail !== head) {
        const slot = w.cqTail & mask;
        const id = cq[slot * 2]!;
        const result = cq[slot * 2 + 1]!;
        w.cqTail = (w.cqTail + 1) | 0;
        n++;
        this.finish(w, id, result, onComplete);
      }
      if (dead) {
        // SQ entry k completes as CQ entry k: what is left of the SQ never will.
        died = true;
        w.gone = true;
        while (w.cqTail !== w.sqHead) {
          const id = w.ring.sqI32[(w.cqTail & mask) * SQ_I32 + 1]!;
          w.cqTail = (w.cqTail + 1) | 0;
          n++;
          this.finish(w, id, -ERRNO.EIO, onComplete);
        }
        w.dirty = false;
      }
    }
    if (died && this.liveWorkers <= 0) n += this.failWaiting(onComplete);
    if (n > 0 && !this.closed) this.pump();
    return n;
  }

  private finish(
    w: WorkerSlot,
    id: number,
    result: number,
    onComplete: (tag: number, result: number) => void,
  ): void {
    w.outstanding--;
    const tag = this.recTag[id]!;
    const epoch = this.recEpoch[id]!;
    this.freeIds[this.freeCount++] = id;
    if (epoch >= 0) this.completeWrite(epoch);
    if (result < 0) this.st.errors++;
    this.st.completed++;
    onComplete(tag, result);
  }

  /** Every worker is gone: fail what waits in the IOThread. */
  private failWaiting(onComplete: (tag: number, result: number) => void): number {
    const waiting = [...this.backlog.slice(this.backlogHead), ...this.held.slice(this.heldHead)];
    this.backlog = [];
    this.backlogHead = 0;
    this.held = [];
    this.heldHead = 0;
    for (const p of waiting) {
      if (p.op !== IoOp.FLUSH && p.epoch >= 0) this.completeWrite(p.epoch);
      this.st.errors++;
      this.st.completed++;
      onComplete(p.tag, -ERRNO.EIO);
    }
    return waiting.length;
  }

  /**
   * Forget a request that has not reached a worker yet (it waits in the
   * backlog, is a held FLUSH, or is an unreaped local completion): returns
   * true, and it is never reported. A request a worker has may still
   * complete: false.
   */
  cancel(tag: number): boolean {
    this.check();
    const lt = this.localTags.indexOf(tag);
    if (lt >= 0) {
      this.localTags.splice(lt, 1);
      this.localResults.splice(lt, 1);
      this.cancelled++;
      return true;
    }
    const fromBacklog = this.backlog.findIndex((p, i) => i >= this.backlogHead && p.tag === tag);
    const fromHeld =
      fromBacklog < 0 ? this.held.findIndex((p, i) => i >= this.heldHead && p.tag === tag) : -1;
    if (fromBacklog < 0 && fromHeld < 0) return false;
    const [p] = fromBacklog >= 0 ? this.backlog.splice(fromBacklog, 1) : this.held.splice(fromHeld, 1);
    // A write that will never run no longer holds back the FLUSHes after it.
    if (p!.op !== IoOp.FLUSH && p!.epoch >= 0) this.completeWrite(p!.epoch);
    this.cancelled++;
    this.pump();
    return true;
  }

  stats(): ThreadsEngineStats {
    let bounced = 0;
    let bufferedFallback = 0;
    for (const w of this.ws) {
      bounced += Atomics.load(w.ring.ctl, CTL.BOUNCED);
      bufferedFallback += Atomics.load(w.ring.ctl, CTL.BUFFERED);
    }
    return { ...this.st, bounced, bufferedFallback };
  }

  /**
   * Stop the workers: each finishes what was already handed to it, closes its
   * fds and exits. Waits at most closeTimeoutMs in all, then terminates the
   * stragglers. Requests not yet reaped are dropped. Later calls throw.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.ws) {
      Atomics.store(w.ring.ctl, CTL.STOP, 1);
      w.bell.ring();
    }
    const deadline = performance.now() + this.closeTimeoutMs;
    for (const w of this.ws) {
      const ctl = w.ring.ctl;
      while (!w.dead) {
        const s = Atomics.load(ctl, CTL.STATE);
        if (s === WorkerState.EXITED) break;
        const left = deadline - performance.now();
        if (left <= 0) {
          void w.worker.terminate().catch(() => {});
          break;
        }
        Atomics.wait(ctl, CTL.STATE, s, left);
      }
    }
    this.backlog = [];
    this.held = [];
    this.localTags = [];
    this.localResults = [];
  }

  // --- internals

  private addWrite(epoch: number): void {
    const c = this.epochCount.get(epoch) ?? 0;
    if (c === 0) this.epochQueue.push(epoch);
    this.epochCount.set(epoch, c + 1);
  }

  private completeWrite(epoch: number): void {
    const c = (this.epochCount.get(epoch) ?? 1) - 1;
    if (c <= 0) this.epochCount.delete(epoch);
    else this.epochCount.set(epoch, c);
  }

  /** Oldest epoch with a write outstanding (Infinity when none). */
  private minWriteEpoch(): number {
    const q = this.epochQueue;
    while (this.epochQueueHead < q.length && !this.epochCount.has(q[this.epochQueueHead]!))
      this.epochQueueHead++;
    if (this.epochQueueHead >= q.length) {
      this.epochQueue = [];
      this.epochQueueHead = 0;
      return Number.POSITIVE_INFINITY;
    }
    if (this.epochQueueHead > 1024) {
      this.epochQueue = q.slice(this.epochQueueHead);
      this.epochQueueHead = 0;
    }
    return this.epochQueue[this.epochQueueHead]!;
  }

  /** Release FLUSHes whose writes are done, move backlog onto the rings, publish. */
  private pump(): void {
    while (this.heldHead < this.held.length) {
      const f = this.held[this.heldHead]!;
      if (this.minWriteEpoch() <= f.epoch) break;
      this.heldHead++;
      if (this.backlogged > 0 || !this.place(f, -1)) this.backlog.push({ ...f, epoch: -1 });
    }
    if (this.heldHead === this.held.length) {
      this.held = [];
      this.heldHead = 0;
    }
    while (this.backlogHead < this.backlog.length) {
      const p = this.backlog[this.backlogHead]!;
      if (!this.place(p, p.op === IoOp.FLUSH ? -1 : p.epoch)) break;
      this.backlogHead++;
    }
    if (this.backlogHead === this.backlog.length) {
      this.backlog = [];
      this.backlogHead = 0;
    } else if (this.backlogHead > 1024) {
      this.backlog = this.backlog.slice(this.backlogHead);
      this.backlogHead = 0;
    }
    this.publish();
  }

  /** Publish the SQ heads of workers that got new entries and ring them. */
  private publish(): boolean {
    let any = false;
    for (const w of this.ws) {
      if (!w.dirty) continue;
      w.dirty = false;
      any = true;
      Atomics.store(w.ring.ctl, CTL.SQ_HEAD, w.sqHead);
      w.bell.ring();
    }
    return any;
  }

  /** Put a request on the least busy worker's ring (not yet published). False when none has room. */
  private place(req: IoRequest, epoch: number): boolean {
    const rw = req.op === IoOp.READ || req.op === IoOp.WRITE;
    const nseg = rw ? req.segCount : 0;
    let best: WorkerSlot | null = null;
    for (const w of this.ws) {
      if (w.dead || w.outstanding >= this.slots) continue;
      if (nseg > 0 && this.segs - ((w.segHead - Atomics.load(w.ring.ctl, CTL.SEG_TAIL)) | 0) < nseg) continue;
      if (best === null || w.outstanding < best.outstanding) best = w;
    }
    if (best === null || this.freeCount === 0) return false;
    const w = best;
    const id = this.freeIds[--this.freeCount]!;
    this.recTag[id] = req.tag;
    this.recEpoch[id] = epoch;
    const r = w.ring;
    const slot = w.sqHead & (this.slots - 1);
    r.sqF64[slot * SQ_F64] = req.offset;
    r.sqF64[slot * SQ_F64 + 1] = req.length;
    r.sqI32[slot * SQ_I32] = req.op;
    r.sqI32[slot * SQ_I32 + 1] = id;
    r.sqI32[slot * SQ_I32 + 2] = w.segHead;
    r.sqI32[slot * SQ_I32 + 3] = nseg;
    const smask = this.segs - 1;
    for (let i = 0; i < nseg; i++) {
      const j = (w.segHead + i) & smask;
      r.segRegion[j] = req.segRegion[i]!;
      r.segOffset[j] = req.segOffset[i]!;
      r.segLen[j] = req.segLen[i]!;
    }
    w.segHead = (w.segHead + nseg) | 0;
    w.sqHead = (w.sqHead + 1) | 0;
    w.outstanding++;
    w.dirty = true;
    this.st.submitted++;
    return true;
  }
}

function copyRequest(req: IoRequest, epoch: number): Pending {
  const n = req.op === IoOp.READ || req.op === IoOp.WRITE ? req.segCount : 0;
  return {
    op: req.op,
    tag: req.tag,
    offset: req.offset,
    length: req.length,
    segCount: n,
    segRegion: req.segRegion.slice(0, n),
    segOffset: req.segOffset.slice(0, n),
    segLen: req.segLen.slice(0, n),
    epoch,
  };
}

/** EngineFactory for spec.kind "threads". */
export function createThreadsEngine(spec: EngineSpec, ctx: EngineContext): ThreadsEngine {
  if (spec.kind !== "threads")
    throw new Error(`createThreadsEngine: spec.kind must be "threads", got "${spec.kind}"`);
  return new ThreadsEngine(spec, ctx);
}

// ---------------------------------------------------------------------------
// Image probing

export interface ImageInfo {
  sizeBytes: number;
  /** 512, or 4096 when O_DIRECT on this file system needs it (block devices: the device's). */
  logicalBlockSize: number;
  physicalBlockSize: number;
  isBlockDevice: boolean;
}

function openError(path: string, direct: boolean, readOnly: boolean, e: unknown): Error {
  const code = (e as NodeJS.ErrnoException | null)?.code;
  const why =
    code === "ENOENT"
      ? "no such file"
      : code === "EACCES" || code === "EPERM"
        ? readOnly
          ? "permission denied"
          : "permission denied for read-write (open it read-only?)"
        : code === "EROFS"
          ? "read-only file system (open it read-only)"
          : code === "EINVAL" && direct
            ? "O_DIRECT is not supported here (use direct: false / cache=writeback)"
            : code === "EISDIR"
              ? "is a directory"
              : String((e as Error | null)?.message ?? e);
  return new Error(`image "${path}": cannot open${direct ? " with O_DIRECT" : ""}: ${why}`, { cause: e });
}

/** Read a decimal number from a sysfs file, or null. */
function sysfsNumber(file: string): number | null {
  try {
    const v = Number.parseInt(readFileSync(file, "utf8").trim(), 10);
    return Number.isFinite(v) ? v : null;
  } catch {
    return null;
  }
}

/** One aligned scratch buffer for O_DIRECT probes (WebAssembly memory is page aligned). */
let probeMem: Uint8Array | null = null;
function alignedScratch(): Uint8Array {
  probeMem ??= alignedBytes(65536);
  return probeMem;
}

/**
 * Size and block size of a disk image or block device, checked the way the
 * engines will open it. Refuses a size that is not a multiple of 512 (or of
 * the logical block size).
 */
export function openImageInfo(path: string, opts: { direct: boolean; readOnly: boolean }): ImageInfo {
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(path);
  } catch (e) {
    throw openError(path, opts.direct, opts.readOnly, e);
  }
  const isBlockDevice = st.isBlockDevice();
  if (!isBlockDevice && !st.isFile())
    throw new Error(`image "${path}" is neither a regular file nor a block device`);
  const flags = (opts.readOnly ? fsc.O_RDONLY : fsc.O_RDWR) | (opts.direct ? fsc.O_DIRECT : 0);
  let fd: number;
  try {
    fd = openSync(path, flags);
  } catch (e) {
    throw openError(path, opts.direct, opts.readOnly, e);
  }
  try {
    let sizeBytes: number;
    let logical = 512;
    let physical = 512;
    if (isBlockDevice) {
      // stat() says 0 for block devices and Node has no BLKGETSIZE64: ask sysfs.
      const name = basename(realpathSync(path));
      const sys = join("/sys/class/block", name);
      const sectors = sysfsNumber(join(sys, "size"));
      if (sectors === null) throw new Error(`image "${path}": cannot read the device size from ${sys}/size`);
      sizeBytes = sectors * 512;
      // Partitions have no queue/ directory of their own: it is their parent's.
      let queue = join(sys, "queue");
      if (!existsSync(queue)) {
        try {
          queue = join(dirname(realpathSync(sys)), "queue");
        } catch {}
      }
      logical = sysfsNumber(join(queue, "logical_block_size")) ?? 512;
      physical = sysfsNumber(join(queue, "physical_block_size")) ?? logical;
    } else {
      sizeBytes = fstatSync(fd).size;
      if (opts.direct && sizeBytes >= 512) {
        // O_DIRECT wants the file system's block size; try 512, then 4096.
        const buf = alignedScratch();
        logical = 0;
        for (const bs of [512, 4096]) {
          if (bs > sizeBytes) break;
          try {
            readSync(fd, buf, 0, bs, 0);
            logical = bs;
            break;
          } catch (e) {
            if ((e as NodeJS.ErrnoException).code !== "EINVAL") throw e;
          }
        }
        if (logical === 0)
          throw new Error(
            `image "${path}": O_DIRECT reads fail even 4096-aligned on this file system (use direct: false)`,
          );
      }
      physical = logical;
    }
    if (sizeBytes % 512 !== 0)
      throw new Error(
        `image "${path}" is ${sizeBytes} bytes, not a multiple of 512: virtio-blk counts capacity in 512-byte sectors (resize it to ${Math.ceil(sizeBytes / 512) * 512} bytes)`,
      );
    if (sizeBytes % logical !== 0)
      throw new Error(
        `image "${path}" is ${sizeBytes} bytes, not a multiple of its logical block size ${logical}${opts.direct ? " (O_DIRECT needs it)" : ""}`,
      );
    return {
      sizeBytes,
      logicalBlockSize: logical,
      physicalBlockSize: Math.max(physical, logical),
      isBlockDevice,
    };
  } finally {
    closeSync(fd);
  }
}

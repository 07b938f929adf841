/**
 * What the device does when the disk fails a request: QEMU's rerror/werror
 * policies, plus a request timeout. See docs/RELIABILITY.md.
 *
 *   report  the guest gets VIRTIO_BLK_S_IOERR (rerror default)
 *   ignore  the guest gets OK (reads return whatever the buffer held)
 *   stop    the device's queues pause: no IOThread pops any more; the failed
 *           requests are kept (not completed); the VMM hears "stopped" with
 *           the reason; device.resume() retries the kept requests in the
 *           order they were popped, then the queues run again
 *   enospc  stop on ENOSPC (and EDQUOT), report anything else (werror default)
 *
 * READ uses rerror; WRITE, FLUSH, DISCARD and WRITE_ZEROES use werror (as in
 * QEMU). A short READ/WRITE counts as EIO. Requests the device refuses by
 * itself (bad sector, wrong direction, read-only) are always reported: the
 * policies apply to what the engine failed, not to what the guest got wrong.
 *
 * Shared state (one SharedArrayBuffer per device, every IOThread maps it):
 *
 *   Int32 words                                    Float64 at byte 64
 *   0 pause generation: even = running, odd = stopped   sector of the reason
 *   1 reason generation (= the odd generation whose reason is below)
 *   2 errno  3 op (IoOp)  4 queue  5 IOThread index
 *   6 requests kept now  7 timed out  8 late completions dropped
 *   9 errors ignored     10 stops     11 requests retried
 *
 * The IOThread that fails a request under "stop" moves word 0 from even to
 * odd (compare-exchange: one winner per stop), writes the reason, then bumps
 * word 1; every IOThread reads word 0 once per loop and stops popping while
 * it is odd. The main thread waits on word 1 (Atomics.waitAsync) and emits
 * "stopped"; resume() moves word 0 to the next even value and wakes them.
 *
 * The IOThread's hot path pays nothing for this but one Atomics.load per
 * loop round (word 0); the policy is looked at only on the error branch.
 */
import { type BlkRequest, BlkStatus, type BlockEngine, IoOp, type SplitQueue } from "@vblk/core";

export const ERROR_POLICIES = ["report", "ignore", "stop", "enospc"] as const;
export type ErrorPolicy = (typeof ERROR_POLICIES)[number];

export const Policy = { REPORT: 0, IGNORE: 1, STOP: 2, ENOSPC: 3 } as const;

/** The number an IOThread uses for a policy name. */
export function policyCode(p: ErrorPolicy): number {
  return Policy[p.toUpperCase() as keyof typeof Policy];
}

export const ERRNO = { EIO: 5, EINVAL: 22, ENOSPC: 28, EROFS: 30, EDQUOT: 122, ETIMEDOUT: 110 } as const;
const ERRNO_NAME = new Map<number, string>(Object.entries(ERRNO).map(([k, v]) => [v, k]));

export function errnoName(errno: number): string {
  return ERRNO_NAME.get(errno) ?? `errno ${errno}`;
}

/** Validate a policy option; the message names the option and the allowed values. */
export function parseErrorPolicy(option: "rerror" | "werror", value: unknown): ErrorPolicy {
  if (typeof value !== "string" || !(ERROR_POLICIES as readonly string[]).includes(value))
    throw new Error(
      `${option}: unknown error policy ${JSON.stringify(value)}; allowed: ${ERROR_POLICIES.join(", ")}`,
    );
  return value as ErrorPolicy;
}

export function parseRequestTimeout(value: unknown): number {
  if (value === undefined) return 0;
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0)
    throw new Error(`requestTimeoutMs must be a number >= 0 (0 disables the timeout), got ${String(value)}`);
  return value;
}

/** What a policy does with one failed request. */
export const Action = { REPORT: 0, IGNORE: 1, STOP: 2 } as const;

export function decide(policy: number, errno: number): number {
  switch (policy) {
    case Policy.IGNORE:
      return Action.IGNORE;
    case Policy.STOP:
      return Action.STOP;
    case Policy.ENOSPC:
      return errno === ERRNO.ENOSPC || errno === ERRNO.EDQUOT ? Action.STOP : Action.REPORT;
    default:
      return Action.REPORT;
  }
}

/** Sent to every IOThread in its start message. */
export interface PolicyStart {
  rerror: number;
  werror: number;
  /** 0 = no timeout. */
  requestTimeoutMs: number;
  state: SharedArrayBuffer;
}

const W = {
  PAUSE: 0,
  REASON: 1,
  ERRNO: 2,
  OP: 3,
  QUEUE: 4,
  IOTHREAD: 5,
  KEPT: 6,
  TIMED_OUT: 7,
  LATE: 8,
  IGNORED: 9,
  STOPS: 10,
  RETRIED: 11,
} as const;
const STATE_BYTES = 80;
const SECTOR_F64 = 8;

const OP_NAMES = ["read", "write", "flush", "discard", "write-zeroes", "write-zeroes"] as const;

/** Why the device stopped (the "stopped" event's argument). */
export interface StopReason {
  errno: number;
  /** "ENOSPC", "EIO", ... */
  error: string;
  op: "read" | "write" | "flush" | "discard" | "write-zeroes";
  /** First sector of the failed request (0 for FLUSH). */
  sector: number;
  queue: number;
  iothread: number;
}

export interface PolicyCounters {
  /** Failed requests held by a stopped device right now. */
  kept: number;
  /** Requests completed with IOERR because they ran past requestTimeoutMs. */
  timedOut: number;
  /** Engine completions that arrived after their request had timed out (dropped). */
  lateCompletions: number;
  /** Failed requests completed OK by the "ignore" policy. */
  ignored: number;
  /** Times the device stopped. */
  stops: number;
  /** Kept requests retried by resume(). */
  retried: number;
}

/** The main thread's side: owns the shared state, hears stops, resumes. */
export class ErrorPolicyState {
  readonly buffer = new SharedArrayBuffer(STATE_BYTES);
  private readonly w = new Int32Array(this.buffer, 0, 16);
  private readonly f = new Float64Array(this.buffer);
  private watching = 0;
  private reported = 0;

  get stopped(): boolean {
    return (Atomics.load(this.w, W.PAUSE) & 1) === 1;
  }

  /** The reason of the current stop (undefined while running or before the reason is written). */
  reason(): StopReason | undefined {
    const g = Atomics.load(this.w, W.PAUSE);
    if ((g & 1) === 0 || Atomics.load(this.w, W.REASON) !== g) return undefined;
    const errno = this.w[W.ERRNO]!;
    return {
      errno,
      error: errnoName(errno),
      op: OP_NAMES[this.w[W.OP]!] ?? "write",
      sector: this.f[SECTOR_F64]!,
      queue: this.w[W.QUEUE]!,
      iothread: this.w[W.IOTHREAD]!,
    };
  }

  /** Leave a stop (resume). Returns false when the device was not stopped. */
  resume(): boolean {
    for (;;) {
      const g = Atomics.load(this.w, W.PAUSE);
      if ((g & 1) === 0) return false;
      if (Atomics.compareExchange(this.w, W.PAUSE, g, (g + 1) | 0) === g) return true;
    }
  }

  /** Before a start: a stop does not survive a reset. */
  clearForStart(): void {
    if (this.stopped) this.resume();
    Atomics.store(this.w, W.KEPT, 0);
  }

  counters(): PolicyCounters {
    return {
      kept: Atomics.load(this.w, W.KEPT),
      timedOut: Atomics.load(this.w, W.TIMED_OUT),
      lateCompletions: Atomics.load(this.w, W.LATE),
      ignored: Atomics.load(this.w, W.IGNORED),
      stops: Atomics.load(this.w, W.STOPS),
      retried: Atomics.load(this.w, W.RETRIED),
    };
  }

  /** Call onStop once per stop until unwatch() (waits on the reason word without blocking). */
  watch(onStop: (r: StopReason) => void): void {
    const token = ++this.watching;
    const loop = async () => {
      while (this.watching === token) {
        const seen = Atomics.load(this.w, W.REASON);
        if (seen !== this.reported && (seen & 1) === 1 && Atomics.load(this.w, W.PAUSE) === seen) {
          this.reported = seen;
          const r = this.reason();
          if (r !== undefined) onStop(r);
          continue;
        }
        const res = Atomics.waitAsync(this.w, W.REASON, seen, 250);
        if (res.async) await res.value;
      }
    };
    void loop();
  }

  unwatch(): void {
    this.watching++;
  }
}

/** Enough of a BlkRequest to retry it. */
interface Kept {
  lq: number;
  head: number;
  seq: number;
}

/** Bits of an engine tag: generation (timeouts only) | local queue | head. */
const GEN_SHIFT = 27;
const GEN_MASK = 0xf;
const LQ_MASK = 0x7ff;
export const MAX_TIMED_QUEUES = LQ_MASK + 1;

/** What the IOThread lends the handler. */
export interface PolicyHost {
  engine(): BlockEngine;
  queues(): SplitQueue[];
  reqs(): BlkRequest[][];
  /** Status byte + used element + mark the queue for publishing. */
  complete(lq: number, head: number, r: BlkRequest): void;
  iothread: number;
}

/**
 * The IOThread's side: decides on the error branch, keeps and retries
 * requests, watches the pause word, times out hung requests.
 */
export class IoErrorHandler {
  /** Read by the loop: pop nothing while true. */
  paused = false;
  readonly timeoutMs: number;
  /** Outstanding timed-out requests the engine may still complete. */
  zombies = 0;
  private readonly w: Int32Array;
  private readonly f: Float64Array;
  private readonly rerror: number;
  private readonly werror: number;
  private seenGen: number;
  private kept: Kept[] = [];
  /** Pop order of each (queue, head), for in-order retries. */
  private seq: Float64Array[] = [];
  private nextSeq = 1;
  // timeouts
  private issued: Float64Array[] = [];
  private gens: Uint8Array[] = [];
  private readonly zombieTags = new Set<number>();
  private nextScan = 0;

  constructor(
    p: PolicyStart,
    private readonly host: PolicyHost,
  ) {
    this.w = new Int32Array(p.state, 0, 16);
    this.f = new Float64Array(p.state);
    this.rerror = p.rerror;
    this.werror = p.werror;
    this.timeoutMs = p.requestTimeoutMs;
    this.seenGen = Atomics.load(this.w, W.PAUSE);
    this.paused = (this.seenGen & 1) === 1;
    const qs = host.queues();
    if (this.timeoutMs > 0 && qs.length > MAX_TIMED_QUEUES)
      throw new Error(`requestTimeoutMs: an IOThread may serve at most ${MAX_TIMED_QUEUES} queues`);
    for (const q of qs) {
      this.seq.push(new Float64Array(q.size));
      if (this.timeoutMs > 0) {
        this.issued.push(new Float64Array(q.size));
        this.gens.push(new Uint8Array(q.size));
      }
    }
  }

  /** The pause word, read once per loop round. */
  get pauseWord(): Int32Array {
    return this.w;
  }

  /** Note the pop order of a request going to the engine. */
  popped(lq: number, head: number): void {
    this.seq[lq]![head] = this.nextSeq++;
  }

  /** Call when word 0 changed (the loop compares it with seenGeneration). */
  get seenGeneration(): number {
    return this.seenGen;
  }

  pauseChanged(): void {
    const g = Atomics.load(this.w, W.PAUSE);
    this.seenGen = g;
    if ((g & 1) === 1) {
      this.paused = true;
      return;
    }
    this.paused = false;
    if (this.kept.length > 0) this.retry();
  }

  /** resume(): re-submit the kept requests in pop order. */
  private retry(): void {
    const list = this.kept.sort((a, b) => a.seq - b.seq);
    this.kept = [];
    const engine = this.host.engine();
    const reqs = this.host.reqs();
    for (const k of list) {
      const r = reqs[k.lq]![k.head]!;
      if (this.timeoutMs > 0) this.issue(k.lq, k.head, r);
      engine.enqueue(r);
    }
    engine.submit();
    Atomics.sub(this.w, W.KEPT, list.length);
    Atomics.add(this.w, W.RETRIED, list.length);
  }

  /**
   * The error branch of onComplete (status is IOERR). Returns true when the
   * request is kept (the caller must not complete it).
   */
  onError(lq: number, head: number, r: BlkRequest, result: number): boolean {
    const errno = result < 0 ? -result : ERRNO.EIO;
    const action = decide(r.op === IoOp.READ ? this.rerror : this.werror, errno);
    if (action === Action.REPORT) return false;
    if (action === Action.IGNORE) {
      r.status = BlkStatus.OK;
      r.usedLen = r.op === IoOp.READ ? r.length + 1 : 1;
      Atomics.add(this.w, W.IGNORED, 1);
      return false;
    }
    this.kept.push({ lq, head, seq: this.seq[lq]![head]! });
    Atomics.add(this.w, W.KEPT, 1);
    if (!this.paused) {
      this.paused = true;
      for (;;) {
        const g = Atomics.load(this.w, W.PAUSE);
        if ((g & 1) === 1) {
          // Already stopped by another IOThread: pauseChanged() resyncs next round.
          this.seenGen = -1;
          break;
        }
        if (Atomics.compareExchange(this.w, W.PAUSE, g, (g + 1) | 0) !== g) continue;
        this.seenGen = (g + 1) | 0;
        this.w[W.ERRNO] = errno;
        this.w[W.OP] = r.op;
        this.w[W.QUEUE] = this.host.queues()[lq]!.index;
        this.w[W.IOTHREAD] = this.host.iothread;
        this.f[SECTOR_F64] = r.op === IoOp.FLUSH ? 0 : r.offset / 512;
        Atomics.add(this.w, W.STOPS, 1);
        Atomics.store(this.w, W.REASON, this.seenGen);
        Atomics.notify(this.w, W.REASON);
        break;
      }
    }
    return true;
  }

  /** The device is stopping (reset): kept requests complete with IOERR so nothing stays in flight. */
  failKept(): number {
    const n = this.kept.length;
    if (n === 0) return 0;
    const reqs = this.host.reqs();
    for (const k of this.kept.sort((a, b) => a.seq - b.seq)) {
      const r = reqs[k.lq]![k.head]!;
      r.status = BlkStatus.IOERR;
      r.usedLen = 1;
      this.host.complete(k.lq, k.head, r);
    }
    this.kept = [];
    Atomics.sub(this.w, W.KEPT, n);
    return n;
  }

  // ---- request timeout -----------------------------------------------------

  /** Stamp a request going to the engine and give it its tag (with a generation). */
  issue(lq: number, head: number, r: BlkRequest): void {
    let gen = this.gens[lq]![head]!;
    let tag = (gen << GEN_SHIFT) | (lq << 16) | head;
    if (this.zombieTags.size > 0) {
      // A timed-out request with this tag may still come back: pick another generation.
      for (let i = 0; i <= GEN_MASK && this.zombieTags.has(tag); i++) {
        gen = (gen + 1) & GEN_MASK;
        tag = (gen << GEN_SHIFT) | (lq << 16) | head;
      }
      this.gens[lq]![head] = gen;
    }
    r.tag = tag;
    this.issued[lq]![head] = this.now;
  }

  /** Time of the current loop round (ms), updated by tick(). */
  now = 0;

  /**
   * Completions when timeouts are on: drop late ones, strip the generation.
   * Returns the tag onComplete understands, or -1 to drop.
   */
  accept(tag: number): number {
    const lq = (tag >>> 16) & LQ_MASK;
    const head = tag & 0xffff;
    const r = this.host.reqs()[lq]?.[head];
    if (r === undefined || r.tag !== tag || this.issued[lq]![head] === 0) {
      if (this.zombieTags.delete(tag)) this.zombies--;
      Atomics.add(this.w, W.LATE, 1);
      return -1;
    }
    this.issued[lq]![head] = 0;
    return (lq << 16) | head;
  }

  /** Once per loop round: time out requests outstanding for longer than timeoutMs. */
  tick(): void {
    const now = performance.now();
    this.now = now;
    if (now < this.nextScan) return;
    this.nextScan = now + Math.max(1, this.timeoutMs / 4);
    const limit = now - this.timeoutMs;
    const reqs = this.host.reqs();
    for (let lq = 0; lq < this.issued.length; lq++) {
      const iss = this.issued[lq]!;
      for (let head = 0; head < iss.length; head++) {
        const t = iss[head]!;
        if (t === 0 || t > limit) continue;
        iss[head] = 0;
        const r = reqs[lq]![head]!;
        const tag = r.tag;
        const engine = this.host.engine();
        if (!(engine.cancel?.(tag) ?? false)) {
          this.zombieTags.add(tag);
          this.zombies++;
        }
        this.gens[lq]![head] = (this.gens[lq]![head]! + 1) & GEN_MASK;
        r.status = BlkStatus.IOERR;
        r.usedLen = 1;
        Atomics.add(this.w, W.TIMED_OUT, 1);
        this.host.complete(lq, head, r);
      }
    }
  }

  /** How long an idle IOThread may sleep and still time requests out on time. */
  sleepLimitMs(): number {
    return this.timeoutMs > 0 ? Math.max(1, Math.ceil(this.timeoutMs / 4)) : 1000;
  }
}

import { type NativeEngineBinding, requireNative } from "./native.js";

export type EngineKind = "io_uring" | "libaio";

export interface NativeEngineOptions {
  kind: EngineKind;
  /** From openBlockFile. The engine does NOT close it unless `ownsFd`. */
  fd: number;
  /** Close `fd` when the engine closes. (If the constructor throws, the fd is left open.) */
  ownsFd?: boolean;
  /** The fd was opened O_DIRECT: misaligned buffers go through an aligned bounce buffer. */
  direct: boolean;
  /** Logical block size: the alignment unit for O_DIRECT. */
  blockSize: number;
  /** Discard / write-zeroes via BLKDISCARD / BLKZEROOUT instead of fallocate. */
  isBlockDevice: boolean;
  /**
   * Guest memory regions (views over SharedArrayBuffers); iovecs name a region
   * by index. The engine holds each region's backing store until it closes,
   * so the memory stays valid even if JS drops the views.
   */
  regions: Uint8Array[];
  /** Max requests in the kernel at once (default 256, max 4096). More than that are queued inside the engine and submitted as slots free up: never refused. */
  depth?: number;
  /** Max iovecs per request (default and max 1024 = IOV_MAX). */
  maxIov?: number;
  /** Records per submit() (default max(depth, 1024)). */
  sqCapacity?: number;
  /** Iovec entries in `iov` (default max(4 * sqCapacity, maxIov)). */
  iovCapacity?: number;
  /** Completions per reap() (default sqCapacity). */
  cqCapacity?: number;
  /**
   * Make reap() also clear the completionFd counter whenever it harvested
   * kernel completions (one read(2), ~3-4 us CPU per reap here). Default
   * false: a Poller drains the fd when it wakes and waitCompletions() drains
   * it before sleeping, so leaving it costs at most one spurious wake-up.
   */
  drainOnReap?: boolean;
}

export interface NativeEngineStats {
  /** Requests accepted by submit() (including those that failed validation). */
  submitted: number;
  /** Completions handed out by reap()/waitCompletions(). */
  completed: number;
  /** Submitting syscalls made (io_uring_enter / io_submit). */
  submitCalls: number;
  /** Requests that went through an aligned bounce buffer. */
  bounced: number;
  bouncedBytes: number;
  /** Completions with a negative result. */
  errors: number;
  /** Requests done synchronously on the calling thread (ioctls, fallbacks). */
  syncOps: number;
}

/**
 * One I/O engine instance (io_uring or Linux AIO, raw syscalls); owned by
 * exactly one thread (an IOThread).
 *
 * Submitting: write request records into {@link sq} (SQ_STRIDE doubles each:
 * op, tag, disk byte offset, byte length, iov count, first iov index) and
 * iovecs into {@link iov} (IOV_STRIDE doubles each: region index, byte offset
 * in region, byte length), then call {@link submit} once for the batch: one
 * syscall, no per-request N-API call. Reads and writes go straight between
 * the disk and guest memory (zero copy), except misaligned O_DIRECT ones,
 * which bounce.
 *
 * Completing: {@link reap} (non-blocking, no syscall when nothing is ready)
 * or {@link waitCompletions} fill {@link cq} with (tag, result) pairs;
 * result is bytes transferred or -errno. Tags are uint32 but cq is an
 * Int32Array: use `cq[2 * i] >>> 0` for tags >= 2^31.
 *
 * Every iovec is checked against its region at submit time; a bad one
 * completes its request with -EFAULT and no memory is touched.
 */
export class NativeEngine {
  readonly kind: EngineKind;
  /**
   * eventfd signalled when completions are ready (io_uring:
   * IORING_REGISTER_EVENTFD; libaio: IOCB_FLAG_RESFD on every iocb; also
   * written for completions made without the kernel). Add it to a Poller,
   * which clears it on wake-up. It may still be set after reap() took the
   * completions (unless `drainOnReap`): a wake-up may then find nothing,
   * but a completion never goes unsignalled.
   */
  readonly completionFd: number;
  /** Request records, SQ_STRIDE doubles each; sqCapacity records. */
  readonly sq: Float64Array;
  /** Iovecs, IOV_STRIDE doubles each; iovCapacity entries. */
  readonly iov: Float64Array;
  /** Completions as (tag, result) pairs; cqCapacity pairs. */
  readonly cq: Int32Array;
  readonly sqCapacity: number;
  readonly iovCapacity: number;
  readonly cqCapacity: number;
  /** Max requests in the kernel at once. */
  readonly depth: number;
  readonly #n: NativeEngineBinding;

  constructor(opts: NativeEngineOptions) {
    const b = requireNative("NativeEngine");
    this.#n = new b.NativeEngine(opts);
    this.kind = this.#n.kind;
    this.completionFd = this.#n.completionFd;
    this.sq = new Float64Array(this.#n.sqBuffer);
    this.iov = new Float64Array(this.#n.iovBuffer);
    this.cq = new Int32Array(this.#n.cqBuffer);
    this.sqCapacity = this.#n.sqCapacity;
    this.iovCapacity = this.#n.iovCapacity;
    this.cqCapacity = this.#n.cqCapacity;
    this.depth = this.#n.depth;
  }

  /**
   * Hand records [0, count) of `sq` to the kernel with one io_uring_enter /
   * io_submit (together with internally queued work that now fits). Requests
   * beyond `depth` wait inside the engine. Errors found at submit time become
   * completions with -errno; this only throws for a closed engine or a count
   * above sqCapacity.
   */
  submit(count: number): void {
    this.#n.submit(count);
  }

  /**
   * Non-blocking: move up to cqCapacity finished completions into `cq` and
   * return how many. io_uring: reads the mmapped CQ ring; libaio: reads the
   * AIO completion ring in userspace. No syscall, except to submit requests
   * that were waiting for the slots just freed (and the completionFd drain
   * with `drainOnReap`).
   */
  reap(): number {
    return this.#n.reap();
  }

  /** Block until at least `minComplete` completions (capped at what is outstanding) or `timeoutMs` (-1 forever); returns the count put in `cq`. */
  waitCompletions(minComplete: number, timeoutMs: number): number {
    return this.#n.waitCompletions(minComplete, timeoutMs);
  }

  /**
   * io_uring only: watch `fd` (an eventfd) for readability inside the ring
   * (a multishot POLL_ADD), so that sleep() also wakes when it is written.
   * After a reap()/sleep(), takeReady() lists the tokens of fds that fired
   * (each eventfd is drained). Watching a token again replaces its fd.
   */
  canWatch(): boolean {
    return this.#n.canWatch();
  }

  watchFd(fd: number, token: number): void {
    this.#n.watchFd(fd, token);
  }

  unwatchFd(token: number): void {
    this.#n.unwatchFd(token);
  }

  /** Tokens of watched fds that became readable since the last call. */
  takeReady(): number[] {
    return this.#n.takeReady();
  }

  /** Watches the kernel refused (no multishot poll): fall back to epoll. */
  watchErrors(): number {
    return this.#n.watchErrors();
  }

  /**
   * Sleep in the kernel until a completion or a watched fd (or `timeoutMs`,
   * -1 forever), then reap into `cq` like reap(). io_uring: one
   * io_uring_enter(GETEVENTS), the way fio waits. Returns at once when
   * nothing is in flight or watched.
   */
  sleep(timeoutMs: number): number {
    return this.#n.sleep(timeoutMs);
  }

  /** Requests submitted and not yet returned by reap()/waitCompletions(). */
  inflight(): number {
    return this.#n.inflight();
  }

  stats(): NativeEngineStats {
    return this.#n.stats();
  }

  /** One line: ring sizes, setup flags that the kernel accepted, reap method. */
  describe(): string {
    return this.#n.describe();
  }

  /**
   * Wait (up to 10 s) for in-flight I/O, then release the ring / AIO context,
   * bounce buffers, the eventfd (and the fd if `ownsFd`). Requests still
   * queued inside the engine are dropped. Idempotent; other methods throw
   * Error('engine closed') afterwards.
   */
  close(): void {
    this.#n.close();
  }
}

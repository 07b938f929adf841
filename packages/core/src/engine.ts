/**
 * The interface between an IOThread and whatever does the I/O. An engine is
 * owned by one thread. The IOThread hands it requests (enqueue), submits a
 * batch in one call (submit), and collects completions (reap). Data moves
 * straight between the disk and guest memory: a request's segments name
 * guest memory regions and offsets, never copies.
 *
 *   IOThread                         engine
 *   pop -> parse -> enqueue(req) --> [queued]
 *                   submit()     --> one syscall / one message for the batch
 *   reap(cb)     <-- cb(tag, result)  result = bytes, or -errno
 */
import type { Doorbell } from "./doorbell.js";
import type { GuestMemory } from "./guest-memory.js";

/** Operations an engine performs (numbers shared with the native addon). */
export const IoOp = {
  READ: 0,
  WRITE: 1,
  FLUSH: 2,
  DISCARD: 3,
  WRITE_ZEROES: 4,
  /** Write zeroes; the engine may deallocate (punch a hole). */
  WRITE_ZEROES_UNMAP: 5,
} as const;
export type IoOpCode = (typeof IoOp)[keyof typeof IoOp];

/** One request as an engine sees it. Segments point into guest memory. */
export interface IoRequest {
  op: number;
  /** Opaque number returned with the completion. */
  tag: number;
  /** Byte offset on the disk. */
  offset: number;
  /** Byte length (sum of segments for READ/WRITE; the range for DISCARD/WRITE_ZEROES). */
  length: number;
  segCount: number;
  segRegion: Int32Array;
  segOffset: Float64Array;
  segLen: Uint32Array;
}

export interface EngineStats {
  submitted: number;
  completed: number;
  /** Calls that handed a batch over (syscalls for native engines). */
  submitCalls: number;
  /** Requests that went through an aligned bounce buffer. */
  bounced: number;
  errors: number;
}

/** How an idle IOThread learns about completions. */
export type CompletionWait =
  /** Completions are ready as soon as submit() returns (null, memory). */
  | { kind: "sync" }
  /** An eventfd becomes readable (native engines). */
  | { kind: "fd"; fd: number }
  /** The engine rings the IOThread's doorbell (JS worker pools). */
  | { kind: "doorbell" };

export interface BlockEngine {
  readonly name: string;
  readonly wait: CompletionWait;
  enqueue(req: IoRequest): void;
  submit(): void;
  reap(onComplete: (tag: number, result: number) => void): number;
  /** Requests enqueued and not yet reaped. */
  readonly inflight: number;
  stats(): EngineStats;
  /** Release everything; waits (bounded) for in-flight I/O. Later calls throw. */
  close(): void;
  /**
   * Optional (error policies, docs/RELIABILITY.md): forget a request the
   * device gave up on (requestTimeoutMs). Returns true when the engine will
   * never report it; false when it may still complete (the device then drops
   * that late completion).
   */
  cancel?(tag: number): boolean;
  /**
   * Optional: the longest (ms) an idle IOThread may sleep before it calls
   * reap() again, for engines whose completions become due with time and
   * ring nobody (the fault engine's added latency). Undefined: no limit.
   */
  nextDueMs?(): number | undefined;
  /**
   * Optional (io_uring): the IOThread may sleep inside the engine, the way
   * fio waits, instead of in epoll on the completion eventfd.
   */
  readonly kernelWait?: KernelWait;
}

/** Sleeping inside the engine with the IOThread's eventfds watched there. */
export interface KernelWait {
  /** Wake sleep() when this eventfd is written (it is drained); `token` names it. */
  watch(fd: number, token: number): void;
  unwatch(token: number): void;
  /**
   * Sleep until a completion, a watched fd or timeoutMs (-1 forever);
   * completions go to onComplete as in reap(). Returns the tokens of the
   * watched fds that fired.
   */
  sleep(timeoutMs: number, onComplete: (tag: number, result: number) => void): number[];
  /** The kernel refused a watch: use epoll instead. */
  broken(): boolean;
}

/** The disk as the device presents it. */
export interface DiskInfo {
  sizeBytes: number;
  logicalBlockSize: number;
  physicalBlockSize: number;
  readOnly: boolean;
  /** The engine can deallocate ranges (DISCARD). */
  discard: boolean;
  /** The engine can write zeroes efficiently. */
  writeZeroes: boolean;
}

/** What an engine factory receives inside its IOThread. */
export interface EngineContext {
  mem: GuestMemory;
  /** The owning IOThread's doorbell (for engines whose completions arrive from other threads). */
  doorbell: Doorbell;
  /** IOThread index (for names). */
  iothread: number;
}

/**
 * A serializable engine description: created on the main thread, sent to
 * each IOThread, which builds its own engine instance from it.
 */
export type EngineSpec =
  | { kind: "null"; sizeBytes: number; blockSize?: number }
  | { kind: "memory"; buffer: SharedArrayBuffer; blockSize?: number; readOnly?: boolean }
  | {
      kind: "threads" | "io_uring" | "libaio";
      path: string;
      direct: boolean;
      readOnly: boolean;
      sizeBytes: number;
      blockSize: number;
      physicalBlockSize?: number;
      isBlockDevice: boolean;
      /** threads engine: I/O worker threads per IOThread (default 4). */
      workers?: number;
      /** native engines: max in flight (default 256). */
      depth?: number;
    }
  | FaultEngineSpec;

// ---- fault injection (tests; packages/iothread/src/fault-engine.ts) --------

/**
 * One fault rule of the fault-injecting engine. A request matches when its op
 * and sector range match; the rule then fires (subject to nth/count/enabled)
 * and does `action` instead of (error, hang) or on top of (short, delay) the
 * inner engine's I/O.
 */
export interface FaultRule {
  /** Operation to match (default "any"). */
  op?: "read" | "write" | "flush" | "discard" | "write-zeroes" | "any";
  /** Match requests touching 512-byte sectors [sector, sector + sectors); sectors defaults to 1. FLUSH never matches a sector rule. */
  sector?: number;
  sectors?: number;
  /** Fire first on the nth matching request (1-based); then `count` times in all (default 1 with nth). */
  nth?: number;
  /** Fire at most this many times (default unlimited, or 1 with nth). */
  count?: number;
  /** Start enabled (default true); toggle from any thread with FaultControl. */
  enabled?: boolean;
  /**
   * error: complete with -errno without doing the I/O; short: do only `bytes`
   * of a READ/WRITE and report that; delay: add `delayMs` before the
   * completion is reported; hang: never complete (until cancelled or closed).
   */
  action: "error" | "short" | "delay" | "hang";
  /** error: an errno number or name (default "EIO"). */
  errno?: number | "EIO" | "ENOSPC" | "EROFS" | "EINVAL" | "EDQUOT" | "ETIMEDOUT";
  /** short: bytes actually transferred (default: half the request, rounded down to 512). */
  bytes?: number;
  /** delay: milliseconds (default 10). */
  delayMs?: number;
}

/** The fault engine's spec: another engine wrapped with rules. */
export interface FaultEngineSpec {
  kind: "fault";
  inner: EngineSpec;
  faults: FaultRule[];
  /** Rule counters shared by every IOThread (made by faultEngineSpec()). */
  state?: SharedArrayBuffer;
}

export type EngineFactory = (spec: EngineSpec, ctx: EngineContext) => BlockEngine;

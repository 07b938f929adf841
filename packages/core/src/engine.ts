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
    };

export type EngineFactory = (spec: EngineSpec, ctx: EngineContext) => BlockEngine;

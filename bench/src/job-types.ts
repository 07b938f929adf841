/**
 * What the main thread and a job worker exchange.
 *
 * Control block (one SharedArrayBuffer per run):
 *
 *   Int32 words                               Float64 from byte PROGRESS_BASE
 *   [0] arrived at phase 0 (jobs)             per job, PROGRESS_FIELDS each:
 *   [1] arrived at phase 1                      [0] read ios  [1] write ios
 *   [2] go: phases released so far              [2] read bytes [3] write bytes
 *   [3] stop: 1 = finish now (SIGINT, error)    [4] state (JobState)
 *   [4] jobs finished                           [5] fraction done (0..1)
 *
 * A job arrives at phase p (add 1 to arrived[p]) and sleeps until go > p:
 * the main thread releases every job at once (the start barrier), and for
 * --verify it runs its between-phases hook before releasing the read phase.
 */
import type { LatHistogram } from "./lat-histogram.js";

export const W_ARRIVED = 0; // + phase
export const W_GO = 2;
export const W_STOP = 3;
export const W_DONE = 4;
export const PROGRESS_BASE = 64;
export const PROGRESS_FIELDS = 8;

export const JobState = {
  starting: 0,
  ramp: 1,
  running: 2,
  verifyWrite: 3,
  verifyRead: 4,
  done: 5,
  waiting: 6,
} as const;

export function controlBuffer(numjobs: number): SharedArrayBuffer {
  return new SharedArrayBuffer(PROGRESS_BASE + numjobs * PROGRESS_FIELDS * 8);
}

export type JobPhaseKind = "run" | "verify-write" | "verify-read";

export interface JobTask {
  job: number;
  /** A DriverQueueDesc from @vblk/iothread (structured-clone friendly). */
  desc: unknown;
  control: SharedArrayBuffer;
  /** Guest-physical address of this job's iodepth data buffers (bs each). */
  dataGpa: number;
  bs: number;
  iodepth: number;
  rw: "read" | "write" | "randread" | "randwrite" | "rw" | "randrw";
  rwmixread: number;
  /** Byte range the job's offsets fall in: [rangeStart, rangeStart + rangeBytes). */
  rangeStart: number;
  rangeBytes: number;
  /** PRNG seed of this job (offsets, read/write mix). */
  seed: number;
  /** Seed written into verify headers (the run's --seed). */
  verifySeed: number;
  rampMs: number;
  /** Infinity = no time limit. */
  runtimeMs: number;
  timeBased: boolean;
  /** I/Os to do (per phase): size/bs unless number_ios; Infinity with time_based. */
  totalIos: number;
  verify: boolean;
  driverPollNs: number;
  /** Adaptive spin cap (haltpoll's rule), 0 = a fixed driverPollNs window. */
  driverPollMaxNs: number;
  /** Publish after this many new requests (fio's iodepth_batch_submit); 0 = all that fit. */
  iodepthBatchSubmit: number;
  cpus: number[] | undefined;
}

/** Raw numbers of one direction, as a job returns them. */
export interface DirRaw {
  ios: number;
  bytes: number;
  /** Measured window length (ms) over the phases this direction ran in. */
  runtimeMs: number;
  errors: number;
  slat: LatHistogram;
  clat: LatHistogram;
  lat: LatHistogram;
  /** Completed I/Os in each whole second of the measured window. */
  perSecIos: number[];
  perSecBytes: number[];
}

export interface JobResult {
  job: number;
  read: DirRaw;
  write: DirRaw;
  /** Kicks the driver sent and times it slept waiting for an interrupt. */
  kicks: number;
  sleeps: number;
  /** fio-like error number (0 = fine, 5 = EIO, 84 = EILSEQ verify failure). */
  error: number;
  errorMessages: string[];
  verifyBlocks: number;
  verifyErrors: number;
  /** Set when the job ended early (stop flag). */
  stopped: boolean;
  warnings: string[];
}

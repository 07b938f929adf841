import { Worker } from "node:worker_threads";
import type { DriverQueueDesc } from "@vblk/iothread";

export interface JobResult {
  queue: number;
  completed: number;
  errors: number;
  badData: number;
  badLen: number;
  iops: number;
  kicks: number;
  sleeps: number;
}

export interface JobSpec {
  desc: DriverQueueDesc;
  dataGpa: number;
  depth: number;
  count: number;
  mode: "read" | "write" | "verify";
  firstSector: number;
  span: number;
  bs: number;
  pollNs?: number;
  tag?: number;
  /** Visit blocks in a scattered order (k * 7919 mod span) instead of sequentially. */
  scatter?: boolean;
}

/** Run one driver job per spec, each in its own worker thread (a vCPU). */
export function runJobs(specs: JobSpec[], timeoutMs = 60_000): Promise<JobResult[]> {
  return Promise.all(
    specs.map(
      (s) =>
        new Promise<JobResult>((resolve, reject) => {
          const w = new Worker(new URL("./driver-job.mjs", import.meta.url), { workerData: s });
          const timer = setTimeout(() => {
            void w.terminate();
            reject(new Error(`job on queue ${s.desc.queue} did not finish in ${timeoutMs} ms`));
          }, timeoutMs);
          w.once("message", (m: JobResult) => {
            clearTimeout(timer);
            resolve(m);
            void w.terminate();
          });
          w.once("error", (e) => {
            clearTimeout(timer);
            reject(e);
          });
        }),
    ),
  );
}

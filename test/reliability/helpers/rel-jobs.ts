/**
 * Start rel-driver.mjs jobs (one worker thread per queue) that run until
 * stopped, and collect what they saw.
 */
import { Worker } from "node:worker_threads";
import type { DriverQueueDesc } from "@vblk/iothread";

export interface RelJobSpec {
  desc: DriverQueueDesc;
  dataGpa: number;
  depth: number;
  firstBlock: number;
  blocks: number;
  maxBlocks?: number;
  writePct?: number;
  flushEvery?: number;
  seed?: number;
}

export interface RelJobResult {
  queue: number;
  completed: number;
  reads: number;
  writes: number;
  flushes: number;
  errors: number;
  verifyErrors: number;
  blocksVerified: number;
  bogus: number;
  stalls: number;
  outstanding: number;
  firstError: string;
}

export interface RelJobs {
  /** Completions so far, per job. */
  progress(): number[];
  /** Ask every job to stop; resolves with their results (bounded). */
  stop(timeoutMs?: number): Promise<RelJobResult[]>;
  readonly workers: Worker[];
}

export function startRelJobs(specs: RelJobSpec[]): RelJobs {
  const ctl = new Int32Array(new SharedArrayBuffer(4 * (1 + specs.length)));
  const workers: Worker[] = [];
  const results = specs.map((s, slot) => {
    const w = new Worker(new URL("./rel-driver.mjs", import.meta.url), {
      workerData: { ...s, ctl: ctl.buffer, slot, seed: s.seed ?? 1 + slot * 7919 },
    });
    workers.push(w);
    return new Promise<RelJobResult>((resolve, reject) => {
      w.once("message", (m: RelJobResult) => resolve(m));
      w.once("error", reject);
      w.once("exit", (c) =>
        reject(new Error(`driver job on queue ${s.desc.queue} exited (${c}) without a result`)),
      );
    });
  });
  for (const r of results) r.catch(() => {});
  return {
    workers,
    progress: () => specs.map((_, i) => Atomics.load(ctl, 1 + i)),
    async stop(timeoutMs = 10_000) {
      Atomics.store(ctl, 0, 1);
      let timer: NodeJS.Timeout | undefined;
      try {
        return await Promise.race([
          Promise.all(results),
          new Promise<never>((_, rej) => {
            timer = setTimeout(
              () => rej(new Error(`driver jobs did not stop within ${timeoutMs} ms`)),
              timeoutMs,
            );
          }),
        ]);
      } finally {
        clearTimeout(timer);
        await Promise.all(workers.map((w) => w.terminate()));
      }
    },
  };
}

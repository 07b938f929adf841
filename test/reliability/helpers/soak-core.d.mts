// Types for soak-core.mjs.
export interface SoakSample {
  t: number;
  rssMiB: number;
  completed: number;
  iops: number;
  needsReset: string | null;
}
export interface SoakResult {
  engine: string;
  seconds: number;
  queues: number;
  iothreads: number;
  completed: number;
  reads: number;
  writes: number;
  flushes: number;
  iops: number;
  blocksVerified: number;
  verifyErrors: number;
  errors: number;
  bogus: number;
  stalls: number;
  firstError: string;
  needsReset: string | null;
  rssBeforeMiB: number;
  rssStartMiB: number;
  rssEndMiB: number;
  rssMaxMiB: number;
  samples: SoakSample[];
}
export declare function runSoak(o: {
  seconds: number;
  sampleEveryMs?: number;
  engine?: string;
  diskMiB?: number;
  depth?: number;
  onSample?: (s: SoakSample) => void;
}): Promise<SoakResult>;

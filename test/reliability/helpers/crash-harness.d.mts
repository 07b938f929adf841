// Types for crash-harness.mjs.
export declare function runCrashRounds(o: {
  rounds: number;
  minMs?: number;
  maxMs?: number;
  blocks?: number;
  engine?: string;
  log?: (m: string) => void;
}): Promise<{
  rounds: number;
  engines: string[];
  flushes: number;
  covered: number;
  blocksChecked: number;
  meanKillMs: number;
}>;

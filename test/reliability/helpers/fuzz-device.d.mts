// Types for fuzz-device.mjs.
export declare function assertDeviceFuzz(o: {
  numRuns: number;
  seed?: number;
}): Promise<{ runs: number; outcomes: Record<string, number> }>;

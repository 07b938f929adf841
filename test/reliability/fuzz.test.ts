/**
 * Fuzzing the device side with fast-check (short CI runs; long runs:
 * `npm run fuzz -- --runs N`, docs/RELIABILITY.md). Legal streams written
 * into guest memory, then mutated with hostile values. Set VBLK_FUZZ_SEED to
 * replay a failure (fast-check prints the seed and the shrunk case).
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  geometryArb,
  guardedDisk,
  guardedMemory,
  type Outcomes,
  runGeometryCase,
  runStepCase,
  streamArb,
  tally,
} from "./helpers/fuzz-core.mjs";
import { assertDeviceFuzz } from "./helpers/fuzz-device.mjs";

const seed = process.env.VBLK_FUZZ_SEED !== undefined ? Number(process.env.VBLK_FUZZ_SEED) : undefined;
const opts = (numRuns: number) => ({ numRuns, ...(seed !== undefined ? { seed } : {}) });

describe("fuzz", () => {
  it("in process (SplitQueue + parseBlkRequest + MemoryEngine): 500 mutated streams", () => {
    const g = guardedMemory();
    const d = guardedDisk();
    const out: Outcomes = {};
    let verified = 0;
    fc.assert(
      fc.property(streamArb, (s) => {
        const r = runStepCase(g, d, s);
        tally(out, r.outcome);
        verified += r.verified;
      }),
      opts(500),
    );
    // It explored: clean runs, several malformed-input classes, legal requests checked.
    expect(out.OK).toBeGreaterThan(0);
    expect(Object.keys(out).length).toBeGreaterThan(4);
    expect(verified).toBeGreaterThan(300);
  });

  it("hostile queue sizes and ring addresses over random ring bytes: 300 cases", () => {
    const g = guardedMemory();
    const d = guardedDisk();
    const out: Outcomes = {};
    fc.assert(
      fc.property(geometryArb, (c) => {
        tally(out, runGeometryCase(g, d, c).outcome);
      }),
      opts(300),
    );
    expect(out["ctor:BAD_QUEUE_SIZE"]).toBeGreaterThan(0);
  });

  it("through a real VirtioBlkDevice (2 IOThreads), byte for byte against the reference: 40 streams", async () => {
    const r = await assertDeviceFuzz(opts(40));
    expect(r.runs).toBeGreaterThanOrEqual(40);
  });
});

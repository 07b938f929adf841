/**
 * Crash test: a child process runs the device (io_uring, else libaio, else
 * threads; O_DIRECT) and a writer that logs, after each completed FLUSH, the
 * writes acknowledged before it; the parent kills it with SIGKILL at random
 * moments and checks every logged write is on the image. Long runs:
 * `node test/reliability/helpers/crash-harness.mjs --rounds N`.
 */
import { describe, expect, it } from "vitest";
import { runCrashRounds } from "./helpers/crash-harness.mjs";

describe("crash (kill -9) durability", () => {
  it("10 rounds: every write acknowledged before a completed FLUSH survives SIGKILL", async () => {
    const r = await runCrashRounds({ rounds: 10, minMs: 30, maxMs: 500 });
    console.log(`crash test: ${JSON.stringify(r)}`);
    expect(r.rounds).toBe(10);
    expect(r.engines.length).toBeGreaterThan(0);
    expect(r.flushes).toBeGreaterThan(10);
    expect(r.blocksChecked).toBeGreaterThan(100);
  }, 120_000);
});

/**
 * The soak's CI version: 30 s of mixed random I/O with verification over 4
 * queues / 2 IOThreads (`npm run soak -- --minutes N` for long runs).
 */
import { describe, expect, it } from "vitest";
import { runSoak } from "./helpers/soak-core.mjs";

describe("soak", () => {
  it("30 s, 4 queues / 2 IOThreads: zero verify errors, RSS flat within a generous bound", async () => {
    const r = await runSoak({ seconds: 30, sampleEveryMs: 3000, diskMiB: 64 });
    const { samples, ...summary } = r;
    console.log(
      `soak: ${JSON.stringify(summary)}; RSS MiB ${samples.map((s) => s.rssMiB.toFixed(0)).join(" ")}`,
    );
    expect(r.needsReset).toBeNull();
    expect(r.verifyErrors, r.firstError).toBe(0);
    expect(r.errors, r.firstError).toBe(0);
    expect(r.bogus, r.firstError).toBe(0);
    expect(r.completed).toBeGreaterThan(1000);
    expect(r.blocksVerified).toBeGreaterThan(1000);
    expect(r.rssEndMiB - r.rssStartMiB).toBeLessThan(128);
  }, 90_000);
});

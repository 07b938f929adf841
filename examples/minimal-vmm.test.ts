import { describe, expect, it } from "vitest";
import { runMinimalVmm } from "./dist/minimal-vmm.js";

describe("examples/minimal-vmm", () => {
  it("negotiates through mmio, reads through two IOThreads and takes interrupts", async () => {
    const lines: string[] = [];
    const r = await runMinimalVmm(undefined, (s) => lines.push(s));
    expect(r.magicOk).toBe(true);
    expect(r.deviceId).toBe(2);
    expect(r.capacitySectors).toBe((8 << 20) / 512);
    expect(r.reads).toHaveLength(6);
    for (const x of r.reads) expect(x.text).toBe(`hello from sector ${x.sector}`);
    expect(r.counters.queues.map((q) => q.reads)).toEqual([3, 3]);
    expect(r.counters.queues.every((q) => q.interrupts > 0)).toBe(true);
    expect(lines.join("\n")).toMatch(/DRIVER_OK/);
  });
});

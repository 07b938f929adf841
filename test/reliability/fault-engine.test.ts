/**
 * The fault-injecting engine on its own (over the memory engine, in
 * process), and the IOThread's request-timeout bookkeeping with an engine
 * that cannot cancel (late completions are dropped, tags never collide).
 */
import {
  type BlkRequest,
  BlkStatus,
  type BlockEngine,
  type FaultRule,
  GuestMemory,
  IoOp,
  type IoRequest,
  MemoryEngine,
  type SplitQueue,
} from "@vblk/core";
import { ERRNO, FaultControl, FaultEngine, faultEngineSpec, IoErrorHandler, Policy } from "@vblk/iothread";
import { describe, expect, it } from "vitest";

function req(op: number, tag: number, sector: number, len: number, gpa = 0): IoRequest {
  return {
    op,
    tag,
    offset: sector * 512,
    length: len,
    segCount: len > 0 ? 1 : 0,
    segRegion: Int32Array.of(0),
    segOffset: Float64Array.of(gpa),
    segLen: Uint32Array.of(len),
  };
}

function rig(rules: FaultRule[]) {
  const mem = GuestMemory.allocate(1 << 20);
  const disk = new SharedArrayBuffer(1 << 20);
  const spec = faultEngineSpec({ kind: "memory", buffer: disk }, rules);
  const e = new FaultEngine(spec, new MemoryEngine(disk, mem));
  const got = new Map<number, number>();
  const reap = () => e.reap((t, r) => got.set(t, r));
  return { mem, disk: new Uint8Array(disk), e, ctl: new FaultControl(spec), got, reap };
}

describe("fault engine", () => {
  it("fails chosen sectors with the chosen errno; FLUSH never matches a sector rule", () => {
    const { e, got, reap } = rig([{ sector: 10, sectors: 2, action: "error", errno: "ENOSPC" }]);
    e.enqueue(req(IoOp.WRITE, 1, 8, 1024)); // sectors 8, 9: no overlap
    e.enqueue(req(IoOp.WRITE, 2, 9, 1024)); // 9, 10: overlaps
    e.enqueue(req(IoOp.READ, 3, 11, 512));
    e.enqueue(req(IoOp.FLUSH, 4, 0, 0));
    e.submit();
    expect(e.inflight).toBe(4);
    expect(reap()).toBe(4);
    expect([...got.entries()].sort((a, b) => a[0] - b[0])).toEqual([
      [1, 1024],
      [2, -ERRNO.ENOSPC],
      [3, -ERRNO.ENOSPC],
      [4, 0],
    ]);
    expect(e.inflight).toBe(0);
    expect(e.stats().errors).toBe(2);
  });

  it("nth and count are device-wide (shared state), rules switch on and off", () => {
    const { e, got, reap, ctl } = rig([
      { op: "read", nth: 2, count: 2, action: "error" },
      { op: "write", action: "error", enabled: false },
    ]);
    for (let t = 1; t <= 5; t++) e.enqueue(req(IoOp.READ, t, 0, 512));
    e.enqueue(req(IoOp.WRITE, 6, 0, 512));
    reap();
    expect([1, 2, 3, 4, 5, 6].map((t) => got.get(t))).toEqual([512, -ERRNO.EIO, -ERRNO.EIO, 512, 512, 512]);
    expect(ctl.matched(0)).toBe(5);
    expect(ctl.fired(0)).toBe(2);
    ctl.enable(1);
    e.enqueue(req(IoOp.WRITE, 7, 0, 512));
    reap();
    expect(got.get(7)).toBe(-ERRNO.EIO);
    // Another instance over the same state sees the counters.
    const other = new FaultControl(faultEngineSpec({ kind: "null", sizeBytes: 1 }, []));
    expect(() => other.enable(0)).toThrow(/out of range/);
  });

  it("short READ/WRITE move only `bytes` and report them", () => {
    const { e, got, reap, mem, disk } = rig([{ op: "write", action: "short", bytes: 1024 }]);
    mem.slice(0, 4096).fill(7);
    e.enqueue(req(IoOp.WRITE, 1, 0, 4096));
    reap();
    expect(got.get(1)).toBe(1024);
    expect(disk.subarray(0, 1024).every((b) => b === 7)).toBe(true);
    expect(disk.subarray(1024, 4096).every((b) => b === 0)).toBe(true);
  });

  it("delay holds a completion until it is due; nextDueMs says how long to sleep", async () => {
    const { e, got, reap } = rig([{ op: "flush", action: "delay", delayMs: 60 }]);
    e.enqueue(req(IoOp.FLUSH, 9, 0, 0));
    e.submit();
    expect(reap()).toBe(0);
    expect(e.inflight).toBe(1);
    const due = e.nextDueMs()!;
    expect(due).toBeGreaterThan(30);
    expect(due).toBeLessThanOrEqual(60);
    await new Promise((r) => setTimeout(r, 70));
    expect(reap()).toBe(1);
    expect(got.get(9)).toBe(0);
    expect(e.nextDueMs()).toBeUndefined();
  });

  it("a hung request stays in flight until cancelled", () => {
    const { e, reap } = rig([{ nth: 1, action: "hang" }]);
    e.enqueue(req(IoOp.READ, 5, 0, 512));
    e.enqueue(req(IoOp.READ, 6, 0, 512));
    expect(reap()).toBe(1);
    expect(e.inflight).toBe(1);
    expect(e.cancel(6)).toBe(false); // not ours any more
    expect(e.cancel(5)).toBe(true);
    expect(e.inflight).toBe(0);
  });
});

describe("request timeout bookkeeping (IoErrorHandler)", () => {
  it("times out, drops the late completion, and gives the reused head a new tag", async () => {
    const state = new SharedArrayBuffer(80);
    const r0 = { tag: 0, op: IoOp.READ, status: 0, usedLen: 0, length: 4096 } as unknown as BlkRequest;
    const reqs = [[] as BlkRequest[]];
    reqs[0]![3] = r0;
    const completed: number[] = [];
    const engine = { inflight: 1 } as unknown as BlockEngine; // no cancel(): the late completion will come
    const h = new IoErrorHandler(
      { rerror: Policy.REPORT, werror: Policy.ENOSPC, requestTimeoutMs: 20, state },
      {
        engine: () => engine,
        queues: () => [{ index: 0, size: 8 } as SplitQueue],
        reqs: () => reqs,
        complete: (_lq, head, r) => completed.push(head, r.status),
        iothread: 0,
      },
    );
    h.tick();
    h.issue(0, 3, r0);
    const oldTag = r0.tag;
    expect(oldTag).toBe(3);
    await new Promise((r) => setTimeout(r, 30));
    h.tick();
    expect(completed).toEqual([3, BlkStatus.IOERR]);
    expect(h.zombies).toBe(1);
    // The guest reuses head 3 at once: the new request gets another tag.
    h.issue(0, 3, r0);
    expect(r0.tag).not.toBe(oldTag);
    expect(h.accept(oldTag)).toBe(-1); // the late completion of the first one: dropped
    expect(h.zombies).toBe(0);
    expect(h.accept(r0.tag)).toBe(3); // the second one completes normally
    const w = new Int32Array(state);
    expect(w[7]).toBe(1); // timed out
    expect(w[8]).toBe(1); // late completions dropped
  });
});

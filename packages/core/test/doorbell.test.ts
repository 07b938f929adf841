import { Worker } from "node:worker_threads";
import { describe, expect, it } from "vitest";
import { DOORBELL_BYTES, Doorbell } from "../dist/index.js";

const WORKER = new URL("./helpers/doorbell-worker.mjs", import.meta.url);

interface Msg {
  type: string;
  [k: string]: unknown;
}

function start(workerData: Record<string, unknown>): { w: Worker; next: (type: string) => Promise<Msg> } {
  const w = new Worker(WORKER, { workerData });
  const inbox: Msg[] = [];
  const waiting: Array<(m: Msg) => void> = [];
  let failure: unknown = null;
  w.on("message", (m: Msg) => {
    const f = waiting.shift();
    if (f) f(m);
    else inbox.push(m);
  });
  w.on("error", (e) => {
    failure = e;
  });
  const next = async (type: string): Promise<Msg> => {
    const m =
      inbox.shift() ??
      (await new Promise<Msg>((resolve, reject) => {
        const t = setTimeout(
          () => reject(new Error(`no "${type}" from the worker in 10 s (${failure})`)),
          10_000,
        );
        waiting.push((msg) => {
          clearTimeout(t);
          resolve(msg);
        });
      }));
    expect(m.type).toBe(type);
    return m;
  };
  return { w, next };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("Doorbell, one thread", () => {
  it("ring() bumps the sequence number; a stale snapshot does not sleep", () => {
    const d = Doorbell.create();
    const s = d.snapshot();
    d.ring();
    expect(d.snapshot()).toBe(s + 1);
    const t0 = performance.now();
    expect(d.wait(s, 5000)).toBe("not-equal");
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(d.sleeping).toBe(0);
  });

  it("wait() times out when nobody rings, and leaves no sleeper behind", () => {
    const d = Doorbell.create();
    const t0 = performance.now();
    expect(d.wait(d.snapshot(), 30)).toBe("timed-out");
    expect(performance.now() - t0).toBeGreaterThanOrEqual(25);
    expect(d.sleeping).toBe(0);
    expect(d.wait(d.snapshot(), 0)).toBe("timed-out");
  });

  it("two doorbells in one buffer are independent", () => {
    const buf = new SharedArrayBuffer(2 * DOORBELL_BYTES);
    const a = new Doorbell(buf, 0);
    const b = new Doorbell(buf, 2);
    a.ring();
    a.ring();
    b.ring();
    expect([a.snapshot(), b.snapshot()]).toEqual([2, 1]);
    expect(Doorbell.from(b.describe()).snapshot()).toBe(1);
  });

  it("rejects an index that does not leave room for its two words", () => {
    const buf = new SharedArrayBuffer(16);
    expect(() => new Doorbell(buf, -1)).toThrow(RangeError);
    expect(() => new Doorbell(buf, 3)).toThrow(/doorbell index 3 out of range/);
    expect(() => new Doorbell(buf, 2)).not.toThrow();
  });

  it("waitAsync: stale snapshot, timeout, and a ring from a timer on the same thread", async () => {
    const d = Doorbell.create();
    const s = d.snapshot();
    d.ring();
    expect(await d.waitAsync(s, 1000)).toBe("not-equal");
    expect(await d.waitAsync(d.snapshot(), 20)).toBe("timed-out");
    expect(d.sleeping).toBe(0);
    const p = d.waitAsync(d.snapshot(), 5000);
    expect(d.sleeping).toBe(1);
    setTimeout(() => d.ring(), 10);
    expect(await p).toBe("ok");
    expect(d.sleeping).toBe(0);
  });
});

describe("Doorbell across threads", () => {
  it("ring() wakes a waiter in another worker thread", async () => {
    const d = Doorbell.create();
    const { w, next } = start({ mode: "wait-once", bell: d.describe(), timeoutMs: 8000 });
    try {
      await next("ready");
      const deadline = Date.now() + 5000;
      while (d.sleeping === 0 && Date.now() < deadline) await sleep(1);
      expect(d.sleeping).toBe(1);
      d.ring();
      const done = await next("done");
      expect(done.result).toBe("ok");
      expect(done.ms as number).toBeLessThan(8000);
      expect(done.sleepingAfter).toBe(0);
    } finally {
      await w.terminate();
    }
  });

  it("a worker's ring() wakes this thread blocked in wait()", async () => {
    const d = Doorbell.create();
    const s = d.snapshot();
    const { w, next } = start({ mode: "ring-when-asleep", bell: d.describe() });
    try {
      await sleep(0);
      expect(d.wait(s, 8000)).toBe("ok");
      await next("rang");
    } finally {
      await w.terminate();
    }
  });

  it("waitAsync() is woken by a worker without blocking the event loop", async () => {
    const d = Doorbell.create();
    const s = d.snapshot();
    const { w, next } = start({ mode: "ring-when-asleep", bell: d.describe(), delayMs: 30 });
    try {
      let ticks = 0;
      const timer = setInterval(() => ticks++, 1);
      const r = await d.waitAsync(s, 8000);
      clearInterval(timer);
      expect(r).toBe("ok");
      expect(ticks).toBeGreaterThan(0); // the loop kept running while we waited
      await next("rang");
    } finally {
      await w.terminate();
    }
  });

  it("no lost wake-up over 10^4 ring/wait alternations", async () => {
    const n = 10_000;
    const ping = Doorbell.create();
    const pong = Doorbell.create();
    const counters = new SharedArrayBuffer(8);
    const ctr = new Int32Array(counters);
    const timeoutMs = 2000;
    const { w, next } = start({
      mode: "pong",
      ping: ping.describe(),
      pong: pong.describe(),
      counters,
      n,
      timeoutMs,
    });
    try {
      await sleep(0);
      let timeouts = 0;
      let sleeps = 0;
      const t0 = performance.now();
      for (let i = 1; i <= n; i++) {
        Atomics.store(ctr, 0, i);
        ping.ring();
        for (;;) {
          const s = pong.snapshot();
          if (Atomics.load(ctr, 1) >= i) break;
          sleeps++;
          if (pong.wait(s, timeoutMs) === "timed-out") timeouts++;
          if (performance.now() - t0 > 30_000) throw new Error(`stuck at ${i}`);
        }
      }
      const done = await next("done");
      expect(timeouts).toBe(0);
      expect(done.timeouts).toBe(0);
      expect(Atomics.load(ctr, 1)).toBe(n);
      // Both sides really slept (the test exercised wait/notify, not just spinning).
      expect(sleeps).toBeGreaterThan(n / 10);
      expect(done.sleeps as number).toBeGreaterThan(n / 10);
      expect(ping.sleeping + pong.sleeping).toBe(0);
    } finally {
      await w.terminate();
    }
  });
});

// Worker side of doorbell.test.ts. Plain .mjs: Node 20 workers cannot load .ts.
import { parentPort, workerData } from "node:worker_threads";
import { Doorbell } from "../../dist/index.js";

const { mode } = workerData;

function spin(iters) {
  let x = 0;
  for (let i = 0; i < iters; i++) x += i;
  return x;
}

if (mode === "wait-once") {
  // Sleep on `bell` until the parent rings it.
  const bell = Doorbell.from(workerData.bell);
  const s = bell.snapshot();
  parentPort.postMessage({ type: "ready" });
  const t0 = performance.now();
  const r = bell.wait(s, workerData.timeoutMs);
  parentPort.postMessage({
    type: "done",
    result: r,
    ms: performance.now() - t0,
    sleepingAfter: bell.sleeping,
  });
} else if (mode === "ring-when-asleep") {
  // Ring `bell` once the parent is asleep on it (or after a delay).
  const bell = Doorbell.from(workerData.bell);
  const deadline = performance.now() + 5000;
  if (workerData.delayMs !== undefined) {
    const t = performance.now() + workerData.delayMs;
    while (performance.now() < t) spin(100);
  } else {
    while (bell.sleeping === 0 && performance.now() < deadline) spin(100);
  }
  bell.ring();
  parentPort.postMessage({ type: "rang" });
} else if (mode === "pong") {
  // Ping-pong: wait for ctr[0] >= i on `ping`, then publish ctr[1] = i and ring `pong`.
  const ping = Doorbell.from(workerData.ping);
  const pong = Doorbell.from(workerData.pong);
  const ctr = new Int32Array(workerData.counters);
  const n = workerData.n;
  let timeouts = 0;
  let sleeps = 0;
  for (let i = 1; i <= n; i++) {
    for (;;) {
      const s = ping.snapshot();
      if (Atomics.load(ctr, 0) >= i) break;
      if ((i & 3) === 1) spin(i % 200); // widen the window between check and sleep
      sleeps++;
      if (ping.wait(s, workerData.timeoutMs) === "timed-out") timeouts++;
    }
    if ((i & 7) === 3) spin(i % 300);
    Atomics.store(ctr, 1, i);
    pong.ring();
  }
  parentPort.postMessage({ type: "done", timeouts, sleeps });
}

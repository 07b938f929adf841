// Device side of two-threads.test.ts, in a worker (plain .mjs: Node 20
// workers cannot load .ts). Polls its queue for `pollMs` after the last work,
// then enables notifications and sleeps on the kick doorbell; interrupts the
// driver through the call doorbell when needsInterrupt() says so.
import { parentPort, workerData } from "node:worker_threads";
import {
  BlkRequest,
  Doorbell,
  finishBlkRequest,
  GuestMemory,
  MemoryEngine,
  NullEngine,
  parseBlkRequest,
  SplitQueue,
  writeBlkStatus,
} from "../../dist/index.js";

const d = workerData;
const ctl = new Int32Array(d.control); // [0] stop
const stats = { popped: 0, batches: 0, interrupts: 0, sleeps: 0, wakeTimeouts: 0, maxBatch: 0 };

try {
  const mem = new GuestMemory(d.regions);
  const q = new SplitQueue(mem, { ...d.ring, eventIdx: d.eventIdx, indirect: true });
  const kick = Doorbell.from(d.kick);
  const call = Doorbell.from(d.call);
  const engine = d.engine.kind === "memory" ? new MemoryEngine(d.engine.buffer, mem) : new NullEngine();
  const reqs = Array.from({ length: d.ring.size }, () => new BlkRequest());
  const complete = (tag, result) => {
    const r = reqs[tag];
    finishBlkRequest(r, result);
    writeBlkStatus(r, mem);
    q.push(r.head, r.usedLen);
  };

  const drain = () => {
    let n = 0;
    for (let ch = q.pop(); ch !== null; ch = q.pop()) {
      const r = reqs[ch.head];
      if (parseBlkRequest(ch, mem, d.params, r)) {
        r.tag = ch.head;
        engine.enqueue(r);
      } else {
        writeBlkStatus(r, mem);
        q.push(r.head, r.usedLen);
      }
      n++;
    }
    if (n > 0) {
      engine.submit();
      engine.reap(complete);
      q.publish();
      if (q.needsInterrupt()) {
        call.ring();
        stats.interrupts++;
      }
      stats.popped += n;
      stats.batches++;
      if (n > stats.maxBatch) stats.maxBatch = n;
    }
    return n;
  };

  parentPort.postMessage({ type: "ready" });
  q.disableNotification();
  let idleSince = performance.now();
  for (;;) {
    if (drain() > 0) {
      idleSince = performance.now();
      continue;
    }
    if (Atomics.load(ctl, 0) !== 0) break;
    if (performance.now() - idleSince < d.pollMs) continue;
    // Going to sleep: snapshot first, then enable and re-check (the race window).
    const s = kick.snapshot();
    if (q.enableNotification()) {
      q.disableNotification();
      continue;
    }
    if (Atomics.load(ctl, 0) !== 0) break;
    stats.sleeps++;
    if (kick.wait(s, 2000) === "timed-out") stats.wakeTimeouts++;
    q.disableNotification();
    idleSince = performance.now();
  }
  parentPort.postMessage({
    type: "done",
    stats,
    nextAvail: q.nextAvail,
    nextUsed: q.nextUsed,
    inflight: q.inflight,
  });
} catch (e) {
  parentPort.postMessage({ type: "error", name: e?.name, code: e?.code, message: String(e?.message ?? e) });
}

/**
 * The IOThread: a worker thread that owns some virtqueues of one device and
 * one engine instance. Nothing else touches its queues while it runs.
 *
 *   +-------------------------------- loop ---------------------------------+
 *   | drain: for each owned queue with work: notifications off, pop all,    |
 *   |        parse, enqueue on the engine (or answer at once)               |
 *   | submit: one engine.submit() for everything popped this round          |
 *   | reap:   engine completions -> status byte -> used ring                |
 *   | publish used idx; interrupt each queue once if EVENT_IDX says so      |
 *   | idle:   poll (adaptive window, like QEMU's poll-max-ns), then         |
 *   |         notifications on, re-check, sleep on ONE wait: the doorbell   |
 *   |         (kicks + JS engine completions) or epoll (kick eventfds +     |
 *   |         the native engine's completion eventfd)                       |
 *   +-----------------------------------------------------------------------+
 *
 * Control from the main thread goes through a SharedArrayBuffer (the loop
 * never returns to the event loop while running): cmd = STOP makes it finish
 * in-flight I/O, publish it, and return; then it answers "stopped".
 */
import { parentPort, workerData } from "node:worker_threads";
import {
  type BlkParams,
  BlkProtocolError,
  BlkRequest,
  type BlockEngine,
  Doorbell,
  finishBlkRequest,
  GuestMemory,
  IoOp,
  type KernelWait,
  parseBlkRequest,
  SplitQueue,
  VirtqueueError,
  writeBlkStatus,
} from "@vblk/core";
import { IoThreadCounter as IC, IOTHREAD_FIELDS, QueueCounter as QC, QUEUE_FIELDS } from "./counters.js";
import { createEngine } from "./engine-registry.js";
import { IoErrorHandler, Policy, type PolicyStart } from "./error-policy.js";
import {
  Cmd,
  CTL_CMD,
  CTL_STATE,
  type FromIoThread,
  type IoThreadInit,
  type StartMessage,
  State,
} from "./iothread-protocol.js";
import { makeNotify } from "./notifier.js";

const init = workerData as IoThreadInit;
const port = parentPort!;
const ctl = new Int32Array(init.control);
const cnt = new Float64Array(init.counters);
let mem = new GuestMemory(init.memory);
const wakeBell = init.wake.kind === "doorbell" ? Doorbell.from(init.wake) : null;
let engine: BlockEngine = undefined as unknown as BlockEngine;

// Native helpers (epoll, eventfd, affinity) only when this IOThread needs them.
type NativeMod = typeof import("@vblk/backend-libaio");
let native: NativeMod | null = null;
let poller: InstanceType<NativeMod["Poller"]> | null = null;
/** Set when the IOThread sleeps inside the engine (io_uring) rather than in epoll. */
let kw: KernelWait | null = null;
const TOKEN_WAKE = 0x7fff_fff0;
/** A sleep longer than this many poll windows means the queues were idle. */
const IDLE_FACTOR = 32;
const TOKEN_COMPLETION = 0x7fff_fff1;

function post(m: FromIoThread): void {
  port.postMessage(m);
}

async function setup(): Promise<void> {
  if (init.wake.kind === "eventfd" || (init.cpus && init.cpus.length > 0)) {
    native = await import("@vblk/backend-libaio");
    if (!native.nativeAvailable()) throw new Error(`native addon unavailable: ${native.nativeLoadError()}`);
  }
  if (init.cpus && init.cpus.length > 0) native!.setThreadAffinity(init.cpus);
  await openEngine();
}

/** (Re)build the engine over the current guest memory and hook its completions into the wait. */
async function openEngine(): Promise<void> {
  if (engine !== undefined) {
    if (poller !== null && engine.wait.kind === "fd") poller.remove(engine.wait.fd);
    engine.close();
  }
  engine = await createEngine(init.engine, {
    mem,
    doorbell: wakeBell ?? Doorbell.create(),
    iothread: init.index,
  });
  if (init.wake.kind === "eventfd") {
    if (poller === null) {
      poller = new native!.Poller();
      poller.add(init.wake.fd, TOKEN_WAKE);
    }
    if (engine.wait.kind === "fd") poller.add(engine.wait.fd, TOKEN_COMPLETION);
    // io_uring: sleep in the ring itself (io_uring_enter, as fio waits) with
    // our eventfds watched there (QEMU's fdmon-io_uring does the same). The
    // epoll set stays registered as the fallback.
    // (Queue kick fds are watched by start(), which always follows.)
    kw = init.sleepInEngine && engine.kernelWait !== undefined ? engine.kernelWait : null;
    kw?.watch(init.wake.fd, TOKEN_WAKE);
  } else if (engine.wait.kind === "fd") {
    throw new Error(
      `engine ${engine.name} completes on an eventfd: the IOThread must wait in epoll (wake kind eventfd)`,
    );
  } else if (engine.wait.kind === "doorbell" && wakeBell === null) {
    throw new Error(
      `engine ${engine.name} completes on a doorbell: the IOThread must wait on it (wake kind doorbell)`,
    );
  }
}

// ---- per-start state ----------------------------------------------------
let queues: SplitQueue[] = [];
let reqs: BlkRequest[][] = [];
let calls: (() => void)[] = [];
let dirty: Uint8Array = new Uint8Array(0);
let qbase: number[] = [];
let blk!: BlkParams;
let broken = false;
let kickFds: number[] = [];
// ---- error policies (error-policy.ts): rerror/werror, stop/resume, request timeout
let ph: IoErrorHandler = undefined as unknown as IoErrorHandler;
/** engine.reap's callback: onComplete, or onCompleteTimed when requestTimeoutMs > 0. */
let reapCb: (tag: number, result: number) => void = onComplete;
/** The one place a request goes back to the guest: status byte, used element, queue marked for publish. */
function completeReq(lq: number, head: number, r: BlkRequest): void {
  writeBlkStatus(r, mem);
  queues[lq]!.push(head, r.usedLen);
  dirty[lq] = 1;
}
function onCompleteTimed(tag: number, result: number): void {
  const t = ph.accept(tag);
  if (t >= 0) onComplete(t, result);
}
/** How long an idle IOThread may sleep (timeouts and delayed engine completions need it back). */
function sleepMs(): number {
  const due = engine.nextDueMs?.();
  const lim = ph.sleepLimitMs();
  return due === undefined ? lim : Math.max(0, Math.min(due, lim));
}

function onComplete(tag: number, result: number): void {
  const lq = tag >>> 16;
  const head = tag & 0xffff;
  const r = reqs[lq]![head]!;
  finishBlkRequest(r, result);
  if (r.status !== 0) {
    cnt[qbase[lq]! + QC.errors]!++;
    if (ph.onError(lq, head, r, result)) return; // kept by the "stop" policy
  }
  completeReq(lq, head, r);
}

/** Pop everything queue lq has; returns how many went to the engine. */
function drain(lq: number): number {
  const q = queues[lq]!;
  const pool = reqs[lq]!;
  const b = qbase[lq]!;
  let toEngine = 0;
  let n = 0;
  for (;;) {
    const chain = q.pop();
    if (chain === null) break;
    n++;
    const head = chain.head;
    let r = pool[head];
    if (r === undefined) {
      r = new BlkRequest();
      r.queue = q.index;
      pool[head] = r;
    }
    const io = parseBlkRequest(chain, mem, blk, r);
    if (io) {
      r.tag = (lq << 16) | head;
      ph.popped(lq, head);
      if (ph.timeoutMs > 0) ph.issue(lq, head, r);
      engine.enqueue(r);
      toEngine++;
      const op = r.op;
      if (op === IoOp.READ) {
        cnt[b + QC.reads]!++;
        cnt[b + QC.bytesRead]! += r.length;
      } else if (op === IoOp.WRITE) {
        cnt[b + QC.writes]!++;
        cnt[b + QC.bytesWritten]! += r.length;
      } else if (op === IoOp.FLUSH) cnt[b + QC.flushes]!++;
      else cnt[b + QC.others]!++;
    } else {
      if (r.status !== 0) cnt[b + QC.errors]!++;
      else cnt[b + QC.others]!++;
      completeReq(lq, head, r);
    }
  }
  if (n > 0) {
    cnt[b + QC.requests]! += n;
    cnt[b + QC.batches]!++;
    if (n > cnt[b + QC.maxBatch]!) cnt[b + QC.maxBatch] = n;
  }
  return toEngine;
}

function publishAll(): void {
  for (let lq = 0; lq < queues.length; lq++) {
    if (dirty[lq] === 0) continue;
    dirty[lq] = 0;
    const q = queues[lq]!;
    q.publish();
    if (q.needsInterrupt()) {
      calls[lq]!();
      cnt[qbase[lq]! + QC.interrupts]!++;
    }
  }
}

function fail(lq: number, e: unknown): void {
  // A malformed ring or request: stop serving (QEMU marks the device broken)
  // and let the main thread set DEVICE_NEEDS_RESET. In-flight I/O still
  // completes so nothing leaks.
  broken = true;
  Atomics.store(ctl, CTL_STATE, State.BROKEN);
  cnt[IC.errors]!++;
  const code =
    e instanceof VirtqueueError ? e.code : e instanceof BlkProtocolError ? "BLK_PROTOCOL" : "INTERNAL";
  const message = e instanceof Error ? e.message : String(e);
  post({ type: "needs-reset", queue: queues[lq]?.index ?? -1, code, message });
}

/** Per-queue kick counters for the wait tokens that fired (token = queue slot). */
function countKicks(tokens: ArrayLike<number>, n: number): void {
  for (let i = 0; i < n; i++) {
    const t = tokens[i]!;
    if (t < kickFds.length) cnt[qbase[t]! + QC.kicks]!++;
  }
}

function nowNs(): number {
  return performance.now() * 1e6;
}

/** The loop. Returns when cmd != RUN, after in-flight I/O has completed. */
function run(): void {
  const nq = queues.length;
  const pollMax = init.pollMaxNs;
  const pollFloor = Math.floor(pollMax / 8);
  let pollNs = pollMax;
  const grow = init.pollGrow;
  const shrink = init.pollShrink;
  // Spin while native I/O is in flight only with pollEngine (see the idle step).
  const pollInflight = init.pollEngine || engine.wait.kind !== "fd";
  let busyStart = nowNs();
  cnt[IC.pollNs] = pollNs;
  const pauseWord = ph.pauseWord;
  const timed = ph.timeoutMs > 0;
  for (;;) {
    cnt[IC.loops]!++;
    // error policies: a stop/resume of the device; hung requests
    if (Atomics.load(pauseWord, 0) !== ph.seenGeneration) ph.pauseChanged();
    if (timed) ph.tick();
    // 1. drain, 2. submit
    let submitted = 0;
    if (!broken && !ph.paused) {
      for (let lq = 0; lq < nq; lq++) {
        const q = queues[lq]!;
        try {
          if (q.hasPending()) {
            q.disableNotification();
            submitted += drain(lq);
          }
        } catch (e) {
          fail(lq, e);
          break;
        }
      }
    }
    if (submitted > 0) {
      engine.submit();
      cnt[IC.submits]!++;
    }
    // 3. reap, 4. publish + interrupt
    if (engine.inflight > 0) cnt[IC.reaped]! += engine.reap(reapCb);
    publishAll();
    if (submitted > 0) continue;
    const cmd = Atomics.load(ctl, CTL_CMD);
    if (cmd !== Cmd.RUN) {
      if (cmd === Cmd.FAULT) throw new Error("injected fault");
      break;
    }

    // 5. idle: poll for a while, then sleep.
    const t0 = nowNs();
    let hit = false;
    // While I/O is in the kernel (an eventfd engine), do not spin unless
    // pollEngine: a spinning vCPU delays the disk interrupt it waits for
    // (docs/BENCHMARKS.md, "polling and the disk's IRQ"). Sleep until the
    // completion or a kick instead, like fio does.
    if (pollNs > 0 && (pollInflight || engine.inflight === 0) && !broken && !ph.paused) {
      // poll begin: we are watching the rings, so no kicks (QEMU does the same)
      for (let lq = 0; lq < nq; lq++) queues[lq]!.disableNotification();
      const until = t0 + pollNs;
      // The clock is read every 256 spins: performance.now() costs ~55 ns
      // here and allocates, so reading it every spin means a scavenge every
      // few ms (a latency tail).
      let spins = 0;
      do {
        if (engine.inflight > 0 && engine.reap(reapCb) > 0) {
          hit = true;
          break;
        }
        let any = false;
        for (let lq = 0; lq < nq; lq++) {
          try {
            if (queues[lq]!.hasPending()) {
              any = true;
              break;
            }
          } catch (e) {
            fail(lq, e);
          }
        }
        if (any) {
          hit = true;
          break;
        }
      } while ((++spins & 255) !== 0 || (nowNs() < until && Atomics.load(ctl, CTL_CMD) === Cmd.RUN));
    }
    if (hit) {
      cnt[IC.pollHits]!++;
      if (pollNs < pollMax) {
        pollNs = Math.min(pollMax, pollNs * grow);
        cnt[IC.pollNs] = pollNs;
      }
      publishAll();
      continue;
    }
    if (Atomics.load(ctl, CTL_CMD) !== Cmd.RUN) break;
    // Sleep: notifications on, re-check (the race window), one wait.
    const snap = wakeBell !== null ? wakeBell.snapshot() : 0;
    let more = false;
    if (!broken && !ph.paused) {
      for (let lq = 0; lq < nq; lq++) {
        try {
          if (queues[lq]!.enableNotification()) more = true;
        } catch (e) {
          fail(lq, e);
        }
      }
    }
    if (more) continue;
    if (engine.inflight > 0 && engine.reap(reapCb) > 0) {
      publishAll();
      continue;
    }
    if (Atomics.load(pauseWord, 0) !== ph.seenGeneration) continue;
    const t1 = nowNs();
    cnt[IC.busyNs]! += t1 - busyStart;
    cnt[IC.pollMisses]!++;
    if (wakeBell !== null) {
      wakeBell.wait(snap, sleepMs());
    } else if (kw !== null) {
      const ready = kw.sleep(sleepMs(), reapCb);
      countKicks(ready, ready.length);
      if (kw.broken()) {
        console.warn(
          `IOThread ${init.name}: io_uring refused to watch eventfds; sleeping in epoll from now on`,
        );
        kw = null;
      }
    } else {
      const n = poller!.wait(sleepMs());
      countKicks(poller!.ready, n);
    }
    cnt[IC.wakeups]!++;
    busyStart = nowNs();
    const blockNs = busyStart - t1;
    cnt[IC.idleNs]! += blockNs;
    // Adaptive polling. QEMU grows its window only when a sleep was shorter
    // than poll-max-ns; here a futex/epoll wake-up alone costs ~50 us
    // (facts.md), so under load every sleep looks longer than poll-max and
    // the window would collapse to 0 exactly when it matters. So: hits grow
    // the window (above), a sleep that shows the queues really were idle
    // (longer than IDLE_FACTOR x poll-max) shrinks it, never below a floor
    // of poll-max/8; shorter sleeps grow it again.
    if (pollMax > 0) {
      if (blockNs > pollMax * IDLE_FACTOR)
        pollNs = Math.max(pollFloor, shrink > 0 ? Math.floor(pollNs / shrink) : pollFloor);
      else pollNs = Math.min(pollMax, pollNs * grow);
      cnt[IC.pollNs] = pollNs;
    }
  }
  // The busy stretch the stop interrupted (busy time is otherwise counted at
  // each sleep: an IOThread stopped while it polled would report none).
  cnt[IC.busyNs]! += nowNs() - busyStart;
  // A fault injected while the loop was polling or about to sleep ends the
  // loop through a "not RUN" break above: it must still throw, not stop.
  if (Atomics.load(ctl, CTL_CMD) === Cmd.FAULT) throw new Error("injected fault");
  // Stopping: let in-flight I/O finish (bounded) and publish it.
  const deadline = Date.now() + 10_000;
  while (engine.inflight > ph.zombies && Date.now() < deadline) {
    if (timed) ph.tick();
    if (engine.reap(reapCb) === 0) {
      if (wakeBell !== null) wakeBell.wait(wakeBell.snapshot(), 5);
      else if (kw !== null) kw.sleep(5, reapCb);
      else poller!.wait(5);
    }
  }
  ph.failKept(); // "stop" policy: a reset completes what the device kept, with IOERR
  publishAll();
}

function start(m: StartMessage): void {
  queues = [];
  reqs = [];
  calls = [];
  qbase = [];
  kickFds = [];
  broken = false;
  blk = m.blk;
  for (let i = 0; i < m.queues.length; i++) {
    const s = m.queues[i]!;
    const q = new SplitQueue(mem, {
      index: s.index,
      size: s.size,
      descAddr: s.descAddr,
      availAddr: s.availAddr,
      usedAddr: s.usedAddr,
      eventIdx: m.eventIdx,
      indirect: m.indirect,
      lastAvailIdx: s.lastAvailIdx ?? 0,
      usedIdx: s.usedIdx ?? s.lastAvailIdx ?? 0,
    });
    queues.push(q);
    reqs.push(new Array(s.size));
    calls.push(makeNotify(s.call));
    qbase.push(IOTHREAD_FIELDS + s.slot * QUEUE_FIELDS);
    if (s.kickFd !== undefined) {
      if (poller === null) throw new Error("a queue kick eventfd needs the eventfd wake mode");
      poller.add(s.kickFd, i);
      kw?.watch(s.kickFd, i);
      kickFds.push(s.kickFd);
    }
  }
  dirty = new Uint8Array(queues.length);
  const pol: PolicyStart = m.policy ?? {
    rerror: Policy.REPORT,
    werror: Policy.ENOSPC,
    requestTimeoutMs: 0,
    state: new SharedArrayBuffer(80),
  };
  ph = new IoErrorHandler(pol, {
    engine: () => engine,
    queues: () => queues,
    reqs: () => reqs,
    complete: completeReq,
    iothread: init.index,
  });
  reapCb = ph.timeoutMs > 0 ? onCompleteTimed : onComplete;
}

/**
 * The last session ended with I/O still in the engine (the loop threw, or a
 * stop gave up waiting): its completions must not reach the next session's
 * requests (same tags, new BlkRequests), so the engine is rebuilt first.
 */
let engineStale = false;

async function onStart(m: StartMessage): Promise<void> {
  try {
    if (m.memory !== undefined) {
      // New guest memory (vhost-user SET_MEM_TABLE): engines hold region
      // pointers, so they are rebuilt over it.
      mem = new GuestMemory(m.memory);
      await openEngine();
    } else if (engineStale) await openEngine();
    engineStale = false;
    start(m);
  } catch (e) {
    Atomics.store(ctl, CTL_STATE, State.BROKEN);
    post({
      type: "needs-reset",
      queue: -1,
      code: (e as VirtqueueError).code ?? "INTERNAL",
      message: String((e as Error).message),
    });
    post({ type: "stopped", queues: [], cancelled: 0 });
    return;
  }
  Atomics.store(ctl, CTL_STATE, State.RUNNING);
  post({ type: "started" });
  // Run the loop outside this message handler's stack.
  setImmediate(() => {
    try {
      run();
    } catch (e) {
      post({ type: "fatal", message: `IOThread ${init.name}: ${(e as Error).stack ?? e}` });
    }
    const qs = queues.map((q) => ({ index: q.index, nextAvail: q.nextAvail, nextUsed: q.nextUsed }));
    for (let i = 0; i < kickFds.length; i++) {
      poller?.remove(kickFds[i]!);
      kw?.unwatch(i);
    }
    kickFds = [];
    const cancelled = engine.inflight;
    if (cancelled > 0) engineStale = true;
    queues = [];
    Atomics.store(ctl, CTL_STATE, State.IDLE);
    post({ type: "stopped", queues: qs, cancelled });
  });
}

port.on("message", (m: StartMessage | { type: "close" }) => {
  if (m.type === "start") {
    void onStart(m);
  } else if (m.type === "close") {
    try {
      engine.close();
      poller?.close();
    } finally {
      Atomics.store(ctl, CTL_STATE, State.EXITING);
      post({ type: "closed" });
      port.close();
    }
  }
});

setup().then(
  () => post({ type: "ready", engine: engine.name }),
  (e: Error) => post({ type: "fatal", message: `IOThread ${init.name} setup failed: ${e.message}` }),
);

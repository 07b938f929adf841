/**
 * The main thread's handle on one IOThread (a long-lived worker thread, see
 * iothread-worker.ts). Raw worker_threads, not piscina: an IOThread owns
 * fixed queues for its whole life and piscina cannot pin work to a worker.
 */
import { EventEmitter } from "node:events";
import { Worker } from "node:worker_threads";
import { Doorbell, type GuestRegionInit } from "@vblk/core";
import {
  counterBuffer,
  type IoThreadCounters,
  type QueueCounters,
  readIoThreadCounters,
  readQueueCounters,
} from "./counters.js";
import type { EngineSpecResolved } from "./engine-spec.js";
import {
  Cmd,
  CTL_CMD,
  CTL_STATE,
  CTL_WORDS,
  type FromIoThread,
  type IoThreadInit,
  type StartMessage,
  State,
} from "./iothread-protocol.js";
import { makeNotify, type NotifierDesc } from "./notifier.js";

export interface IoThreadOptions {
  index: number;
  name: string;
  /** Device queue indices this IOThread serves. */
  queues: number[];
  memory: GuestRegionInit[];
  engine: EngineSpecResolved;
  /** Sleep in epoll (native engines, eventfd kicks) rather than on an Atomics doorbell. */
  useEventfd: boolean;
  pollMaxNs: number;
  pollGrow: number;
  pollShrink: number;
  pollEngine: boolean;
  sleepInEngine: boolean;
  cpus?: number[];
}

export interface StoppedInfo {
  queues: { index: number; nextAvail: number; nextUsed: number }[];
  cancelled: number;
}

/**
 * Events: "needs-reset" (queue, code, message) when the guest gave the
 * IOThread something malformed; "fatal" (message) when it died or threw.
 */
export class IoThread extends EventEmitter {
  readonly name: string;
  readonly index: number;
  readonly queues: readonly number[];
  /** How to kick this IOThread (any of its queues). */
  readonly kick: NotifierDesc;
  readonly engineName: string;
  private readonly worker: Worker;
  private readonly ctl: Int32Array;
  private readonly countersBuf: SharedArrayBuffer;
  private readonly wake: () => void;
  private wakeFd = -1;
  private exited = false;
  private running = false;
  private pending: { type: string; resolve: (m: FromIoThread) => void; reject: (e: Error) => void }[] = [];

  private constructor(
    o: IoThreadOptions,
    worker: Worker,
    ctl: SharedArrayBuffer,
    counters: SharedArrayBuffer,
    kick: NotifierDesc,
    engineName: string,
    wakeFd: number,
  ) {
    super();
    this.name = o.name;
    this.index = o.index;
    this.queues = o.queues;
    this.worker = worker;
    this.ctl = new Int32Array(ctl);
    this.countersBuf = counters;
    this.kick = kick;
    this.wake = makeNotify(kick);
    this.engineName = engineName;
    this.wakeFd = wakeFd;
    worker.on("message", (m: FromIoThread) => this.onMessage(m));
    worker.on("error", (e) => this.onExit(`IOThread ${this.name} threw: ${e.stack ?? e.message}`));
    worker.on("exit", (code) => this.onExit(`IOThread ${this.name} exited (code ${code})`));
  }

  static async spawn(o: IoThreadOptions): Promise<IoThread> {
    const control = new SharedArrayBuffer(CTL_WORDS * 4);
    const counters = counterBuffer(o.queues.length);
    let wake: IoThreadInit["wake"];
    let kick: NotifierDesc;
    let wakeFd = -1;
    if (o.useEventfd) {
      const native = await import("@vblk/backend-libaio");
      wakeFd = native.eventfd(0, true);
      wake = { kind: "eventfd", fd: wakeFd };
      kick = { kind: "eventfd", fd: wakeFd };
    } else {
      const bell = Doorbell.create();
      wake = { kind: "doorbell", ...bell.describe() };
      kick = { kind: "doorbell", ...bell.describe() };
    }
    const init: IoThreadInit = {
      index: o.index,
      name: o.name,
      memory: o.memory,
      engine: o.engine,
      control,
      counters,
      wake,
      pollMaxNs: o.pollMaxNs,
      pollGrow: o.pollGrow,
      pollShrink: o.pollShrink,
      pollEngine: o.pollEngine,
      sleepInEngine: o.sleepInEngine,
      ...(o.cpus ? { cpus: o.cpus } : {}),
    };
    const worker = new Worker(new URL("./iothread-worker.js", import.meta.url), {
      workerData: init,
      name: o.name,
    });
    const first = await new Promise<FromIoThread>((resolve, reject) => {
      const onMsg = (m: FromIoThread) => done(() => resolve(m));
      const onErr = (e: Error) => done(() => reject(e));
      const onExit = (c: number) =>
        done(() => reject(new Error(`IOThread ${o.name} exited during setup (code ${c})`)));
      const done = (f: () => void) => {
        worker.off("message", onMsg);
        worker.off("error", onErr);
        worker.off("exit", onExit);
        f();
      };
      worker.on("message", onMsg);
      worker.on("error", onErr);
      worker.on("exit", onExit);
    });
    if (first.type !== "ready") {
      await worker.terminate();
      if (wakeFd >= 0) (await import("@vblk/backend-libaio")).closeFd(wakeFd);
      throw new Error(
        first.type === "fatal" ? first.message : `IOThread ${o.name}: unexpected ${first.type}`,
      );
    }
    return new IoThread(o, worker, control, counters, kick, first.engine, wakeFd);
  }

  private onMessage(m: FromIoThread): void {
    if (m.type === "needs-reset") {
      this.emit("needs-reset", m.queue, m.code, m.message);
      return;
    }
    if (m.type === "fatal") {
      this.emit("fatal", m.message);
      return;
    }
    const i = this.pending.findIndex((p) => p.type === m.type);
    if (i >= 0) this.pending.splice(i, 1)[0]!.resolve(m);
  }

  private onExit(reason: string): void {
    if (this.exited) return;
    this.exited = true;
    this.running = false;
    for (const p of this.pending.splice(0)) p.reject(new Error(reason));
    if (!this.closing) this.emit("fatal", reason);
  }
  private closing = false;

  private request(type: string, msg: unknown | null, timeoutMs: number): Promise<FromIoThread> {
    if (this.exited) return Promise.reject(new Error(`IOThread ${this.name} is gone`));
    return new Promise<FromIoThread>((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = this.pending.findIndex((p) => p.resolve === res);
        if (i >= 0) this.pending.splice(i, 1);
        reject(new Error(`IOThread ${this.name}: no "${type}" within ${timeoutMs} ms`));
      }, timeoutMs);
      const res = (m: FromIoThread) => {
        clearTimeout(timer);
        resolve(m);
      };
      this.pending.push({
        type,
        resolve: res,
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      if (msg !== null) this.worker.postMessage(msg);
    });
  }

  /** Start serving (DRIVER_OK). */
  async start(m: StartMessage): Promise<void> {
    Atomics.store(this.ctl, CTL_CMD, Cmd.RUN);
    const started = this.request("started", null, 10_000);
    const stopped = this.request("stopped", null, 2 ** 31 - 1);
    stopped.catch(() => {});
    this.stoppedPromise = stopped;
    this.worker.postMessage(m);
    const r = await Promise.race([started, stopped]);
    if (r.type === "stopped") {
      Atomics.store(this.ctl, CTL_CMD, Cmd.IDLE);
      throw new Error(`IOThread ${this.name} refused to start`);
    }
    this.running = true;
  }
  private stoppedPromise: Promise<FromIoThread> | null = null;

  /** Stop serving: in-flight I/O completes into the rings first. Bounded by timeoutMs. */
  async stop(timeoutMs = 15_000): Promise<StoppedInfo> {
    const p = this.stoppedPromise;
    this.stoppedPromise = null;
    if (p === null) return { queues: [], cancelled: 0 };
    Atomics.store(this.ctl, CTL_CMD, Cmd.STOP);
    this.wake();
    let timer: NodeJS.Timeout | undefined;
    try {
      const m = await Promise.race([
        p,
        new Promise<never>((_, rej) => {
          timer = setTimeout(
            () => rej(new Error(`IOThread ${this.name} did not stop within ${timeoutMs} ms`)),
            timeoutMs,
          );
        }),
      ]);
      this.running = false;
      Atomics.store(this.ctl, CTL_CMD, Cmd.IDLE);
      if (m.type !== "stopped") throw new Error(`IOThread ${this.name}: unexpected ${m.type}`);
      return { queues: m.queues, cancelled: m.cancelled };
    } catch (e) {
      // A stuck IOThread is terminated: the device is unusable until reset anyway.
      this.closing = true;
      await this.terminate();
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  get isRunning(): boolean {
    return this.running;
  }

  get state(): "idle" | "running" | "broken" | "exiting" {
    const s = Atomics.load(this.ctl, CTL_STATE);
    return s === State.RUNNING
      ? "running"
      : s === State.BROKEN
        ? "broken"
        : s === State.EXITING
          ? "exiting"
          : "idle";
  }

  /**
   * Fault injection for tests: the running loop throws, as a bug in the
   * IOThread would. The device must end in NEEDS_RESET.
   */
  injectFault(): void {
    Atomics.store(this.ctl, CTL_CMD, Cmd.FAULT);
    this.wake();
  }

  /** Wake the IOThread (a kick on any of its queues). */
  notify(): void {
    this.wake();
  }

  counters(): IoThreadCounters {
    return readIoThreadCounters(this.name, [...this.queues], this.countersBuf);
  }

  queueCounters(): QueueCounters[] {
    return readQueueCounters(this.name, [...this.queues], this.countersBuf);
  }

  /** Worker thread id (for tests and diagnostics). */
  get threadId(): number {
    return this.worker.threadId;
  }

  /** End the thread at once, as a crash would (the device hears "fatal"). */
  async terminate(): Promise<void> {
    await this.worker.terminate();
    this.exited = true;
    await this.releaseFd();
  }

  /** Stop if running, close the engine, end the thread. */
  async close(): Promise<void> {
    if (this.exited) return this.releaseFd();
    this.closing = true;
    if (this.stoppedPromise !== null) await this.stop().catch(() => {});
    if (!this.exited) {
      const closed = this.request("closed", { type: "close" }, 10_000).catch(() => null);
      await closed;
      await this.worker.terminate();
      this.exited = true;
    }
    await this.releaseFd();
  }

  private async releaseFd(): Promise<void> {
    if (this.wakeFd >= 0) {
      const fd = this.wakeFd;
      this.wakeFd = -1;
      (await import("@vblk/backend-libaio")).closeFd(fd);
    }
  }
}

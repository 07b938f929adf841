/**
 * VirtioBlkDevice: one virtio-blk device served by a pool of IOThreads.
 *
 *   VMM (main thread)                      IOThreads (worker threads)
 *   +-------------------------+            +---------------------------+
 *   | VirtioMmioTransport     |  DRIVER_OK | iothread0: vq 0, 2  engine |
 *   |  registers, status,     | ---------> | iothread1: vq 1, 3  engine |
 *   |  config space           |            +---------------------------+
 *   | VirtioBlkDevice         |  kicks: doorbell / eventfd per IOThread
 *   |  mapping vq -> iothread |  interrupts: per-queue call notifier
 *   +-------------------------+  (default: one doorbell -> transport IRQ)
 *
 * The mapping is fixed while the device runs (as in QEMU); it changes only
 * through a reset. An IOThread that dies or meets a malformed ring puts the
 * device in DEVICE_NEEDS_RESET and the VMM hears about it ("needs-reset").
 */
import { EventEmitter } from "node:events";
import {
  BlkConfigSpace,
  type BlkDeviceOptions,
  BlkFeature,
  type BlkParams,
  DeviceId,
  Doorbell,
  type EngineSpec,
  encodeSerial,
  type FaultRule,
  type GuestMemory,
  hasFeature,
  offeredFeatures,
  type QueueConfig,
  type VirtioDevice,
  VirtioFeature,
  VirtioMmioTransport,
  validateBlkOptions,
} from "@vblk/core";
import type { IoThreadCounters, QueueCounters } from "./counters.js";
import { assertEngineName, type EngineName } from "./engine-spec.js";
import {
  type ErrorPolicy,
  ErrorPolicyState,
  type PolicyCounters,
  type PolicyStart,
  parseErrorPolicy,
  parseRequestTimeout,
  policyCode,
  type StopReason,
} from "./error-policy.js";
import { FaultControl, faultEngineSpec } from "./fault-engine.js";
import { IoThread, type StoppedInfo } from "./iothread.js";
import type { QueueStart } from "./iothread-protocol.js";
import {
  describeMapping,
  type IOThreadVirtqueueMapping,
  type ResolvedMapping,
  resolveMapping,
} from "./mapping.js";
import type { NotifierDesc } from "./notifier.js";

export interface VirtioBlkDeviceOptions {
  /** Guest RAM (regions over SharedArrayBuffers: IOThreads map them). */
  memory: GuestMemory;
  /** Number of virtqueues. Default: `vcpus` (like QEMU's num-queues default), else 1. */
  numQueues?: number;
  /** Number of submitting vCPUs (sets the numQueues default). */
  vcpus?: number;
  /** Ring size, power of two in 4..1024. Default 256. */
  queueSize?: number;
  /** QEMU's single `iothread=` (one IOThread serves every queue). */
  iothread?: string;
  /** Round-robin over this many IOThreads. Default 1. */
  iothreads?: number;
  /** QEMU's `iothread-vq-mapping`. */
  iothreadVqMapping?: IOThreadVirtqueueMapping[];
  /** I/O engine, like QEMU's aio=: null, memory, threads, io_uring, native (libaio), libaio, auto. Default auto. */
  engine?: EngineName;
  /** Image file or block device (threads, io_uring, native, auto). */
  path?: string;
  /** Disk size for the null and memory engines (bytes). */
  sizeBytes?: number;
  /** Backing store for the memory engine (shared by every IOThread). */
  disk?: SharedArrayBuffer;
  readOnly?: boolean;
  /** GET_ID answer (20 bytes max). Default "vblk". */
  serial?: string;
  /** none = O_DIRECT (default), writeback = through the host page cache. */
  cache?: "none" | "writeback";
  discard?: boolean;
  writeZeroes?: boolean;
  /** Adaptive polling window cap (ns); 0 disables polling. Default 32768 like QEMU. */
  pollMaxNs?: number;
  pollGrow?: number;
  pollShrink?: number;
  /**
   * Also poll a native engine's completions while its I/O is in flight
   * (QEMU polls its AIO completion ring). Default false: the IOThread polls
   * the virtqueues only while nothing is in the kernel, and sleeps in epoll
   * (completion eventfd + kicks) otherwise. On a VM whose vCPU also takes the
   * disk's interrupt, spinning there delays that interrupt (BENCHMARKS.md).
   */
  pollEngine?: boolean;
  /**
   * io_uring engines: an idle IOThread sleeps in io_uring_enter (the way fio
   * waits) with its kick eventfds watched in the ring by multishot POLL_ADD
   * (QEMU's fdmon-io_uring), instead of in epoll. Default true; falls back
   * to epoll when the kernel refuses the watch.
   */
  sleepInEngine?: boolean;
  eventIdx?: boolean;
  indirect?: boolean;
  /**
   * CPU affinity per IOThread name, or one CPU list for every IOThread
   * (needs the native addon), like libvirt's iothreadpin.
   */
  iothreadCpus?: Record<string, number[]> | number[];
  /** The VMM's interrupt line for the mmio transport. */
  onInterrupt?: (interruptStatus: number) => void;
  /** threads engine: I/O workers per IOThread. */
  threadsWorkers?: number;
  /** Native engines: max in flight per IOThread. */
  depth?: number;
  /**
   * IOThreads sleep in epoll (eventfd kicks, needed for vhost-user kick fds)
   * instead of on an Atomics doorbell. Default: true for native engines.
   * Not possible with the threads engine (its completions ring a doorbell).
   */
  useEventfd?: boolean;
  // ---- reliability (error-policy.ts, fault-engine.ts, docs/RELIABILITY.md) ----
  /** What a failed READ does: report (default), ignore, stop, enospc (QEMU's rerror). */
  rerror?: ErrorPolicy;
  /** What a failed WRITE/FLUSH/DISCARD/WRITE_ZEROES does: enospc (default), report, ignore, stop (QEMU's werror). */
  werror?: ErrorPolicy;
  /**
   * A request the engine has not completed after this many ms completes
   * with IOERR (counted in policyCounters().timedOut). 0 (default): never.
   */
  requestTimeoutMs?: number;
  /** Tests: wrap the engine in the fault-injecting engine with these rules (see FaultRule). */
  faults?: FaultRule[];
}

/** What a VMM (or vhost-user) supplies to start queues without the mmio transport. */
export interface QueueActivation extends QueueConfig {
  lastAvailIdx?: number;
  usedIdx?: number;
  call?: NotifierDesc;
  kickFd?: number;
}

export interface DeviceCounters {
  iothreads: IoThreadCounters[];
  queues: QueueCounters[];
}

const DEFAULT_NULL_SIZE = 1 << 30;

export class VirtioBlkDevice extends EventEmitter implements VirtioDevice {
  readonly deviceId = DeviceId.BLOCK;
  readonly deviceFeatures: bigint;
  readonly numQueues: number;
  readonly queueMaxSize: number;
  readonly mapping: ResolvedMapping;
  readonly transport: VirtioMmioTransport;
  readonly config: BlkConfigSpace;
  readonly engineName: string;
  readonly capacityBytes: number;
  readonly logicalBlockSize: number;
  /** Guest memory the IOThreads use (replaced by setMemory before a start). */
  memory: GuestMemory;
  private memoryChanged = false;
  private readonly iothreadList: IoThread[];
  private readonly callOverride = new Map<number, NotifierDesc>();
  private readonly kickFdOverride = new Map<number, number>();
  private irqBell: Doorbell | null = null;
  private irqLoop = false;
  private negotiated = 0n;
  private active = false;
  private starting: Promise<void> | null = null;
  private closed = false;
  private blkParams: BlkParams;
  private lastStopped: StoppedInfo[] = [];
  /** Why the device needs a reset (undefined while healthy). */
  needsResetReason: string | undefined;
  // ---- reliability: error policies, stop/resume, fault injection ----
  private readonly policyState = new ErrorPolicyState();
  private readonly policyStart: Omit<PolicyStart, "state">;
  /** The fault engine's rule switches and counters (only with the `faults` option). */
  readonly faults: FaultControl | null;

  private constructor(
    opts: VirtioBlkDeviceOptions,
    mapping: ResolvedMapping,
    iothreads: IoThread[],
    blkOpts: BlkDeviceOptions,
    engineName: string,
    faults: FaultControl | null = null,
  ) {
    super();
    this.policyStart = {
      rerror: policyCode(opts.rerror ?? "report"),
      werror: policyCode(opts.werror ?? "enospc"),
      requestTimeoutMs: opts.requestTimeoutMs ?? 0,
    };
    this.faults = faults;
    this.memory = opts.memory;
    this.mapping = mapping;
    this.iothreadList = iothreads;
    this.numQueues = blkOpts.numQueues;
    this.queueMaxSize = blkOpts.queueSize;
    this.deviceFeatures = offeredFeatures(blkOpts);
    this.config = new BlkConfigSpace(blkOpts, {
      onConfigChange: () => this.transport.signalConfigChange(),
      onWarning: (m) => this.emit("warning", m),
    });
    this.engineName = engineName;
    this.capacityBytes = blkOpts.capacityBytes;
    this.logicalBlockSize = blkOpts.logicalBlockSize ?? 512;
    this.blkParams = {
      capacityBytes: blkOpts.capacityBytes,
      logicalBlockSize: this.logicalBlockSize,
      readOnly: blkOpts.readOnly ?? false,
      segMax: blkOpts.segMax ?? blkOpts.queueSize - 2,
      discard: false,
      writeZeroes: false,
      maxDiscardSectors: this.config.options.maxDiscardSectors,
      maxWriteZeroesSectors: this.config.options.maxWriteZeroesSectors,
      serial: encodeSerial(opts.serial ?? "vblk"),
    };
    this.transport = new VirtioMmioTransport(this, {
      ...(opts.onInterrupt ? { onInterrupt: opts.onInterrupt } : {}),
      onWarning: (m: string) => this.emit("warning", m),
    });
    for (const t of iothreads) {
      t.on("needs-reset", (queue: number, code: string, message: string) =>
        this.needsReset(`queue ${queue}: ${code}: ${message}`),
      );
      t.on("fatal", (message: string) => this.needsReset(message));
    }
  }

  /** Validate options, open the disk, spawn the IOThreads (idle until DRIVER_OK). */
  static async create(opts: VirtioBlkDeviceOptions): Promise<VirtioBlkDevice> {
    const queueSize = opts.queueSize ?? 256;
    const numQueues = opts.numQueues ?? opts.vcpus ?? 1;
    const engineName = opts.engine ?? "auto";
    assertEngineName(engineName);
    if (opts.cache !== undefined && opts.cache !== "none" && opts.cache !== "writeback")
      throw new Error(`cache: unknown mode "${opts.cache}"; allowed: none, writeback`);
    if (opts.rerror !== undefined) parseErrorPolicy("rerror", opts.rerror);
    if (opts.werror !== undefined) parseErrorPolicy("werror", opts.werror);
    parseRequestTimeout(opts.requestTimeoutMs);
    const pollMaxNs = opts.pollMaxNs ?? 32768;
    if (!Number.isInteger(pollMaxNs) || pollMaxNs < 0)
      throw new Error(`pollMaxNs must be an integer >= 0 (0 disables polling), got ${opts.pollMaxNs}`);
    const mapping = resolveMapping({
      numQueues,
      ...(opts.iothread !== undefined ? { iothread: opts.iothread } : {}),
      ...(opts.iothreads !== undefined ? { iothreads: opts.iothreads } : {}),
      ...(opts.iothreadVqMapping !== undefined ? { iothreadVqMapping: opts.iothreadVqMapping } : {}),
    });
    const { spec, info } = await resolveEngine(engineName, opts);
    const blkOpts: BlkDeviceOptions = {
      capacityBytes: info.sizeBytes,
      logicalBlockSize: info.blockSize,
      numQueues,
      queueSize,
      readOnly: opts.readOnly ?? false,
      writeback: true,
      discard: opts.discard ?? true,
      writeZeroes: opts.writeZeroes ?? true,
      eventIdx: opts.eventIdx ?? true,
      indirect: opts.indirect ?? true,
    };
    validateBlkOptions(blkOpts);
    const useEventfd = opts.useEventfd ?? (spec.kind === "io_uring" || spec.kind === "libaio");
    if (useEventfd && spec.kind === "threads")
      throw new Error(
        'useEventfd: the "threads" engine completes on a doorbell; use io_uring, libaio, null or memory',
      );
    let engineSpec: EngineSpec = spec;
    let faults: FaultControl | null = null;
    if (opts.faults !== undefined) {
      const fs = faultEngineSpec(spec, opts.faults);
      engineSpec = fs;
      faults = new FaultControl(fs);
    }
    const regions = opts.memory.describe();
    for (const r of regions)
      if (!(r.buffer instanceof SharedArrayBuffer))
        throw new Error(
          "memory: every guest memory region must be backed by a SharedArrayBuffer (IOThreads map it)",
        );
    const threads: IoThread[] = [];
    try {
      for (let i = 0; i < mapping.iothreads.length; i++) {
        const name = mapping.iothreads[i]!;
        const pin = opts.iothreadCpus;
        const cpus = Array.isArray(pin) ? pin : pin?.[name];
        threads.push(
          await IoThread.spawn({
            index: i,
            name,
            queues: mapping.iothreadQueues[i]!,
            memory: regions,
            engine: engineSpec,
            useEventfd,
            pollMaxNs,
            pollGrow: opts.pollGrow ?? 2,
            pollShrink: opts.pollShrink ?? 0,
            pollEngine: opts.pollEngine ?? false,
            sleepInEngine: opts.sleepInEngine ?? true,
            ...(cpus ? { cpus } : {}),
          }),
        );
      }
    } catch (e) {
      await Promise.all(threads.map((t) => t.close()));
      throw e;
    }
    return new VirtioBlkDevice(opts, mapping, threads, blkOpts, spec.kind, faults);
  }

  // ---- VirtioDevice (driven by the transport) -----------------------------

  readConfig(offset: number, size: 1 | 2 | 4): number {
    return this.config.read(offset, size);
  }
  writeConfig(offset: number, size: 1 | 2 | 4, value: number): void {
    this.config.write(offset, size, value);
  }
  get configGeneration(): number {
    return this.config.generation;
  }

  negotiate(driverFeatures: bigint): string | undefined {
    if ((driverFeatures & ~this.deviceFeatures) !== 0n)
      return "driver accepted features the device did not offer";
    this.negotiated = driverFeatures;
    this.config.negotiate(driverFeatures);
    return undefined;
  }

  activate(features: bigint, queues: QueueConfig[]): void {
    this.negotiated = features;
    this.starting = this.startQueues(features, queues).catch((e: Error) => {
      this.needsReset(`activation failed: ${e.message}`);
    });
  }

  reset(): void | Promise<void> {
    const done = () => {
      this.needsResetReason = undefined;
      this.config.reset();
    };
    // Nothing running: reset at once, so Status reads 0 right away.
    if (!this.active && this.starting === null && this.stopping === null) return done();
    return this.stopQueues().then(done);
  }

  notify(queueIndex: number): void {
    const t = this.mapping.queueToIothread[queueIndex];
    if (t === undefined) {
      this.emit("warning", `QueueNotify for queue ${queueIndex}, device has ${this.numQueues}`);
      return;
    }
    this.iothreadList[t]!.notify();
  }

  // ---- in-process fast paths (irqfd / ioeventfd analogues) ----------------

  /** Where IOThreads signal used buffers of queue q (instead of the transport's interrupt). Set before DRIVER_OK. */
  setCallNotifier(queue: number, n: NotifierDesc): void {
    this.checkQueue(queue);
    this.callOverride.set(queue, n);
  }

  /** An eventfd that kicks queue q (vhost-user); waited on by its IOThread. Native engines only. */
  setKickFd(queue: number, fd: number): void {
    this.checkQueue(queue);
    this.kickFdOverride.set(queue, fd);
  }

  /** How a driver thread kicks queue q. */
  kickNotifier(queue: number): NotifierDesc {
    this.checkQueue(queue);
    return this.iothreadList[this.mapping.queueToIothread[queue]!]!.kick;
  }

  private checkQueue(q: number): void {
    if (!Number.isInteger(q) || q < 0 || q >= this.numQueues)
      throw new RangeError(`queue ${q} out of range: the device has ${this.numQueues} queue(s)`);
  }

  // ---- lifecycle -----------------------------------------------------------

  /**
   * Start serving queues directly (what DRIVER_OK does; vhost-user calls it
   * with ring bases and eventfds).
   */
  async startQueues(features: bigint, queues: QueueActivation[]): Promise<void> {
    if (this.closed) throw new Error("device closed");
    if (this.active) throw new Error("device already active: reset it first");
    this.negotiated = features;
    this.blkParams = {
      ...this.blkParams,
      discard: hasFeature(features, BlkFeature.DISCARD),
      writeZeroes: hasFeature(features, BlkFeature.WRITE_ZEROES),
    };
    const eventIdx = hasFeature(features, VirtioFeature.RING_EVENT_IDX);
    const indirect = hasFeature(features, VirtioFeature.RING_INDIRECT_DESC);
    const byQueue = new Map(queues.filter((q) => q.ready).map((q) => [q.index, q]));
    let defaultCall: NotifierDesc | null = null;
    const needIrq = [...byQueue.keys()].some(
      (q) => !this.callOverride.has(q) && byQueue.get(q)!.call === undefined,
    );
    if (needIrq) {
      this.irqBell = Doorbell.create();
      defaultCall = { kind: "doorbell", ...this.irqBell.describe() };
      this.runIrqLoop(this.irqBell);
    }
    this.active = true;
    this.policyState.clearForStart();
    this.policyState.watch((r) => this.emit("stopped", r));
    const policy: PolicyStart = { ...this.policyStart, state: this.policyState.buffer };
    const memory = this.memoryChanged ? this.memory.describe() : undefined;
    this.memoryChanged = false;
    await Promise.all(
      this.iothreadList.map((t) => {
        const qs: QueueStart[] = [];
        for (const qi of t.queues) {
          const q = byQueue.get(qi);
          if (q === undefined) continue;
          const kickFd = q.kickFd ?? this.kickFdOverride.get(qi);
          qs.push({
            index: qi,
            slot: t.queues.indexOf(qi),
            size: q.size,
            descAddr: q.descAddr,
            availAddr: q.availAddr,
            usedAddr: q.usedAddr,
            ...(q.lastAvailIdx !== undefined ? { lastAvailIdx: q.lastAvailIdx } : {}),
            ...(q.usedIdx !== undefined ? { usedIdx: q.usedIdx } : {}),
            call: q.call ?? this.callOverride.get(qi) ?? defaultCall!,
            ...(kickFd !== undefined ? { kickFd } : {}),
          });
        }
        return t.start({
          type: "start",
          queues: qs,
          eventIdx,
          indirect,
          blk: this.blkParams,
          policy,
          ...(memory !== undefined ? { memory } : {}),
        });
      }),
    );
  }

  /** Stop every IOThread; in-flight requests complete into the rings first. Returns ring positions per queue. */
  stopQueues(): Promise<{ index: number; nextAvail: number; nextUsed: number }[]> {
    if (this.stopping === null) {
      this.stopping = this.doStop().finally(() => {
        this.stopping = null;
      });
    }
    return this.stopping;
  }
  private stopping: Promise<{ index: number; nextAvail: number; nextUsed: number }[]> | null = null;

  private async doStop(): Promise<{ index: number; nextAvail: number; nextUsed: number }[]> {
    if (this.starting) await this.starting;
    this.starting = null;
    if (!this.active) return [];
    const res = await Promise.allSettled(this.iothreadList.map((t) => t.stop()));
    this.active = false;
    this.policyState.unwatch();
    this.irqLoop = false;
    this.irqBell?.ring();
    this.irqBell = null;
    this.lastStopped = res.filter((r) => r.status === "fulfilled").map((r) => r.value);
    const failed = res.find((r) => r.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
    return this.lastStopped.flatMap((s) => s.queues).sort((a, b) => a.index - b.index);
  }

  private runIrqLoop(bell: Doorbell): void {
    this.irqLoop = true;
    let seen = bell.snapshot();
    const loop = async () => {
      while (this.irqLoop && this.irqBell === bell) {
        await bell.waitAsync(seen, 1000);
        const now = bell.snapshot();
        if (now !== seen && this.irqLoop) {
          seen = now;
          this.transport.signalUsedBuffer(0);
        }
      }
    };
    void loop();
  }

  private needsReset(reason: string): void {
    if (this.needsResetReason !== undefined) return;
    this.needsResetReason = reason;
    try {
      this.transport.setNeedsReset(reason);
    } catch {
      // transport not ready: still report below
    }
    this.emit("needs-reset", reason);
  }

  /**
   * Replace guest memory (vhost-user SET_MEM_TABLE). Takes effect at the next
   * start; IOThreads rebuild their engines over it.
   */
  setMemory(memory: GuestMemory): void {
    for (const r of memory.regions)
      if (!(r.buffer instanceof SharedArrayBuffer))
        throw new Error("memory: every guest memory region must be backed by a SharedArrayBuffer");
    this.memory = memory;
    this.memoryChanged = true;
  }

  // ---- error policies: stop / resume (error-policy.ts) ---------------------

  /**
   * Leave a stop ("stopped" event, rerror/werror=stop or enospc): every
   * IOThread retries the requests it kept, in the order it popped them, then
   * pops again. Returns false when the device was not stopped. Emits "resumed".
   */
  resume(): boolean {
    if (!this.policyState.resume()) return false;
    for (const t of this.iothreadList) t.notify();
    this.emit("resumed");
    return true;
  }

  /** True while stopped by an error policy. */
  get isStopped(): boolean {
    return this.policyState.stopped;
  }

  /** Why the device stopped (undefined while running). */
  get stopReason(): StopReason | undefined {
    return this.policyState.reason();
  }

  /** Kept / timed-out / ignored / late / stops / retried, device-wide. */
  policyCounters(): PolicyCounters {
    return this.policyState.counters();
  }

  /** Resolves when the IOThreads run after DRIVER_OK (rejections are reported as needs-reset). */
  async whenStarted(): Promise<void> {
    if (this.starting) await this.starting;
  }

  get isActive(): boolean {
    return this.active;
  }

  get negotiatedFeatures(): bigint {
    return this.negotiated;
  }

  get iothreads(): readonly IoThread[] {
    return this.iothreadList;
  }

  counters(): DeviceCounters {
    return {
      iothreads: this.iothreadList.map((t) => t.counters()),
      queues: this.iothreadList.flatMap((t) => t.queueCounters()).sort((a, b) => a.queue - b.queue),
    };
  }

  describeMapping(): string {
    return describeMapping(this.mapping);
  }

  /** Stop, close every engine and join every IOThread. */
  async close(): Promise<void> {
    if (this.closed) return;
    try {
      await this.stopQueues().catch(() => {});
    } finally {
      this.closed = true;
      await Promise.all(this.iothreadList.map((t) => t.close()));
    }
  }
}

/** Resolve `auto`/aliases and learn the disk's size and block size on the main thread. */
async function resolveEngine(
  name: EngineName,
  opts: VirtioBlkDeviceOptions,
): Promise<{ spec: EngineSpec; info: { sizeBytes: number; blockSize: number } }> {
  const readOnly = opts.readOnly ?? false;
  const direct = (opts.cache ?? "none") === "none";
  if (name === "null") {
    const sizeBytes = opts.sizeBytes ?? DEFAULT_NULL_SIZE;
    return { spec: { kind: "null", sizeBytes }, info: { sizeBytes, blockSize: 512 } };
  }
  if (name === "memory") {
    const disk = opts.disk ?? new SharedArrayBuffer(opts.sizeBytes ?? 64 << 20);
    return {
      spec: { kind: "memory", buffer: disk, readOnly },
      info: { sizeBytes: disk.byteLength, blockSize: 512 },
    };
  }
  if (opts.path === undefined)
    throw new Error(`path: engine "${name}" needs an image file or block device path`);
  const path = opts.path;
  let kind: "threads" | "io_uring" | "libaio";
  if (name === "threads") kind = "threads";
  else {
    const native = await import("@vblk/backend-libaio");
    const want = name === "native" ? "libaio" : name;
    if (want === "auto") {
      if (!native.nativeAvailable()) kind = "threads";
      else {
        const p = native.probeEngines();
        kind = p.io_uring === true ? "io_uring" : p.libaio === true ? "libaio" : "threads";
      }
    } else {
      if (!native.nativeAvailable())
        throw new Error(
          `engine "${name}": native addon unavailable (${native.nativeLoadError()}); use engine "threads" or "auto"`,
        );
      const p = native.probeEngines();
      const ok = p[want as "io_uring" | "libaio"];
      if (ok !== true) throw new Error(`engine "${name}": ${want} unavailable here: ${ok}`);
      kind = want as "io_uring" | "libaio";
    }
  }
  const { openImageInfo } = await import("./threads-engine.js");
  const info = openImageInfo(path, { direct, readOnly });
  const spec: EngineSpec = {
    kind,
    path,
    direct,
    readOnly,
    sizeBytes: info.sizeBytes,
    blockSize: info.logicalBlockSize,
    isBlockDevice: info.isBlockDevice,
    ...(opts.threadsWorkers !== undefined ? { workers: opts.threadsWorkers } : {}),
    ...(opts.depth !== undefined ? { depth: opts.depth } : {}),
  };
  return { spec, info: { sizeBytes: info.sizeBytes, blockSize: info.logicalBlockSize } };
}

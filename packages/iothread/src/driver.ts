/**
 * Playing the guest: bring the device up through its mmio registers the way
 * a virtio driver does, and drive a queue from any thread. Used by the bench
 * (one job = one vCPU thread on its queue), the tests and the example VMM.
 *
 *   connectDriver(device)             main thread: reset, ACK, DRIVER,
 *     -> DriverQueueDesc[]            features, FEATURES_OK, queues, DRIVER_OK
 *   openDriverQueue(desc)             in the submitting thread: DriverQueue +
 *     -> DriverHandle                 BlkDriver + kick + interrupt wait
 */
import {
  BlkDriver,
  Doorbell,
  DriverQueue,
  featureBit,
  GuestMemory,
  type GuestRegionInit,
  layoutSplitRing,
  type RingAddresses,
  Status,
  VirtioFeature,
} from "@vblk/core";
import type { VirtioBlkDevice } from "./device.js";
import { makeNotify, type NotifierDesc } from "./notifier.js";

/** Everything a thread needs to drive one queue (structured-clone friendly). */
export interface DriverQueueDesc {
  memory: GuestRegionInit[];
  queue: number;
  ring: RingAddresses;
  eventIdx: boolean;
  kick: NotifierDesc;
  /** Interrupt doorbell for this queue. */
  call: { buffer: SharedArrayBuffer; index: number };
  /** BlkDriver scratch area (headers, status bytes). */
  scratchGpa: number;
}

export interface ConnectOptions {
  /** Features the driver refuses (bit mask). E.g. featureBit(VirtioFeature.RING_EVENT_IDX). */
  refuse?: bigint;
  /** Ring size the driver picks (<= the device's max). Default: the max. */
  queueSize?: number;
  /** First guest-physical address the driver may use for rings and scratch. Default 0x1000 (page 0 stays unused, as in real guests). */
  base?: number;
}

export interface DriverConnection {
  queues: DriverQueueDesc[];
  features: bigint;
  /** First free guest-physical address after the driver's rings and scratch (16-aligned). */
  end: number;
}

const R = {
  DeviceFeatures: 0x010,
  DeviceFeaturesSel: 0x014,
  DriverFeatures: 0x020,
  DriverFeaturesSel: 0x024,
  QueueSel: 0x030,
  QueueNumMax: 0x034,
  QueueNum: 0x038,
  QueueReady: 0x044,
  Status: 0x070,
  QueueDescLow: 0x080,
  QueueDescHigh: 0x084,
  QueueDriverLow: 0x090,
  QueueDriverHigh: 0x094,
  QueueDeviceLow: 0x0a0,
  QueueDeviceHigh: 0x0a4,
} as const;

/** Initialize the device through its mmio registers and start every queue. */
export async function connectDriver(
  device: VirtioBlkDevice,
  opts: ConnectOptions = {},
): Promise<DriverConnection> {
  const t = device.transport;
  const w = (off: number, v: number) => t.write(off, 4, v >>> 0);
  // Reset, and wait until Status reads 0 (the device finished its reset).
  w(R.Status, 0);
  for (let i = 0; t.read(R.Status, 4) !== 0; i++) {
    if (i > 2000) throw new Error("device did not finish its reset within 20 s");
    await new Promise((r) => setTimeout(r, 10));
  }
  w(R.Status, Status.ACKNOWLEDGE);
  w(R.Status, Status.ACKNOWLEDGE | Status.DRIVER);
  w(R.DeviceFeaturesSel, 0);
  const lo = t.read(R.DeviceFeatures, 4);
  w(R.DeviceFeaturesSel, 1);
  const hi = t.read(R.DeviceFeatures, 4);
  let features = (BigInt(hi) << 32n) | BigInt(lo);
  features &= ~(opts.refuse ?? 0n);
  w(R.DriverFeaturesSel, 0);
  w(R.DriverFeatures, Number(features & 0xffff_ffffn));
  w(R.DriverFeaturesSel, 1);
  w(R.DriverFeatures, Number(features >> 32n));
  w(R.Status, Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK);
  if ((t.read(R.Status, 4) & Status.FEATURES_OK) === 0) throw new Error("device refused FEATURES_OK");
  const eventIdx = (features & featureBit(VirtioFeature.RING_EVENT_IDX)) !== 0n;
  let next = Math.ceil((opts.base ?? 0x1000) / 4096) * 4096;
  const mem = device.memory;
  const queues: DriverQueueDesc[] = [];
  for (let q = 0; q < device.numQueues; q++) {
    w(R.QueueSel, q);
    const max = t.read(R.QueueNumMax, 4);
    const size = Math.min(opts.queueSize ?? max, max);
    const ring = layoutSplitRing(size, next);
    const scratchGpa = ring.end;
    next = Math.ceil((scratchGpa + BlkDriver.scratchBytes(size)) / 4096) * 4096;
    if (!mem.isValid(ring.descAddr, next - ring.descAddr))
      throw new Error(`guest memory too small for ${device.numQueues} queues of ${size}`);
    // A fresh queue: zeroed rings.
    mem.slice(ring.descAddr, scratchGpa - ring.descAddr).fill(0);
    w(R.QueueNum, size);
    w(R.QueueDescLow, ring.descAddr % 2 ** 32);
    w(R.QueueDescHigh, Math.floor(ring.descAddr / 2 ** 32));
    w(R.QueueDriverLow, ring.availAddr % 2 ** 32);
    w(R.QueueDriverHigh, Math.floor(ring.availAddr / 2 ** 32));
    w(R.QueueDeviceLow, ring.usedAddr % 2 ** 32);
    w(R.QueueDeviceHigh, Math.floor(ring.usedAddr / 2 ** 32));
    w(R.QueueReady, 1);
    const call = Doorbell.create();
    device.setCallNotifier(q, { kind: "doorbell", ...call.describe() });
    queues.push({
      memory: mem.describe(),
      queue: q,
      ring: { size, descAddr: ring.descAddr, availAddr: ring.availAddr, usedAddr: ring.usedAddr },
      eventIdx,
      kick: device.kickNotifier(q),
      call: call.describe(),
      scratchGpa,
    });
  }
  w(R.Status, Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK | Status.DRIVER_OK);
  await device.whenStarted();
  if (device.needsResetReason !== undefined)
    throw new Error(`device needs reset: ${device.needsResetReason}`);
  return { queues, features, end: next };
}

/** A queue driven from the current thread. */
export class DriverHandle {
  readonly mem: GuestMemory;
  readonly queue: DriverQueue;
  readonly blk: BlkDriver;
  readonly call: Doorbell;
  private readonly kickFn: () => void;
  kicks = 0;
  sleeps = 0;
  /**
   * Called every few microseconds while waitUsed() spins: e.g. sched_yield
   * (@vblk/backend-libaio schedYield), so a kernel worker queued on this CPU
   * is not kept waiting a whole scheduler tick behind the spinning thread.
   */
  relax: (() => void) | undefined = undefined;
  /**
   * Adaptive spin window, Linux haltpoll's rule with this cap (0 = off: spin
   * exactly waitUsed's pollNs): a sleep that a completion ended within the
   * cap doubles the window (spinning that long would have caught it), a
   * longer one halves it, never below waitUsed's pollNs.
   */
  pollMaxNs = 0;
  /** The current adaptive window (ns); 0 until the first wait. */
  adaptiveNs = 0;
  /** Its floor: the pollNs of the first adaptive wait. */
  private adaptBase = 0;

  /** Adaptive window bookkeeping after a sleep a completion ended (exposed for tests). */
  noteSleep(sleptNs: number): void {
    if (sleptNs < this.pollMaxNs)
      this.adaptiveNs = Math.min(this.pollMaxNs, Math.max(this.adaptiveNs * 2, 1000));
    else this.adaptiveNs = Math.max(this.adaptBase, this.adaptiveNs / 2);
  }
  /**
   * Optional native spin (@vblk/backend-libaio spinWait16): waits with PAUSE
   * on used.idx instead of a JS loop of loads. Called in slices of ~8 us,
   * with relax() between them.
   */
  spinWait: ((u16: Uint16Array, index: number, value: number, ns: number) => boolean) | undefined = undefined;

  constructor(desc: DriverQueueDesc, mem?: GuestMemory) {
    this.mem = mem ?? new GuestMemory(desc.memory);
    this.queue = new DriverQueue(this.mem, { ...desc.ring, eventIdx: desc.eventIdx, initialize: false });
    this.blk = new BlkDriver(this.queue, this.mem, desc.scratchGpa);
    this.call = Doorbell.from(desc.call);
    this.kickFn = makeNotify(desc.kick);
  }

  /** Publish what was added and kick if the device asked for it. */
  submit(): void {
    this.queue.publish();
    if (this.queue.kickNeeded()) {
      this.kicks++;
      this.kickFn();
    }
  }

  /**
   * Wait until a completion is available: spin for pollNs, then enable
   * interrupts, re-check, and sleep on the call doorbell (up to timeoutMs).
   * Returns false on timeout.
   */
  waitUsed(pollNs: number, timeoutMs: number): boolean {
    const q = this.queue;
    if (q.hasUsed()) return true;
    if (this.pollMaxNs > pollNs) {
      if (this.adaptiveNs === 0) this.adaptiveNs = this.adaptBase = pollNs;
      pollNs = this.adaptiveNs;
    }
    if (pollNs > 0) {
      const until = performance.now() + pollNs / 1e6;
      const relax = this.relax;
      const spinWait = this.spinWait;
      if (spinWait !== undefined) {
        const w = q.usedIdxWord();
        do {
          if (spinWait(w.arr, w.index, w.value, 8000)) return true;
          if (relax !== undefined) relax();
        } while (performance.now() < until);
      } else {
        // the clock every 1024 spins (a few us): performance.now() is slow
        // here and allocates; reading it every spin means a scavenge every few ms
        let spins = 0;
        for (;;) {
          if (q.hasUsed()) return true;
          if ((++spins & 1023) !== 0) continue;
          if (performance.now() >= until) break;
          if (relax !== undefined) relax();
        }
      }
    }
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const snap = this.call.snapshot();
      if (q.enableInterrupts()) {
        q.disableInterrupts();
        return true;
      }
      const left = deadline - performance.now();
      if (left <= 0) {
        q.disableInterrupts();
        return false;
      }
      this.sleeps++;
      const t0 = this.pollMaxNs > 0 ? performance.now() : 0;
      this.call.wait(snap, left);
      if (q.hasUsed()) {
        q.disableInterrupts();
        if (this.pollMaxNs > 0) this.noteSleep((performance.now() - t0) * 1e6);
        return true;
      }
    }
  }
}

export function openDriverQueue(desc: DriverQueueDesc, mem?: GuestMemory): DriverHandle {
  return new DriverHandle(desc, mem);
}

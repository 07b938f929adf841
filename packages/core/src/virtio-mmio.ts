/**
 * The virtio-mmio transport, version 2 (virtio 1.2, 4.2): the register file a
 * VMM traps on MMIO exits, driving a {@link VirtioDevice}.
 *
 *   0x000 MagicValue R        0x050 QueueNotify W        0x0a0/4 QueueDevice W
 *   0x004 Version R (2)       0x060 InterruptStatus R    0x0ac SHMSel W
 *   0x008 DeviceID R          0x064 InterruptACK W       0x0b0/4 SHMLen R (~0)
 *   0x00c VendorID R          0x070 Status RW            0x0b8/c SHMBase R (~0)
 *   0x010 DeviceFeatures R    0x080/4 QueueDesc W        0x0c0 QueueReset (absent)
 *   0x014 DeviceFeaturesSel W 0x090/4 QueueDriver W      0x0fc ConfigGeneration R
 *   0x020 DriverFeatures W    0x030 QueueSel W           0x100+ Config RW
 *   0x024 DriverFeaturesSel W 0x034 QueueNumMax R
 *   0x038 QueueNum W          0x044 QueueReady RW
 *
 * Registers below 0x100 take 32-bit aligned accesses only; the config space
 * takes 1, 2 and 4-byte accesses. Anything else (bad size, unknown offset,
 * write to a read-only register, read of a write-only one, a write the
 * current state forbids) is ignored, reads return 0, and `onWarning` says
 * why. Nothing a driver writes makes this class throw.
 *
 * Status rules: bits are only ever added (writing 0 resets); FEATURES_OK is
 * refused (stays clear) when the driver accepted features the device did
 * not offer, did not accept VERSION_1, or the device says no; DRIVER_OK
 * needs FEATURES_OK; at DRIVER_OK every ready queue's rings must be below
 * 2^53 and aligned (desc 16, avail 2, used 4), otherwise the device is not
 * activated and gets DEVICE_NEEDS_RESET. Queue registers are writable only
 * before DRIVER_OK and while the selected queue is not ready.
 */
import { gpaFromParts } from "./guest-memory.js";
import { Align, isValidQueueSize } from "./split-ring.js";
import { featureBit, hasFeature, Status, VirtioFeature } from "./virtio.js";

export interface QueueConfig {
  index: number;
  size: number;
  /** Guest-physical addresses; -1 when not representable (>= 2^53). */
  descAddr: number;
  availAddr: number;
  usedAddr: number;
  ready: boolean;
}

export interface VirtioDevice {
  readonly deviceId: number;
  readonly deviceFeatures: bigint;
  readonly numQueues: number;
  readonly queueMaxSize: number;
  readConfig(offset: number, size: 1 | 2 | 4): number;
  writeConfig(offset: number, size: 1 | 2 | 4, value: number): void;
  readonly configGeneration: number;
  /** Called when the driver sets FEATURES_OK; return an error string to refuse (FEATURES_OK then stays clear). */
  negotiate(driverFeatures: bigint): string | undefined;
  /**
   * DRIVER_OK: the device starts serving these queues (the ready ones only,
   * in index order). May throw: the transport then sets DEVICE_NEEDS_RESET
   * and raises a config interrupt. Status already reads DRIVER_OK here, so
   * the device may signal used buffers from inside.
   */
  activate(features: bigint, queues: QueueConfig[]): void;
  /**
   * Status written 0: stop everything; in-flight requests must be finished or
   * cancelled before this returns (or before the promise resolves). While a
   * returned promise is pending the Status register keeps reading its old,
   * non-zero value, so the driver waits.
   */
  reset(): void | Promise<void>;
  /** QueueNotify written (for a ready queue, after DRIVER_OK). */
  notify(queueIndex: number): void;
}

export interface VirtioMmioOptions {
  /**
   * The device's interrupt line. Called with the new InterruptStatus each
   * time the device raises an interrupt (non-zero: assert, or re-assert for
   * edge-triggered lines) and when an ACK or a reset brings it to 0
   * (deassert, for level-triggered lines).
   */
  onInterrupt?(status: number): void;
  /** A guest access was ignored or refused, or the device failed; the message says why. */
  onWarning?(msg: string): void;
}

/** Register offsets (virtio 1.2, 4.2.2). */
export const MmioReg = {
  MAGIC_VALUE: 0x000,
  VERSION: 0x004,
  DEVICE_ID: 0x008,
  VENDOR_ID: 0x00c,
  DEVICE_FEATURES: 0x010,
  DEVICE_FEATURES_SEL: 0x014,
  DRIVER_FEATURES: 0x020,
  DRIVER_FEATURES_SEL: 0x024,
  QUEUE_SEL: 0x030,
  QUEUE_NUM_MAX: 0x034,
  QUEUE_NUM: 0x038,
  QUEUE_READY: 0x044,
  QUEUE_NOTIFY: 0x050,
  INTERRUPT_STATUS: 0x060,
  INTERRUPT_ACK: 0x064,
  STATUS: 0x070,
  QUEUE_DESC_LOW: 0x080,
  QUEUE_DESC_HIGH: 0x084,
  QUEUE_DRIVER_LOW: 0x090,
  QUEUE_DRIVER_HIGH: 0x094,
  QUEUE_DEVICE_LOW: 0x0a0,
  QUEUE_DEVICE_HIGH: 0x0a4,
  SHM_SEL: 0x0ac,
  SHM_LEN_LOW: 0x0b0,
  SHM_LEN_HIGH: 0x0b4,
  SHM_BASE_LOW: 0x0b8,
  SHM_BASE_HIGH: 0x0bc,
  QUEUE_RESET: 0x0c0,
  CONFIG_GENERATION: 0x0fc,
  CONFIG: 0x100,
} as const;

/** 'virt', little-endian. */
export const MMIO_MAGIC = 0x7472_6976;
export const MMIO_VERSION = 2;
/** Our vendor ID: "VBLK" as little-endian ASCII. */
export const MMIO_VENDOR_ID = 0x4b4c_4256;

/** InterruptStatus bits. */
export const MmioInterrupt = {
  /** Used buffer notification. */
  VRING: 1,
  /** Configuration change notification. */
  CONFIG: 2,
} as const;

/** VIRTIO_F_RING_RESET: needs QueueReset, which this transport does not implement. */
const RING_RESET_BIT = 40;

/**
 * Features this transport cannot carry and removes from the device's offer:
 * RING_RESET (no QueueReset register), NOTIFICATION_DATA (notify() gets only
 * the queue index) and SR_IOV (PCI only).
 */
export const MMIO_UNSUPPORTED_FEATURES =
  featureBit(RING_RESET_BIT) | featureBit(VirtioFeature.NOTIFICATION_DATA) | featureBit(VirtioFeature.SR_IOV);

/** Status bits a driver may set (SUSPEND and the reserved bit are not supported; NEEDS_RESET is the device's). */
const DRIVER_STATUS_BITS =
  Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK | Status.DRIVER_OK | Status.FAILED;

const hex = (v: number): string => `0x${v.toString(16)}`;

export class VirtioMmioTransport {
  readonly device: VirtioDevice;
  /** The feature bits the driver sees: the device's offer minus {@link MMIO_UNSUPPORTED_FEATURES}. */
  readonly deviceFeatures: bigint;
  private readonly featLo: number;
  private readonly featHi: number;
  private readonly nq: number;
  private readonly qmax: number;
  private readonly onInterrupt: (status: number) => void;
  private readonly onWarning: (msg: string) => void;

  private st = 0;
  private isr = 0;
  private devFeatSel = 0;
  private drvFeatSel = 0;
  private drvFeatLo = 0;
  private drvFeatHi = 0;
  private negotiated = 0n;
  private qsel = 0;
  private inReset = false;
  private resetPromise: Promise<void> | undefined;
  private error: string | undefined;

  // Per-queue registers.
  private readonly qNum: Uint32Array;
  private readonly qReady: Uint8Array;
  private readonly qDescLo: Uint32Array;
  private readonly qDescHi: Uint32Array;
  private readonly qDrvLo: Uint32Array;
  private readonly qDrvHi: Uint32Array;
  private readonly qDevLo: Uint32Array;
  private readonly qDevHi: Uint32Array;

  constructor(device: VirtioDevice, opts: VirtioMmioOptions = {}) {
    this.device = device;
    this.onInterrupt = opts.onInterrupt ?? (() => {});
    this.onWarning = opts.onWarning ?? (() => {});
    const nq = device.numQueues;
    if (!Number.isInteger(nq) || nq < 1 || nq > 0xffff) {
      throw new Error(`virtio-mmio: device numQueues must be an integer in 1..65535, got ${nq}`);
    }
    if (!isValidQueueSize(device.queueMaxSize)) {
      throw new Error(
        `virtio-mmio: device queueMaxSize must be a power of two in 1..32768, got ${device.queueMaxSize}`,
      );
    }
    if (!hasFeature(device.deviceFeatures, VirtioFeature.VERSION_1)) {
      throw new Error("virtio-mmio version 2 needs a device that offers VIRTIO_F_VERSION_1");
    }
    const dropped = device.deviceFeatures & MMIO_UNSUPPORTED_FEATURES;
    if (dropped !== 0n) {
      this.onWarning(
        `virtio-mmio: not offering feature bits 0x${dropped.toString(16)} (unsupported by this transport)`,
      );
    }
    this.deviceFeatures = device.deviceFeatures & ~MMIO_UNSUPPORTED_FEATURES & 0xffff_ffff_ffff_ffffn;
    this.featLo = Number(this.deviceFeatures & 0xffff_ffffn);
    this.featHi = Number(this.deviceFeatures >> 32n);
    this.nq = nq;
    this.qmax = device.queueMaxSize;
    this.qNum = new Uint32Array(nq).fill(this.qmax);
    this.qReady = new Uint8Array(nq);
    this.qDescLo = new Uint32Array(nq);
    this.qDescHi = new Uint32Array(nq);
    this.qDrvLo = new Uint32Array(nq);
    this.qDrvHi = new Uint32Array(nq);
    this.qDevLo = new Uint32Array(nq);
    this.qDevHi = new Uint32Array(nq);
  }

  // ---- state seen from the VMM ----

  /** The Status register (reads the pre-reset value while an async reset is pending). */
  get status(): number {
    return this.st;
  }
  /** Features accepted at FEATURES_OK (0n before, and after a reset). */
  get negotiatedFeatures(): bigint {
    return this.negotiated;
  }
  get interruptStatus(): number {
    return this.isr;
  }
  /** Why the device last went to DEVICE_NEEDS_RESET (or why a reset failed). */
  get lastError(): string | undefined {
    return this.error;
  }
  /** A device reset is in progress (Status still reads its old value). */
  get resetting(): boolean {
    return this.inReset;
  }
  /** Every queue's registers, in index order. */
  get queues(): QueueConfig[] {
    const out: QueueConfig[] = [];
    for (let i = 0; i < this.nq; i++) out.push(this.queueConfig(i));
    return out;
  }

  // ---- the register file ----

  read(offset: number, size: 1 | 2 | 4): number {
    if (offset >= MmioReg.CONFIG) {
      if ((size !== 1 && size !== 2 && size !== 4) || !Number.isInteger(offset)) {
        this.warn(`config read of size ${size} at ${hex(offset)} ignored: sizes are 1, 2 and 4`);
        return 0;
      }
      try {
        return this.device.readConfig(offset - MmioReg.CONFIG, size) >>> 0;
      } catch (e) {
        this.warn(`device config read at ${hex(offset)} failed: ${errMsg(e)}`);
        return 0;
      }
    }
    if (size !== 4 || (offset & 3) !== 0) {
      this.warn(
        `register read of size ${size} at ${hex(offset)} ignored: registers take 32-bit aligned accesses`,
      );
      return 0;
    }
    switch (offset) {
      case MmioReg.MAGIC_VALUE:
        return MMIO_MAGIC;
      case MmioReg.VERSION:
        return MMIO_VERSION;
      case MmioReg.DEVICE_ID:
        return this.device.deviceId >>> 0;
      case MmioReg.VENDOR_ID:
        return MMIO_VENDOR_ID;
      case MmioReg.DEVICE_FEATURES:
        if (this.devFeatSel === 0) return this.featLo;
        if (this.devFeatSel === 1) return this.featHi;
        return 0;
      case MmioReg.QUEUE_NUM_MAX:
        return this.qsel < this.nq ? this.qmax : 0;
      case MmioReg.QUEUE_READY:
        return this.qsel < this.nq ? this.qReady[this.qsel]! : 0;
      case MmioReg.INTERRUPT_STATUS:
        return this.isr;
      case MmioReg.STATUS:
        return this.st;
      case MmioReg.SHM_LEN_LOW:
      case MmioReg.SHM_LEN_HIGH:
      case MmioReg.SHM_BASE_LOW:
      case MmioReg.SHM_BASE_HIGH:
        // No shared memory regions: length -1 and base ~0 for every SHMSel.
        return 0xffff_ffff;
      case MmioReg.CONFIG_GENERATION:
        return this.device.configGeneration >>> 0;
      case MmioReg.DEVICE_FEATURES_SEL:
      case MmioReg.DRIVER_FEATURES:
      case MmioReg.DRIVER_FEATURES_SEL:
      case MmioReg.QUEUE_SEL:
      case MmioReg.QUEUE_NUM:
      case MmioReg.QUEUE_NOTIFY:
      case MmioReg.INTERRUPT_ACK:
      case MmioReg.QUEUE_DESC_LOW:
      case MmioReg.QUEUE_DESC_HIGH:
      case MmioReg.QUEUE_DRIVER_LOW:
      case MmioReg.QUEUE_DRIVER_HIGH:
      case MmioReg.QUEUE_DEVICE_LOW:
      case MmioReg.QUEUE_DEVICE_HIGH:
      case MmioReg.SHM_SEL:
        this.warn(`read of write-only register ${hex(offset)}: returning 0`);
        return 0;
      default:
        this.warn(`read of undefined register ${hex(offset)}: returning 0`);
        return 0;
    }
  }

  write(offset: number, size: 1 | 2 | 4, value: number): void {
    if (this.inReset) {
      this.warn(`write to ${hex(offset)} ignored: a device reset is in progress (wait for Status to read 0)`);
      return;
    }
    if (offset >= MmioReg.CONFIG) {
      if ((size !== 1 && size !== 2 && size !== 4) || !Number.isInteger(offset)) {
        this.warn(`config write of size ${size} at ${hex(offset)} ignored: sizes are 1, 2 and 4`);
        return;
      }
      const v = size === 4 ? value >>> 0 : value & (size === 2 ? 0xffff : 0xff);
      try {
        this.device.writeConfig(offset - MmioReg.CONFIG, size, v);
      } catch (e) {
        this.warn(`device config write at ${hex(offset)} failed: ${errMsg(e)}`);
      }
      return;
    }
    if (size !== 4 || (offset & 3) !== 0) {
      this.warn(
        `register write of size ${size} at ${hex(offset)} ignored: registers take 32-bit aligned accesses`,
      );
      return;
    }
    value >>>= 0;
    switch (offset) {
      case MmioReg.QUEUE_NOTIFY:
        this.queueNotify(value);
        return;
      case MmioReg.INTERRUPT_ACK:
        this.interruptAck(value);
        return;
      case MmioReg.STATUS:
        this.writeStatus(value);
        return;
      case MmioReg.DEVICE_FEATURES_SEL:
        this.devFeatSel = value;
        return;
      case MmioReg.DRIVER_FEATURES_SEL:
        this.drvFeatSel = value;
        return;
      case MmioReg.DRIVER_FEATURES:
        this.writeDriverFeatures(value);
        return;
      case MmioReg.QUEUE_SEL:
        this.qsel = value;
        return;
      case MmioReg.SHM_SEL:
        // No shared memory regions: every selector reads back length and base ~0.
        return;
      case MmioReg.QUEUE_NUM:
      case MmioReg.QUEUE_READY:
      case MmioReg.QUEUE_DESC_LOW:
      case MmioReg.QUEUE_DESC_HIGH:
      case MmioReg.QUEUE_DRIVER_LOW:
      case MmioReg.QUEUE_DRIVER_HIGH:
      case MmioReg.QUEUE_DEVICE_LOW:
      case MmioReg.QUEUE_DEVICE_HIGH:
        this.writeQueueReg(offset, value);
        return;
      case MmioReg.QUEUE_RESET:
        this.warn("QueueReset write ignored: VIRTIO_F_RING_RESET is not offered");
        return;
      case MmioReg.MAGIC_VALUE:
      case MmioReg.VERSION:
      case MmioReg.DEVICE_ID:
      case MmioReg.VENDOR_ID:
      case MmioReg.DEVICE_FEATURES:
      case MmioReg.QUEUE_NUM_MAX:
      case MmioReg.INTERRUPT_STATUS:
      case MmioReg.SHM_LEN_LOW:
      case MmioReg.SHM_LEN_HIGH:
      case MmioReg.SHM_BASE_LOW:
      case MmioReg.SHM_BASE_HIGH:
      case MmioReg.CONFIG_GENERATION:
        this.warn(`write of ${hex(value)} to read-only register ${hex(offset)} ignored`);
        return;
      default:
        this.warn(`write of ${hex(value)} to undefined register ${hex(offset)} ignored`);
    }
  }

  // ---- the device side ----

  /**
   * The device put buffers in queue `queueIndex`'s used ring: set bit 0 of
   * InterruptStatus and raise the line. Ignored (returns false) before
   * DRIVER_OK, during a reset, or after FAILED.
   */
  signalUsedBuffer(queueIndex: number): boolean {
    if ((this.st & Status.DRIVER_OK) === 0 || (this.st & Status.FAILED) !== 0 || this.inReset) return false;
    if (!(queueIndex >= 0 && queueIndex < this.nq)) {
      this.warn(`used-buffer interrupt for queue ${queueIndex} ignored: the device has ${this.nq} queues`);
      return false;
    }
    this.raise(MmioInterrupt.VRING);
    return true;
  }

  /**
   * The configuration space changed: set bit 1 and raise the line. Like QEMU,
   * only once the driver is live (DRIVER_OK); returns whether it was raised.
   * The device must bump its configGeneration itself.
   */
  signalConfigChange(): boolean {
    if ((this.st & Status.DRIVER_OK) === 0 || this.inReset) return false;
    this.raise(MmioInterrupt.CONFIG);
    return true;
  }

  /**
   * The device hit an error it cannot recover from. Records `reason` as
   * {@link lastError}; if the driver got as far as FEATURES_OK or DRIVER_OK,
   * sets DEVICE_NEEDS_RESET and raises a configuration change interrupt.
   */
  setNeedsReset(reason: string): void {
    this.error = reason;
    this.warn(`device needs reset: ${reason}`);
    if (this.inReset) return;
    if ((this.st & (Status.DRIVER_OK | Status.FEATURES_OK)) === 0) return;
    if ((this.st & Status.DEVICE_NEEDS_RESET) !== 0) return;
    this.st |= Status.DEVICE_NEEDS_RESET;
    this.raise(MmioInterrupt.CONFIG);
  }

  /**
   * Reset the device, as a write of 0 to Status does (also usable by the VMM
   * for a system reset). Transport state returns to its initial values at
   * once; Status reads 0 when the device's reset completes. Returns the
   * device's promise when its reset is asynchronous. A failed reset leaves
   * Status at its old value plus DEVICE_NEEDS_RESET; writing 0 again retries.
   */
  reset(): void | Promise<void> {
    if (this.inReset) return this.resetPromise;
    const old = this.st;
    this.inReset = true; // from here on the device may not raise interrupts
    this.clearTransportState();
    let r: void | Promise<void>;
    try {
      r = this.device.reset();
    } catch (e) {
      this.inReset = false;
      this.resetFailed(old, e);
      return;
    }
    if (r !== undefined && typeof (r as Promise<void>).then === "function") {
      const p = Promise.resolve(r).then(
        () => {
          this.inReset = false;
          this.resetPromise = undefined;
          this.clearTransportState();
          this.st = 0;
        },
        (e: unknown) => {
          this.inReset = false;
          this.resetPromise = undefined;
          this.resetFailed(old, e);
        },
      );
      this.resetPromise = p;
      return p;
    }
    this.inReset = false;
    this.clearTransportState();
    this.st = 0;
  }

  // ---- internals ----

  private resetFailed(old: number, e: unknown): void {
    this.error = `device reset failed: ${errMsg(e)}`;
    this.warn(this.error);
    this.st = (old | Status.DEVICE_NEEDS_RESET) & 0xff;
    if (this.st === 0) this.st = Status.DEVICE_NEEDS_RESET;
  }

  private clearTransportState(): void {
    this.negotiated = 0n;
    this.devFeatSel = 0;
    this.drvFeatSel = 0;
    this.drvFeatLo = 0;
    this.drvFeatHi = 0;
    this.qsel = 0;
    this.qNum.fill(this.qmax);
    this.qReady.fill(0);
    this.qDescLo.fill(0);
    this.qDescHi.fill(0);
    this.qDrvLo.fill(0);
    this.qDrvHi.fill(0);
    this.qDevLo.fill(0);
    this.qDevHi.fill(0);
    if (this.isr !== 0) {
      this.isr = 0;
      this.onInterrupt(0);
    }
  }

  private raise(bit: number): void {
    this.isr |= bit;
    this.onInterrupt(this.isr);
  }

  private interruptAck(value: number): void {
    if ((value & ~(MmioInterrupt.VRING | MmioInterrupt.CONFIG)) !== 0) {
      this.warn(`InterruptACK ${hex(value)} has undefined bits; acknowledging bits 0-1 only`);
    }
    const next = this.isr & ~value;
    if (next === this.isr) return;
    this.isr = next;
    this.onInterrupt(next);
  }

  private queueNotify(value: number): void {
    const st = this.st;
    if ((st & (Status.DRIVER_OK | Status.DEVICE_NEEDS_RESET | Status.FAILED)) !== Status.DRIVER_OK) {
      this.warn(
        (st & Status.DRIVER_OK) === 0
          ? `QueueNotify ${value} ignored: DRIVER_OK is not set`
          : `QueueNotify ${value} ignored: the device needs a reset or the driver failed`,
      );
      return;
    }
    if (value >= this.nq) {
      this.warn(`QueueNotify ${value} ignored: the device has ${this.nq} queues`);
      return;
    }
    if (this.qReady[value] === 0) {
      this.warn(`QueueNotify ${value} ignored: the queue is not ready`);
      return;
    }
    try {
      this.device.notify(value);
    } catch (e) {
      this.setNeedsReset(`notify of queue ${value} failed: ${errMsg(e)}`);
    }
  }

  private writeDriverFeatures(value: number): void {
    if ((this.st & (Status.FEATURES_OK | Status.DRIVER_OK)) !== 0) {
      this.warn("DriverFeatures write ignored: features cannot change after FEATURES_OK (reset first)");
      return;
    }
    if (this.drvFeatSel === 0) this.drvFeatLo = value;
    else if (this.drvFeatSel === 1) this.drvFeatHi = value;
    else this.warn(`DriverFeatures write ignored: DriverFeaturesSel is ${this.drvFeatSel} (0 or 1)`);
  }

  private writeQueueReg(offset: number, value: number): void {
    const q = this.qsel;
    if (q >= this.nq) {
      this.warn(
        `queue register ${hex(offset)} write ignored: QueueSel ${q} is not a queue (${this.nq} queues)`,
      );
      return;
    }
    if ((this.st & Status.DRIVER_OK) !== 0) {
      this.warn(`queue ${q} register ${hex(offset)} write ignored: queues cannot change after DRIVER_OK`);
      return;
    }
    if (offset === MmioReg.QUEUE_READY) {
      this.writeQueueReady(q, value);
      return;
    }
    if (this.qReady[q] !== 0) {
      this.warn(
        `queue ${q} register ${hex(offset)} write ignored: the queue is ready (write 0 to QueueReady first)`,
      );
      return;
    }
    switch (offset) {
      case MmioReg.QUEUE_NUM:
        if (!this.validSize(value)) {
          this.warn(
            `queue ${q}: QueueNum ${value} is not a power of two in 1..${this.qmax}; the queue cannot be made ready`,
          );
        }
        this.qNum[q] = value;
        return;
      case MmioReg.QUEUE_DESC_LOW:
        this.qDescLo[q] = value;
        return;
      case MmioReg.QUEUE_DESC_HIGH:
        this.qDescHi[q] = value;
        return;
      case MmioReg.QUEUE_DRIVER_LOW:
        this.qDrvLo[q] = value;
        return;
      case MmioReg.QUEUE_DRIVER_HIGH:
        this.qDrvHi[q] = value;
        return;
      case MmioReg.QUEUE_DEVICE_LOW:
        this.qDevLo[q] = value;
        return;
      case MmioReg.QUEUE_DEVICE_HIGH:
        this.qDevHi[q] = value;
        return;
    }
  }

  private validSize(n: number): boolean {
    return n <= this.qmax && isValidQueueSize(n);
  }

  private writeQueueReady(q: number, value: number): void {
    if (value === 0) {
      this.qReady[q] = 0;
      return;
    }
    if (value !== 1) {
      this.warn(`queue ${q}: QueueReady ${value} ignored (0 or 1)`);
      return;
    }
    if (!this.validSize(this.qNum[q]!)) {
      this.warn(
        `queue ${q} not made ready: QueueNum ${this.qNum[q]} is not a power of two in 1..${this.qmax}`,
      );
      return;
    }
    if (
      (this.qDescLo[q]! | this.qDescHi[q]!) === 0 ||
      (this.qDrvLo[q]! | this.qDrvHi[q]!) === 0 ||
      (this.qDevLo[q]! | this.qDevHi[q]!) === 0
    ) {
      this.warn(
        `queue ${q} not made ready: the descriptor, driver and device area addresses must all be set`,
      );
      return;
    }
    this.qReady[q] = 1;
  }

  private queueConfig(i: number): QueueConfig {
    return {
      index: i,
      size: this.qNum[i]!,
      descAddr: gpaFromParts(this.qDescHi[i]!, this.qDescLo[i]!),
      availAddr: gpaFromParts(this.qDrvHi[i]!, this.qDrvLo[i]!),
      usedAddr: gpaFromParts(this.qDevHi[i]!, this.qDevLo[i]!),
      ready: this.qReady[i] === 1,
    };
  }

  private writeStatus(value: number): void {
    if (value === 0) {
      void this.reset();
      return;
    }
    const old = this.st;
    if (value > 0xff) this.warn(`Status ${hex(value)} has bits above the 8-bit field; ignoring them`);
    let want = value & 0xff;
    if ((want & ~DRIVER_STATUS_BITS & ~Status.DEVICE_NEEDS_RESET) !== 0) {
      this.warn(
        `Status ${hex(want)}: unsupported bits ${hex(want & ~DRIVER_STATUS_BITS & ~Status.DEVICE_NEEDS_RESET)} ignored`,
      );
    }
    if ((want & Status.DEVICE_NEEDS_RESET & ~old) !== 0) {
      this.warn("Status: the driver cannot set DEVICE_NEEDS_RESET; ignored");
    }
    if ((old & ~want & DRIVER_STATUS_BITS) !== 0) {
      this.warn(
        `Status ${hex(want)} would clear bits ${hex(old & ~want & DRIVER_STATUS_BITS)}: status bits are only cleared by a reset (writing 0)`,
      );
    }
    want &= DRIVER_STATUS_BITS;
    let add = want & ~old;
    if (add === 0) return;

    if ((add & Status.FAILED) !== 0) {
      // The driver gave up: take FAILED, and nothing else until a reset.
      this.st = old | Status.FAILED;
      if ((add & ~Status.FAILED) !== 0) this.warn("Status: bits set together with FAILED ignored");
      return;
    }
    if ((old & Status.FAILED) !== 0) {
      this.warn(`Status ${hex(value)} ignored: the driver set FAILED; reset the device first`);
      return;
    }
    if ((old & Status.DEVICE_NEEDS_RESET) !== 0 && (add & (Status.FEATURES_OK | Status.DRIVER_OK)) !== 0) {
      this.warn("Status: FEATURES_OK/DRIVER_OK ignored: the device needs a reset");
      add &= ~(Status.FEATURES_OK | Status.DRIVER_OK);
    }

    let st = old | (add & (Status.ACKNOWLEDGE | Status.DRIVER));
    if ((add & Status.FEATURES_OK) !== 0) {
      const why = this.checkFeatures();
      if (why === undefined) {
        st |= Status.FEATURES_OK;
      } else {
        this.warn(`FEATURES_OK refused: ${why}`);
      }
    }
    this.st = st;
    if ((add & Status.DRIVER_OK) !== 0) this.driverOk();
  }

  /** Decide on FEATURES_OK; undefined means accepted (and negotiated is set). */
  private checkFeatures(): string | undefined {
    const f = (BigInt(this.drvFeatHi) << 32n) | BigInt(this.drvFeatLo);
    const extra = f & ~this.deviceFeatures;
    if (extra !== 0n)
      return `the driver accepted feature bits the device did not offer: 0x${extra.toString(16)}`;
    if (!hasFeature(f, VirtioFeature.VERSION_1)) {
      return "VIRTIO_F_VERSION_1 was not accepted (required by virtio-mmio version 2)";
    }
    let why: string | undefined;
    try {
      why = this.device.negotiate(f);
    } catch (e) {
      why = `device error: ${errMsg(e)}`;
    }
    if (why !== undefined) return `the device refused features 0x${f.toString(16)}: ${why}`;
    this.negotiated = f;
    return undefined;
  }

  private driverOk(): void {
    if ((this.st & Status.FEATURES_OK) === 0) {
      this.warn("DRIVER_OK refused: FEATURES_OK is not set");
      return;
    }
    const ready: QueueConfig[] = [];
    let problem: string | undefined;
    for (let i = 0; i < this.nq; i++) {
      if (this.qReady[i] === 0) continue;
      const qc = this.queueConfig(i);
      problem ??= ringProblem(qc);
      ready.push(qc);
    }
    this.st |= Status.DRIVER_OK;
    if (problem !== undefined) {
      this.setNeedsReset(problem);
      return;
    }
    try {
      this.device.activate(this.negotiated, ready);
    } catch (e) {
      this.setNeedsReset(`device activation failed: ${errMsg(e)}`);
    }
  }

  private warn(msg: string): void {
    this.onWarning(msg);
  }
}

function ringProblem(q: QueueConfig): string | undefined {
  const areas: [string, number, number][] = [
    ["descriptor table", q.descAddr, Align.DESC],
    ["driver area (avail ring)", q.availAddr, Align.AVAIL],
    ["device area (used ring)", q.usedAddr, Align.USED],
  ];
  for (const [name, addr, align] of areas) {
    if (addr < 0) return `queue ${q.index}: ${name} address is at or above 2^53`;
    if (addr % align !== 0)
      return `queue ${q.index}: ${name} address ${hex(addr)} is not ${align}-byte aligned`;
  }
  return undefined;
}

function errMsg(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { BlkConfigOffset, BlkConfigSpace } from "../dist/blk-config.js";
import { BlkFeature } from "../dist/blk-constants.js";
import { DeviceId, featureBit, featuresOf, Status as S, VirtioFeature as V } from "../dist/virtio.js";
import {
  MMIO_MAGIC,
  MMIO_VENDOR_ID,
  type QueueConfig,
  MmioReg as R,
  type VirtioDevice,
  VirtioMmioTransport,
} from "../dist/virtio-mmio.js";

const OFFERED = featuresOf(
  V.VERSION_1,
  V.RING_EVENT_IDX,
  V.RING_INDIRECT_DESC,
  BlkFeature.FLUSH,
  BlkFeature.MQ,
);
const OFFERED_LO = Number(OFFERED & 0xffff_ffffn);
const OFFERED_HI = Number(OFFERED >> 32n);

/** A test double for the device: records what the transport asks of it. */
class FakeDevice implements VirtioDevice {
  readonly deviceId = DeviceId.BLOCK;
  deviceFeatures = OFFERED;
  numQueues = 2;
  queueMaxSize = 256;
  configGeneration = 0;
  readonly config = new Uint8Array(16).map((_, i) => 0x10 + i);
  readonly configWrites: [number, number, number][] = [];
  readonly negotiations: bigint[] = [];
  readonly activations: { features: bigint; queues: QueueConfig[] }[] = [];
  readonly notified: number[] = [];
  resets = 0;
  refuse: string | undefined;
  activateError: Error | undefined;
  notifyError: Error | undefined;
  resetImpl: (() => void | Promise<void>) | undefined;

  readConfig(offset: number, size: 1 | 2 | 4): number {
    let v = 0;
    for (let i = 0; i < size; i++) v += (this.config[offset + i] ?? 0) * 2 ** (8 * i);
    return v;
  }
  writeConfig(offset: number, size: 1 | 2 | 4, value: number): void {
    this.configWrites.push([offset, size, value]);
  }
  negotiate(f: bigint): string | undefined {
    this.negotiations.push(f);
    return this.refuse;
  }
  activate(features: bigint, queues: QueueConfig[]): void {
    if (this.activateError) throw this.activateError;
    this.activations.push({ features, queues });
  }
  reset(): void | Promise<void> {
    this.resets++;
    return this.resetImpl?.();
  }
  notify(q: number): void {
    if (this.notifyError) throw this.notifyError;
    this.notified.push(q);
  }
}

interface Ring {
  size: number;
  desc: number;
  avail: number;
  used: number;
}

function setup(dev = new FakeDevice()) {
  const irqs: number[] = [];
  const warnings: string[] = [];
  const t = new VirtioMmioTransport(dev, {
    onInterrupt: (s) => irqs.push(s),
    onWarning: (m) => warnings.push(m),
  });
  const r = (off: number) => t.read(off, 4);
  const w = (off: number, v: number) => t.write(off, 4, v);
  const w64 = (lo: number, addr: number) => {
    w(lo, addr % 2 ** 32);
    w(lo + 4, Math.floor(addr / 2 ** 32));
  };
  const addStatus = (bits: number) => w(R.STATUS, r(R.STATUS) | bits);
  const writeFeatures = (f: bigint) => {
    w(R.DRIVER_FEATURES_SEL, 1);
    w(R.DRIVER_FEATURES, Number(f >> 32n));
    w(R.DRIVER_FEATURES_SEL, 0);
    w(R.DRIVER_FEATURES, Number(f & 0xffff_ffffn));
  };
  const setupQueue = (i: number, q: Ring, ready = true) => {
    w(R.QUEUE_SEL, i);
    w(R.QUEUE_NUM, q.size);
    w64(R.QUEUE_DESC_LOW, q.desc);
    w64(R.QUEUE_DRIVER_LOW, q.avail);
    w64(R.QUEUE_DEVICE_LOW, q.used);
    if (ready) w(R.QUEUE_READY, 1);
  };
  /** The Linux-style sequence up to FEATURES_OK; returns whether FEATURES_OK stuck. */
  const negotiate = (f: bigint = OFFERED) => {
    w(R.STATUS, 0);
    addStatus(S.ACKNOWLEDGE);
    addStatus(S.DRIVER);
    writeFeatures(f);
    addStatus(S.FEATURES_OK);
    return (r(R.STATUS) & S.FEATURES_OK) !== 0;
  };
  const ring0: Ring = { size: 128, desc: 0x10000, avail: 0x10800, used: 0x11000 };
  const ring1: Ring = { size: 256, desc: 0x1_0002_0000, avail: 0x20000 + 4096, used: 0x22000 };
  /** Full init: both queues ready, DRIVER_OK. */
  const init = () => {
    negotiate();
    setupQueue(0, ring0);
    setupQueue(1, ring1);
    addStatus(S.DRIVER_OK);
  };
  return {
    t,
    dev,
    irqs,
    warnings,
    r,
    w,
    w64,
    addStatus,
    writeFeatures,
    setupQueue,
    negotiate,
    init,
    ring0,
    ring1,
  };
}

const initialQueue = (index: number, max = 256): QueueConfig => ({
  index,
  size: max,
  descAddr: 0,
  availAddr: 0,
  usedAddr: 0,
  ready: false,
});

describe("identification and feature registers", () => {
  it("magic, version 2, device and vendor IDs", () => {
    const { r } = setup();
    expect(r(R.MAGIC_VALUE)).toBe(MMIO_MAGIC);
    expect(MMIO_MAGIC).toBe(0x74726976);
    expect(r(R.VERSION)).toBe(2);
    expect(r(R.DEVICE_ID)).toBe(2);
    expect(r(R.VENDOR_ID)).toBe(MMIO_VENDOR_ID);
    // "VBLK" little-endian
    expect(Buffer.from(new Uint32Array([MMIO_VENDOR_ID]).buffer).toString("latin1")).toBe("VBLK");
  });

  it("DeviceFeatures shows word 0 or 1 as selected, 0 for other selectors", () => {
    const { r, w, warnings } = setup();
    expect(r(R.DEVICE_FEATURES)).toBe(OFFERED_LO); // selector starts at 0
    w(R.DEVICE_FEATURES_SEL, 1);
    expect(r(R.DEVICE_FEATURES)).toBe(OFFERED_HI);
    w(R.DEVICE_FEATURES_SEL, 2);
    expect(r(R.DEVICE_FEATURES)).toBe(0);
    w(R.DEVICE_FEATURES_SEL, 0xffff_ffff);
    expect(r(R.DEVICE_FEATURES)).toBe(0);
    w(R.DEVICE_FEATURES_SEL, 0);
    expect(r(R.DEVICE_FEATURES)).toBe(OFFERED_LO);
    expect(warnings).toEqual([]);
  });

  it("features the transport cannot carry are not offered", () => {
    const dev = new FakeDevice();
    dev.deviceFeatures = OFFERED | featureBit(40) | featureBit(V.NOTIFICATION_DATA);
    const { t, r, w, warnings } = setup(dev);
    expect(t.deviceFeatures).toBe(OFFERED);
    w(R.DEVICE_FEATURES_SEL, 1);
    expect(r(R.DEVICE_FEATURES)).toBe(OFFERED_HI);
    expect(warnings.join()).toMatch(/not offering feature bits 0x14000000000/);
  });

  it("refuses devices it cannot present", () => {
    const noV1 = new FakeDevice();
    noV1.deviceFeatures = featureBit(V.RING_EVENT_IDX);
    expect(() => new VirtioMmioTransport(noV1)).toThrow(/VERSION_1/);
    const noQueues = new FakeDevice();
    noQueues.numQueues = 0;
    expect(() => new VirtioMmioTransport(noQueues)).toThrow(/numQueues/);
    const badMax = new FakeDevice();
    badMax.queueMaxSize = 100;
    expect(() => new VirtioMmioTransport(badMax)).toThrow(/queueMaxSize/);
  });
});

describe("driver initialization", () => {
  it("the normal sequence reaches activate() with the ready queues' configs", () => {
    const { t, dev, r, w, negotiate, setupQueue, addStatus, ring0, ring1, warnings } = setup();
    expect(r(R.STATUS)).toBe(0);
    expect(negotiate()).toBe(true);
    expect(dev.resets).toBe(1);
    expect(dev.negotiations).toEqual([OFFERED]);
    expect(t.negotiatedFeatures).toBe(OFFERED);
    expect(r(R.STATUS)).toBe(S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK);

    for (const i of [0, 1]) {
      w(R.QUEUE_SEL, i);
      expect(r(R.QUEUE_READY)).toBe(0);
      expect(r(R.QUEUE_NUM_MAX)).toBe(256);
    }
    setupQueue(0, ring0);
    setupQueue(1, ring1);
    w(R.QUEUE_SEL, 1);
    expect(r(R.QUEUE_READY)).toBe(1);
    expect(dev.activations).toEqual([]);

    addStatus(S.DRIVER_OK);
    expect(r(R.STATUS)).toBe(S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK | S.DRIVER_OK);
    expect(dev.activations).toEqual([
      {
        features: OFFERED,
        queues: [
          { index: 0, size: 128, descAddr: 0x10000, availAddr: 0x10800, usedAddr: 0x11000, ready: true },
          // High and Low halves combine into one 64-bit address.
          {
            index: 1,
            size: 256,
            descAddr: 0x1_0002_0000,
            availAddr: 0x21000,
            usedAddr: 0x22000,
            ready: true,
          },
        ],
      },
    ]);
    expect(t.queues).toEqual(dev.activations[0]!.queues);
    expect(warnings).toEqual([]);

    w(R.QUEUE_NOTIFY, 1);
    w(R.QUEUE_NOTIFY, 0);
    expect(dev.notified).toEqual([1, 0]);
  });

  it("activate() gets only the queues the driver made ready", () => {
    const { dev, negotiate, setupQueue, addStatus, ring1 } = setup();
    negotiate();
    setupQueue(1, ring1);
    addStatus(S.DRIVER_OK);
    expect(dev.activations[0]!.queues.map((q) => q.index)).toEqual([1]);
  });

  it("the driver may accept a subset of the offer", () => {
    const { t, negotiate } = setup();
    const sub = featuresOf(V.VERSION_1, BlkFeature.FLUSH);
    expect(negotiate(sub)).toBe(true);
    expect(t.negotiatedFeatures).toBe(sub);
  });

  it("FEATURES_OK is refused when the driver accepts a feature the device did not offer", () => {
    const { t, dev, r, negotiate, warnings } = setup();
    expect(negotiate(OFFERED | featureBit(BlkFeature.RO))).toBe(false);
    expect(r(R.STATUS)).toBe(S.ACKNOWLEDGE | S.DRIVER);
    expect(t.negotiatedFeatures).toBe(0n);
    expect(dev.negotiations).toEqual([]);
    expect(warnings.join()).toMatch(/FEATURES_OK refused: .* did not offer: 0x20/);
  });

  it("FEATURES_OK is refused without VERSION_1", () => {
    const { r, negotiate, warnings } = setup();
    expect(negotiate(featuresOf(V.RING_EVENT_IDX))).toBe(false);
    expect(r(R.STATUS) & S.FEATURES_OK).toBe(0);
    expect(warnings.join()).toMatch(/VERSION_1 was not accepted/);
  });

  it("FEATURES_OK is refused when the device says no (or throws)", () => {
    const { t, dev, negotiate, warnings } = setup();
    dev.refuse = "MQ needs FLUSH";
    expect(negotiate()).toBe(false);
    expect(t.negotiatedFeatures).toBe(0n);
    expect(warnings.join()).toMatch(/device refused features .*: MQ needs FLUSH/);
    dev.refuse = undefined;
    expect(negotiate()).toBe(true);

    const b = setup();
    b.dev.negotiate = () => {
      throw new Error("boom");
    };
    expect(b.negotiate()).toBe(false);
    expect(b.warnings.join()).toMatch(/device error: boom/);
  });

  it("DriverFeatures: selectors other than 0/1 are ignored, and nothing changes after FEATURES_OK", () => {
    const { t, w, negotiate, warnings } = setup();
    w(R.STATUS, S.ACKNOWLEDGE | S.DRIVER);
    w(R.DRIVER_FEATURES_SEL, 2);
    w(R.DRIVER_FEATURES, 0xffff_ffff); // would be bits 64..95: ignored
    expect(warnings.join()).toMatch(/DriverFeaturesSel is 2/);
    expect(negotiate()).toBe(true);
    w(R.DRIVER_FEATURES_SEL, 0);
    w(R.DRIVER_FEATURES, 0);
    expect(warnings.join()).toMatch(/cannot change after FEATURES_OK/);
    expect(t.negotiatedFeatures).toBe(OFFERED);
  });

  it("DRIVER_OK without FEATURES_OK is refused", () => {
    const { dev, r, w, setupQueue, ring0, warnings } = setup();
    w(R.STATUS, S.ACKNOWLEDGE | S.DRIVER);
    setupQueue(0, ring0);
    w(R.STATUS, S.ACKNOWLEDGE | S.DRIVER | S.DRIVER_OK);
    expect(r(R.STATUS)).toBe(S.ACKNOWLEDGE | S.DRIVER);
    expect(dev.activations).toEqual([]);
    expect(warnings.join()).toMatch(/DRIVER_OK refused: FEATURES_OK is not set/);
  });

  it("FEATURES_OK and DRIVER_OK in one write: features are checked first", () => {
    const { dev, r, w, writeFeatures, setupQueue, ring0 } = setup();
    writeFeatures(OFFERED);
    setupQueue(0, ring0);
    w(R.STATUS, S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK | S.DRIVER_OK);
    expect(r(R.STATUS)).toBe(0x0f);
    expect(dev.activations).toHaveLength(1);
  });
});

describe("queue registers", () => {
  it("QueueNum must be a power of two in 1..QueueNumMax for QueueReady to take", () => {
    const { t, r, w, w64, negotiate, warnings } = setup();
    negotiate();
    w(R.QUEUE_SEL, 0);
    w64(R.QUEUE_DESC_LOW, 0x1000);
    w64(R.QUEUE_DRIVER_LOW, 0x2000);
    w64(R.QUEUE_DEVICE_LOW, 0x3000);
    for (const bad of [0, 3, 100, 512, 0x8000_0000]) {
      warnings.length = 0;
      w(R.QUEUE_NUM, bad);
      w(R.QUEUE_READY, 1);
      expect(r(R.QUEUE_READY)).toBe(0);
      expect(warnings.join()).toMatch(/not a power of two in 1\.\.256/);
    }
    for (const good of [1, 2, 64, 256]) {
      w(R.QUEUE_READY, 0);
      w(R.QUEUE_NUM, good);
      w(R.QUEUE_READY, 1);
      expect(r(R.QUEUE_READY)).toBe(1);
      expect(t.queues[0]!.size).toBe(good);
    }
  });

  it("QueueReady needs all three ring addresses", () => {
    const { r, w, w64, negotiate, warnings } = setup();
    negotiate();
    w(R.QUEUE_SEL, 0);
    w(R.QUEUE_NUM, 16);
    w64(R.QUEUE_DESC_LOW, 0x1000);
    w64(R.QUEUE_DRIVER_LOW, 0x2000);
    w(R.QUEUE_READY, 1);
    expect(r(R.QUEUE_READY)).toBe(0);
    expect(warnings.join()).toMatch(/addresses must all be set/);
    w64(R.QUEUE_DEVICE_LOW, 0x3000);
    w(R.QUEUE_READY, 2); // only 0 and 1 mean something
    expect(r(R.QUEUE_READY)).toBe(0);
    w(R.QUEUE_READY, 1);
    expect(r(R.QUEUE_READY)).toBe(1);
  });

  it("a ready queue's registers are frozen until QueueReady is written 0", () => {
    const { t, r, w, negotiate, setupQueue, ring0, warnings } = setup();
    negotiate();
    setupQueue(0, ring0);
    w(R.QUEUE_NUM, 64);
    w(R.QUEUE_DESC_LOW, 0x9000);
    w(R.QUEUE_DEVICE_HIGH, 1);
    expect(t.queues[0]).toEqual({
      index: 0,
      size: 128,
      descAddr: 0x10000,
      availAddr: 0x10800,
      usedAddr: 0x11000,
      ready: true,
    });
    expect(warnings.filter((m) => m.includes("the queue is ready"))).toHaveLength(3);
    w(R.QUEUE_READY, 0);
    expect(r(R.QUEUE_READY)).toBe(0);
    w(R.QUEUE_NUM, 64);
    expect(t.queues[0]!.size).toBe(64);
  });

  it("no queue register changes after DRIVER_OK", () => {
    const { t, w, init, warnings } = setup();
    init();
    const before = t.queues;
    w(R.QUEUE_SEL, 1);
    w(R.QUEUE_READY, 0);
    w(R.QUEUE_NUM, 16);
    w(R.QUEUE_SEL, 0);
    w(R.QUEUE_DEVICE_LOW, 0x4000);
    expect(t.queues).toEqual(before);
    expect(warnings.filter((m) => m.includes("after DRIVER_OK"))).toHaveLength(3);
  });

  it("a QueueSel past the last queue reads max 0 / ready 0 and takes no writes", () => {
    const { t, r, w, negotiate, warnings } = setup();
    negotiate();
    w(R.QUEUE_SEL, 2);
    expect(r(R.QUEUE_NUM_MAX)).toBe(0);
    expect(r(R.QUEUE_READY)).toBe(0);
    w(R.QUEUE_NUM, 16);
    w(R.QUEUE_READY, 1);
    expect(t.queues).toEqual([initialQueue(0), initialQueue(1)]);
    expect(warnings.join()).toMatch(/QueueSel 2 is not a queue/);
  });

  it("misaligned rings put the device in DEVICE_NEEDS_RESET at DRIVER_OK, not activated", () => {
    const cases: [Partial<Ring>, RegExp][] = [
      [{ desc: 0x10008 }, /queue 0: descriptor table address 0x10008 is not 16-byte aligned/],
      [{ avail: 0x10801 }, /queue 0: driver area \(avail ring\) address 0x10801 is not 2-byte aligned/],
      [{ used: 0x11002 }, /queue 0: device area \(used ring\) address 0x11002 is not 4-byte aligned/],
      [{ used: 2 ** 53 }, /queue 0: device area \(used ring\) address is at or above 2\^53/],
      [{ desc: 2 ** 63 }, /queue 0: descriptor table address is at or above 2\^53/],
    ];
    for (const [patch, why] of cases) {
      const { t, dev, r, irqs, negotiate, setupQueue, addStatus, ring0 } = setup();
      negotiate();
      setupQueue(0, { ...ring0, ...patch });
      addStatus(S.DRIVER_OK);
      expect(dev.activations).toEqual([]);
      expect(r(R.STATUS)).toBe(0x0f | S.DEVICE_NEEDS_RESET);
      expect(t.lastError).toMatch(why);
      expect(r(R.INTERRUPT_STATUS)).toBe(2);
      expect(irqs).toEqual([2]);
    }
  });

  it("an address of exactly 2^53 - 16 is fine (the largest exact JS integer range)", () => {
    const { dev, negotiate, setupQueue, addStatus, ring0 } = setup();
    negotiate();
    setupQueue(0, { ...ring0, desc: 2 ** 53 - 16 });
    addStatus(S.DRIVER_OK);
    expect(dev.activations[0]!.queues[0]!.descAddr).toBe(2 ** 53 - 16);
  });
});

describe("device status", () => {
  it("bits are only added: a write without an earlier bit keeps it", () => {
    const { r, w, negotiate, warnings } = setup();
    negotiate();
    w(R.STATUS, S.DRIVER);
    expect(r(R.STATUS)).toBe(S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK);
    expect(warnings.join()).toMatch(/only cleared by a reset/);
  });

  it("the driver cannot set DEVICE_NEEDS_RESET, SUSPEND or reserved bits", () => {
    const { r, w, warnings } = setup();
    w(R.STATUS, S.ACKNOWLEDGE | S.DEVICE_NEEDS_RESET | 0x10 | 0x20 | 0x100);
    expect(r(R.STATUS)).toBe(S.ACKNOWLEDGE);
    expect(warnings.join()).toMatch(/cannot set DEVICE_NEEDS_RESET/);
    expect(warnings.join()).toMatch(/unsupported bits 0x30/);
    expect(warnings.join()).toMatch(/above the 8-bit field/);
  });

  it("FAILED sticks; nothing else is taken until a reset", () => {
    const { t, dev, r, w, init, addStatus, irqs } = setup();
    init();
    addStatus(S.FAILED);
    expect(r(R.STATUS)).toBe(0x0f | S.FAILED);
    w(R.QUEUE_NOTIFY, 0);
    expect(dev.notified).toEqual([]);
    expect(t.signalUsedBuffer(0)).toBe(false);
    expect(irqs).toEqual([]);
    w(R.STATUS, 0);
    expect(r(R.STATUS)).toBe(0);
  });

  it("FAILED before DRIVER_OK: later DRIVER_OK is ignored", () => {
    const { dev, r, negotiate, setupQueue, addStatus, ring0 } = setup();
    negotiate();
    setupQueue(0, ring0);
    addStatus(S.FAILED);
    addStatus(S.DRIVER_OK);
    expect(r(R.STATUS)).toBe(S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK | S.FAILED);
    expect(dev.activations).toEqual([]);
  });

  it("activate() throwing sets DEVICE_NEEDS_RESET with the reason and raises a config interrupt", () => {
    const { t, dev, r, init, irqs } = setup();
    dev.activateError = new Error("no I/O thread");
    init();
    expect(r(R.STATUS)).toBe(0x0f | S.DEVICE_NEEDS_RESET);
    expect(t.lastError).toBe("device activation failed: no I/O thread");
    expect(irqs).toEqual([2]);
  });

  it("setNeedsReset: after FEATURES_OK sets the bit once and interrupts; before it only records", () => {
    const { t, r, w, negotiate, addStatus, irqs } = setup();
    w(R.STATUS, S.ACKNOWLEDGE | S.DRIVER);
    t.setNeedsReset("early");
    expect(r(R.STATUS)).toBe(S.ACKNOWLEDGE | S.DRIVER);
    expect(t.lastError).toBe("early");
    expect(irqs).toEqual([]);
    negotiate();
    t.setNeedsReset("backend gone");
    t.setNeedsReset("again");
    expect(r(R.STATUS)).toBe(S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK | S.DEVICE_NEEDS_RESET);
    expect(t.lastError).toBe("again");
    expect(irqs).toEqual([2]);
    addStatus(S.DRIVER_OK); // the device is broken: DRIVER_OK does not take
    expect(r(R.STATUS) & S.DRIVER_OK).toBe(0);
  });

  it("writing 0 resets: queues, features, interrupts and selectors back to initial state", () => {
    const { t, dev, r, w, init, irqs } = setup();
    init();
    t.signalUsedBuffer(0);
    w(R.DEVICE_FEATURES_SEL, 1);
    w(R.QUEUE_SEL, 1);
    dev.configGeneration = 7;
    irqs.length = 0;

    w(R.STATUS, 0);
    expect(dev.resets).toBe(2); // once in init(), once here
    expect(r(R.STATUS)).toBe(0);
    expect(t.status).toBe(0);
    expect(t.queues).toEqual([initialQueue(0), initialQueue(1)]);
    expect(t.negotiatedFeatures).toBe(0n);
    expect(r(R.INTERRUPT_STATUS)).toBe(0);
    expect(irqs).toEqual([0]); // the line drops
    expect(r(R.DEVICE_FEATURES)).toBe(OFFERED_LO); // selector back to 0
    expect(r(R.QUEUE_READY)).toBe(0);
    expect(r(R.QUEUE_NUM_MAX)).toBe(256); // QueueSel back to 0
    expect(r(R.CONFIG_GENERATION)).toBe(7); // the device's counter is kept

    // And the device can be brought up again.
    init();
    expect(dev.activations).toHaveLength(2);
    expect(r(R.STATUS)).toBe(0x0f);
  });

  it("completions the device finishes inside reset() raise no interrupt", () => {
    const { t, dev, r, w, init, irqs } = setup();
    init();
    dev.resetImpl = () => {
      expect(t.signalUsedBuffer(0)).toBe(false);
      expect(t.signalConfigChange()).toBe(false);
    };
    w(R.STATUS, 0);
    expect(r(R.STATUS)).toBe(0);
    expect(r(R.INTERRUPT_STATUS)).toBe(0);
    expect(irqs).toEqual([]);
  });

  it("an asynchronous reset: Status keeps its old value until the device is done", async () => {
    const dev = new FakeDevice();
    let finish!: () => void;
    const { t, r, w, init, addStatus, irqs, warnings } = setup(dev);
    init();
    dev.resetImpl = () =>
      new Promise<void>((res) => {
        finish = res;
      });
    w(R.STATUS, 0);
    expect(t.resetting).toBe(true);
    expect(r(R.STATUS)).toBe(0x0f);
    expect(t.queues.every((q) => !q.ready)).toBe(true);
    // The device may not interrupt and the driver may not write meanwhile.
    expect(t.signalUsedBuffer(0)).toBe(false);
    expect(t.signalConfigChange()).toBe(false);
    addStatus(S.ACKNOWLEDGE);
    w(R.QUEUE_NOTIFY, 0);
    expect(warnings.filter((m) => m.includes("reset is in progress"))).toHaveLength(2);
    expect(irqs).toEqual([]);
    const p = t.reset(); // a second request joins the pending one
    finish();
    await p;
    expect(t.resetting).toBe(false);
    expect(r(R.STATUS)).toBe(0);
    expect(dev.resets).toBe(2);
  });

  it("a failed reset leaves DEVICE_NEEDS_RESET; writing 0 again retries", async () => {
    const dev = new FakeDevice();
    const { t, r, w, init } = setup(dev);
    init();
    dev.resetImpl = () => Promise.reject(new Error("I/O stuck"));
    w(R.STATUS, 0);
    await new Promise((res) => setTimeout(res, 0));
    expect(r(R.STATUS)).toBe(0x0f | S.DEVICE_NEEDS_RESET);
    expect(t.lastError).toBe("device reset failed: I/O stuck");
    dev.resetImpl = () => {
      throw new Error("still stuck");
    };
    w(R.STATUS, 0);
    expect(t.lastError).toBe("device reset failed: still stuck");
    expect(r(R.STATUS)).not.toBe(0);
    dev.resetImpl = undefined;
    w(R.STATUS, 0);
    expect(r(R.STATUS)).toBe(0);
  });
});

describe("notifications and interrupts", () => {
  it("QueueNotify reaches the device only after DRIVER_OK, for a ready queue in range", () => {
    const { dev, w, negotiate, setupQueue, addStatus, ring0, warnings } = setup();
    negotiate();
    setupQueue(0, ring0);
    w(R.QUEUE_NOTIFY, 0);
    expect(warnings.join()).toMatch(/DRIVER_OK is not set/);
    addStatus(S.DRIVER_OK);
    w(R.QUEUE_NOTIFY, 1); // not ready
    w(R.QUEUE_NOTIFY, 2); // no such queue
    w(R.QUEUE_NOTIFY, 0x1_0000);
    w(R.QUEUE_NOTIFY, 0);
    expect(dev.notified).toEqual([0]);
    expect(warnings.join()).toMatch(/QueueNotify 1 ignored: the queue is not ready/);
    expect(warnings.join()).toMatch(/QueueNotify 2 ignored: the device has 2 queues/);
  });

  it("a device that throws from notify() goes to DEVICE_NEEDS_RESET; later kicks are dropped", () => {
    const { t, dev, r, w, init } = setup();
    init();
    dev.notifyError = new Error("bad chain");
    w(R.QUEUE_NOTIFY, 0);
    expect(r(R.STATUS) & S.DEVICE_NEEDS_RESET).toBe(S.DEVICE_NEEDS_RESET);
    expect(t.lastError).toBe("notify of queue 0 failed: bad chain");
    dev.notifyError = undefined;
    w(R.QUEUE_NOTIFY, 0);
    expect(dev.notified).toEqual([]);
  });

  it("InterruptStatus collects events until InterruptACK clears them", () => {
    const { t, r, w, init, irqs, warnings } = setup();
    expect(t.signalUsedBuffer(0)).toBe(false); // before DRIVER_OK: never
    expect(t.signalConfigChange()).toBe(false);
    init();
    expect(irqs).toEqual([]);
    expect(t.signalUsedBuffer(1)).toBe(true);
    expect(r(R.INTERRUPT_STATUS)).toBe(1);
    expect(t.signalUsedBuffer(0)).toBe(true); // re-asserted for edge-triggered lines
    expect(t.signalConfigChange()).toBe(true);
    expect(t.interruptStatus).toBe(3);
    expect(irqs).toEqual([1, 1, 3]);
    w(R.INTERRUPT_ACK, 1);
    expect(r(R.INTERRUPT_STATUS)).toBe(2);
    w(R.INTERRUPT_ACK, 1); // nothing left to clear: no callback
    w(R.INTERRUPT_ACK, 0xffff_fffe);
    expect(r(R.INTERRUPT_STATUS)).toBe(0);
    expect(irqs).toEqual([1, 1, 3, 2, 0]);
    expect(warnings.join()).toMatch(/undefined bits/);
    expect(t.signalUsedBuffer(5)).toBe(false);
  });
});

describe("config space and access rules", () => {
  it("config reads and writes at 0x100+ go to the device, 1/2/4 bytes", () => {
    const { dev, t } = setup();
    expect(t.read(0x100, 1)).toBe(0x10);
    expect(t.read(0x102, 2)).toBe(0x1312);
    expect(t.read(0x104, 4)).toBe(0x17161514);
    t.write(0x120, 1, 0x1ff);
    t.write(0x122, 2, 0x12345);
    t.write(0x124, 4, -1);
    expect(dev.configWrites).toEqual([
      [0x20, 1, 0xff],
      [0x22, 2, 0x2345],
      [0x24, 4, 0xffff_ffff],
    ]);
  });

  it("ConfigGeneration follows the device", () => {
    const { dev, r } = setup();
    expect(r(R.CONFIG_GENERATION)).toBe(0);
    dev.configGeneration = 3;
    expect(r(R.CONFIG_GENERATION)).toBe(3);
  });

  it("registers take only 32-bit aligned accesses", () => {
    const { t, r, warnings } = setup();
    expect(t.read(R.MAGIC_VALUE, 2)).toBe(0);
    expect(t.read(R.MAGIC_VALUE, 1)).toBe(0);
    expect(t.read(R.MAGIC_VALUE + 2, 4)).toBe(0);
    t.write(R.STATUS, 1, S.ACKNOWLEDGE);
    t.write(R.STATUS + 1, 4, S.ACKNOWLEDGE);
    expect(r(R.STATUS)).toBe(0);
    expect(t.read(0x100, 8 as 4)).toBe(0);
    expect(warnings).toHaveLength(6);
  });

  it("write-only reads return 0, read-only and unknown writes are ignored, all reported", () => {
    const { t, r, w, warnings } = setup();
    expect(r(R.QUEUE_NOTIFY)).toBe(0);
    expect(r(R.DRIVER_FEATURES)).toBe(0);
    expect(r(0x028)).toBe(0); // legacy GuestPageSize
    expect(r(R.QUEUE_RESET)).toBe(0);
    w(R.MAGIC_VALUE, 0);
    w(R.DEVICE_FEATURES, 0);
    w(R.INTERRUPT_STATUS, 3);
    w(R.QUEUE_RESET, 1);
    w(0x0f8, 1);
    expect(r(R.MAGIC_VALUE)).toBe(MMIO_MAGIC);
    expect(r(R.DEVICE_FEATURES)).toBe(OFFERED_LO);
    expect(t.interruptStatus).toBe(0);
    expect(warnings).toHaveLength(9);
  });

  it("no shared memory regions: length and base read as all-ones", () => {
    const { r, w } = setup();
    for (const sel of [0, 1, 255]) {
      w(R.SHM_SEL, sel);
      for (const reg of [R.SHM_LEN_LOW, R.SHM_LEN_HIGH, R.SHM_BASE_LOW, R.SHM_BASE_HIGH]) {
        expect(r(reg)).toBe(0xffff_ffff);
      }
    }
  });
});

describe("with the real virtio-blk config space", () => {
  /** Just enough device to put a BlkConfigSpace behind the transport. */
  function blkDevice() {
    let signal: () => void = () => {};
    const cfg = new BlkConfigSpace(
      { capacityBytes: 2 ** 41, numQueues: 2, queueSize: 128 },
      { onConfigChange: () => signal() },
    );
    const dev = new FakeDevice();
    dev.deviceFeatures = cfg.offered;
    dev.queueMaxSize = 128;
    dev.readConfig = (o, s) => cfg.read(o, s);
    dev.writeConfig = (o, s, v) => cfg.write(o, s, v);
    Object.defineProperty(dev, "configGeneration", { get: () => cfg.generation });
    dev.negotiate = (f) => {
      cfg.negotiate(f);
      return undefined;
    };
    const s = setup(dev);
    signal = () => s.t.signalConfigChange();
    return { ...s, cfg };
  }

  it("the driver reads capacity as two 32-bit reads and toggles writeback after FEATURES_OK", () => {
    const { t, r, negotiate, setupQueue, addStatus, ring0, cfg } = blkDevice();
    const cap = () => t.read(0x100, 4) + t.read(0x104, 4) * 2 ** 32;
    expect(cap()).toBe(2 ** 32); // 2 TiB in 512-byte sectors
    expect(t.read(0x100 + BlkConfigOffset.NUM_QUEUES, 2)).toBe(2);
    t.write(0x100 + BlkConfigOffset.WRITEBACK, 1, 0); // before negotiation: ignored
    expect(t.read(0x100 + BlkConfigOffset.WRITEBACK, 1)).toBe(1);
    expect(negotiate(cfg.offered)).toBe(true);
    setupQueue(0, { ...ring0, size: 128 });
    addStatus(S.DRIVER_OK);
    const g0 = r(R.CONFIG_GENERATION);
    t.write(0x100 + BlkConfigOffset.WRITEBACK, 1, 0);
    expect(t.read(0x100 + BlkConfigOffset.WRITEBACK, 1)).toBe(0);
    expect(r(R.CONFIG_GENERATION)).not.toBe(g0);
  });

  it("a resize moves ConfigGeneration and raises a config-change interrupt", () => {
    const { t, r, irqs, init, cfg } = blkDevice();
    init();
    const g0 = r(R.CONFIG_GENERATION);
    cfg.setCapacity(2 ** 42);
    expect(r(R.CONFIG_GENERATION)).not.toBe(g0);
    expect(t.read(0x104, 4)).toBe(2);
    expect(r(R.INTERRUPT_STATUS)).toBe(2);
    expect(irqs).toEqual([2]);
  });
});

describe("property: random register traffic", () => {
  type Kind = "w" | "r" | "add" | "used" | "cfg" | "err";
  /** One access or device event; "add" writes Status = current | value. */
  type Step = [Kind, number, number, number];
  const step = (k: Kind, off: number, size: number, value: number): Step => [k, off, size, value];

  const regs = Object.values(R).filter((o) => o < 0x100);
  const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
  const offsetArb = fc.oneof(
    { weight: 8, arbitrary: fc.constantFrom(...regs) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: 0x1ff }) },
    { weight: 1, arbitrary: fc.integer({ min: 0x100, max: 0x120 }) },
  );
  const valueArb = fc.oneof(
    fc.constantFrom(0, 1, 2, 3, 4, 8, 0x0f, 0x0b, 0x40, 0x80, 16, 128, 256, OFFERED_LO, OFFERED_HI, 0x10000),
    u32,
  );
  const addrArb = fc.oneof(
    { weight: 4, arbitrary: fc.integer({ min: 1, max: 0xffff }).map((p) => p * 4096) },
    { weight: 1, arbitrary: u32 },
  );
  // Single accesses, and the multi-register steps of a driver (possibly with bad values)
  // so that runs get past FEATURES_OK and DRIVER_OK often enough.
  const opArb: fc.Arbitrary<Step[]> = fc.oneof(
    {
      weight: 6,
      arbitrary: fc
        .tuple(offsetArb, fc.constantFrom(4, 4, 4, 1, 2), valueArb)
        .map(([o, z, v]) => [step("w", o, z, v)]),
    },
    {
      weight: 2,
      arbitrary: fc.tuple(offsetArb, fc.constantFrom(4, 4, 1, 2)).map(([o, z]) => [step("r", o, z, 0)]),
    },
    {
      weight: 4,
      arbitrary: fc
        .constantFrom(
          S.ACKNOWLEDGE,
          S.DRIVER,
          S.FEATURES_OK,
          S.FEATURES_OK,
          S.DRIVER_OK,
          S.DRIVER_OK,
          S.FEATURES_OK | S.DRIVER_OK,
          S.FAILED,
          0x40,
          0x10,
        )
        .map((b) => [step("add", R.STATUS, 4, b)]),
    },
    {
      weight: 3,
      arbitrary: fc
        .tuple(fc.constantFrom(OFFERED_HI, OFFERED_HI, 1, 0, 3), fc.oneof(fc.constant(OFFERED_LO), u32))
        .map(([hi, lo]) => [
          step("w", R.DRIVER_FEATURES_SEL, 4, 1),
          step("w", R.DRIVER_FEATURES, 4, hi),
          step("w", R.DRIVER_FEATURES_SEL, 4, 0),
          step("w", R.DRIVER_FEATURES, 4, lo & OFFERED_LO ? lo & OFFERED_LO : lo),
        ]),
    },
    {
      weight: 4,
      arbitrary: fc
        .record({
          q: fc.constantFrom(0, 1, 2),
          size: fc.constantFrom(0, 1, 2, 3, 64, 128, 256, 512),
          desc: addrArb,
          avail: addrArb,
          used: addrArb,
          hi: fc.constantFrom(0, 0, 0, 0, 1, 0x20_0000),
          ready: fc.constantFrom(1, 1, 0, 2),
        })
        .map((c) => [
          step("w", R.QUEUE_SEL, 4, c.q),
          step("w", R.QUEUE_NUM, 4, c.size),
          step("w", R.QUEUE_DESC_LOW, 4, c.desc),
          step("w", R.QUEUE_DESC_HIGH, 4, c.hi),
          step("w", R.QUEUE_DRIVER_LOW, 4, c.avail),
          step("w", R.QUEUE_DRIVER_HIGH, 4, 0),
          step("w", R.QUEUE_DEVICE_LOW, 4, c.used),
          step("w", R.QUEUE_DEVICE_HIGH, 4, 0),
          step("w", R.QUEUE_READY, 4, c.ready),
        ]),
    },
    { weight: 1, arbitrary: fc.constant<Step[]>([step("w", R.STATUS, 4, 0)]) },
    { weight: 2, arbitrary: fc.integer({ min: -1, max: 3 }).map((q) => [step("used", q, 4, 0)]) },
    { weight: 1, arbitrary: fc.constant<Step[]>([step("cfg", 0, 4, 0)]) },
    { weight: 1, arbitrary: fc.constant<Step[]>([step("err", 0, 4, 0)]) },
  );
  const stats = { runs: 0, featuresOk: 0, activated: 0, needsReset: 0 };

  it("never throws; status only gains bits between resets; the state stays coherent", () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 60, size: "max" }), fc.boolean(), (ops, activateThrows) => {
        const dev = new FakeDevice();
        if (activateThrows) dev.activateError = new Error("nope");
        let activationsThisEpoch = 0;
        const realActivate = dev.activate.bind(dev);
        dev.activate = (f, q) => {
          activationsThisEpoch++;
          realActivate(f, q);
        };
        const t = new VirtioMmioTransport(dev);
        let prev = 0;
        let sawFeaturesOk = false;
        let sawNeedsReset = false;
        for (const [kind, off, size, value] of ops.flat()) {
          let reset = false;
          if (kind === "add") {
            t.write(R.STATUS, 4, t.read(R.STATUS, 4) | value);
          } else if (kind === "w") {
            reset = off === R.STATUS && size === 4 && value === 0;
            t.write(off, size as 1 | 2 | 4, value);
          } else if (kind === "r") {
            const v = t.read(off, size as 1 | 2 | 4);
            expect(Number.isInteger(v) && v >= 0 && v <= 0xffff_ffff).toBe(true);
          } else if (kind === "used") {
            t.signalUsedBuffer(off);
          } else if (kind === "cfg") {
            t.signalConfigChange();
          } else {
            t.setNeedsReset("random failure");
          }
          const st = t.status;
          if (reset) {
            expect(st).toBe(0);
            activationsThisEpoch = 0;
          } else {
            expect(st & prev).toBe(prev); // only gains bits
          }
          prev = st;
          if (st & S.FEATURES_OK) sawFeaturesOk = true;
          if (st & S.DEVICE_NEEDS_RESET) sawNeedsReset = true;
          expect(st & ~0xff).toBe(0);
          expect(st & 0x30).toBe(0);
          if (st & S.DRIVER_OK) expect(st & S.FEATURES_OK).toBe(S.FEATURES_OK);
          if (st & S.FEATURES_OK) {
            expect(t.negotiatedFeatures & ~OFFERED).toBe(0n);
            expect(t.negotiatedFeatures & featureBit(V.VERSION_1)).not.toBe(0n);
          } else {
            expect(t.negotiatedFeatures).toBe(0n);
          }
          expect(t.interruptStatus & ~3).toBe(0);
          // Used-buffer interrupts only once live; config interrupts only once features are settled.
          if (t.interruptStatus & 1) expect(st & S.DRIVER_OK).toBe(S.DRIVER_OK);
          if (t.interruptStatus & 2) expect(st & S.FEATURES_OK).toBe(S.FEATURES_OK);
          expect(activationsThisEpoch).toBeLessThanOrEqual(1);
          for (const q of t.queues) {
            if (q.ready) {
              expect(q.size >= 1 && q.size <= 256 && (q.size & (q.size - 1)) === 0).toBe(true);
            }
          }
        }
        stats.runs++;
        if (sawFeaturesOk) stats.featuresOk++;
        if (dev.activations.length > 0) stats.activated++;
        if (sawNeedsReset) stats.needsReset++;
        for (const a of dev.activations) {
          for (const q of a.queues) {
            expect(q.ready).toBe(true);
            expect(Math.min(q.descAddr, q.availAddr, q.usedAddr)).toBeGreaterThan(0);
            expect(q.descAddr % 16).toBe(0);
            expect(q.availAddr % 2).toBe(0);
            expect(q.usedAddr % 4).toBe(0);
          }
        }
      }),
      { numRuns: 500 },
    );
    // The generator must reach the interesting states, not just bounce off the first check.
    expect(stats.featuresOk).toBeGreaterThan(stats.runs / 20);
    expect(stats.activated).toBeGreaterThan(stats.runs / 100);
    expect(stats.needsReset).toBeGreaterThan(stats.runs / 100);
  });

  it("a driver that follows the protocol with random choices always gets activated once", () => {
    fc.assert(
      fc.property(
        fc.subarray([V.RING_EVENT_IDX, V.RING_INDIRECT_DESC, BlkFeature.FLUSH, BlkFeature.MQ]),
        fc.subarray([0, 1], { minLength: 1 }),
        fc.constantFrom(1, 2, 4, 8, 16, 32, 64, 128, 256),
        fc.integer({ min: 1, max: 2 ** 20 }),
        (bits, queues, size, page) => {
          const { dev, negotiate, setupQueue, addStatus, warnings } = setup();
          expect(negotiate(featuresOf(V.VERSION_1, ...bits))).toBe(true);
          const base = page * 4096;
          for (const i of queues) {
            setupQueue(i, {
              size,
              desc: base + i * 0x10_0000,
              avail: base + i * 0x10_0000 + 16 * size,
              used: base + i * 0x10_0000 + 0x8_0000,
            });
          }
          addStatus(S.DRIVER_OK);
          expect(dev.activations).toHaveLength(1);
          expect(dev.activations[0]!.queues.map((q) => q.index)).toEqual(queues);
          expect(warnings).toEqual([]);
        },
      ),
    );
  });
});

/**
 * A minimal in-process VMM around vblk, for people embedding the library.
 *
 *   1. allocate guest RAM (page aligned via the addon when present)
 *   2. create the device on a disk image, 2 queues on 2 IOThreads
 *   3. play the guest's virtio driver through the MMIO registers
 *      (what a VMM forwards from its MMIO exits): magic, version, device id,
 *      features, FEATURES_OK, queues, DRIVER_OK
 *   4. start one vCPU thread per queue that submits I/O and waits for
 *      interrupts (the IOThreads signal them like KVM irqfds would)
 *   5. print what was read, the counters, and shut down
 *
 * Run: npx -y pnpm@12.4.2 run example   (or node examples/dist/minimal-vmm.js [image])
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { allocGuestMemory, nativeAvailable } from "@vblk/backend-libaio";
import {
  BlkConfigOffset,
  BlkDriver,
  Doorbell,
  GuestMemory,
  layoutSplitRing,
  MMIO_MAGIC,
  MmioReg,
  Status,
} from "@vblk/core";
import { type DriverQueueDesc, VirtioBlkDevice } from "@vblk/iothread";

const MiB = 1 << 20;

export interface VmmResult {
  magicOk: boolean;
  deviceId: number;
  capacitySectors: number;
  engine: string;
  interrupts: number;
  reads: { queue: number; sector: number; text: string }[];
  counters: ReturnType<VirtioBlkDevice["counters"]>;
}

export async function runMinimalVmm(
  imagePath?: string,
  log: (s: string) => void = console.log,
): Promise<VmmResult> {
  // A small disk whose sectors say where they are.
  const dir = mkdtempSync(join(tmpdir(), "vblk-vmm-"));
  const path = imagePath ?? join(dir, "disk.img");
  if (imagePath === undefined) {
    const img = Buffer.alloc(8 * MiB);
    for (let s = 0; s < img.length / 512; s += 8) img.write(`hello from sector ${s}`, s * 512, "latin1");
    writeFileSync(path, img);
  }

  // 1. Guest RAM.
  const ramBytes = 16 * MiB;
  const ram = nativeAvailable() ? allocGuestMemory(ramBytes).buffer : new SharedArrayBuffer(ramBytes);
  const memory = new GuestMemory([{ gpa: 0, size: ramBytes, buffer: ram }]);

  // 2. The device. The VMM's interrupt line is a callback (a real VMM would inject an IRQ).
  let interrupts = 0;
  const device = await VirtioBlkDevice.create({
    memory,
    path,
    engine: "auto",
    numQueues: 2,
    iothreadVqMapping: [{ iothread: "io0" }, { iothread: "io1" }],
    serial: "minimal-vmm",
    onInterrupt: (isr) => {
      if (isr !== 0) interrupts++;
    },
  });
  const mmio = device.transport;
  const r32 = (off: number) => mmio.read(off, 4);
  const w32 = (off: number, v: number) => mmio.write(off, 4, v >>> 0);

  try {
    // 3. The guest driver's init sequence, register by register.
    const magicOk = r32(MmioReg.MAGIC_VALUE) === MMIO_MAGIC;
    const deviceId = r32(MmioReg.DEVICE_ID);
    log(
      `mmio: magic ${magicOk ? "ok" : "BAD"}, version ${r32(MmioReg.VERSION)}, device id ${deviceId} (block)`,
    );
    w32(MmioReg.STATUS, 0);
    w32(MmioReg.STATUS, Status.ACKNOWLEDGE);
    w32(MmioReg.STATUS, Status.ACKNOWLEDGE | Status.DRIVER);
    w32(MmioReg.DEVICE_FEATURES_SEL, 0);
    const lo = r32(MmioReg.DEVICE_FEATURES);
    w32(MmioReg.DEVICE_FEATURES_SEL, 1);
    const hi = r32(MmioReg.DEVICE_FEATURES);
    log(`features offered: 0x${hi.toString(16)}_${lo.toString(16).padStart(8, "0")}`);
    w32(MmioReg.DRIVER_FEATURES_SEL, 0);
    w32(MmioReg.DRIVER_FEATURES, lo);
    w32(MmioReg.DRIVER_FEATURES_SEL, 1);
    w32(MmioReg.DRIVER_FEATURES, hi);
    w32(MmioReg.STATUS, Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK);
    if ((r32(MmioReg.STATUS) & Status.FEATURES_OK) === 0) throw new Error("FEATURES_OK refused");
    const capLo = mmio.read(0x100 + BlkConfigOffset.CAPACITY, 4);
    const capHi = mmio.read(0x100 + BlkConfigOffset.CAPACITY + 4, 4);
    const capacitySectors = capHi * 2 ** 32 + capLo;
    log(
      `config: capacity ${capacitySectors} sectors, num_queues ${mmio.read(0x100 + BlkConfigOffset.NUM_QUEUES, 2)}`,
    );

    const eventIdx = (lo & (1 << 29)) !== 0; // VIRTIO_F_RING_EVENT_IDX, accepted above
    const queues: DriverQueueDesc[] = [];
    let next = 0x1000;
    for (let q = 0; q < device.numQueues; q++) {
      const size = 64;
      const ring = layoutSplitRing(size, next);
      next = Math.ceil((ring.end + BlkDriver.scratchBytes(size)) / 4096) * 4096;
      w32(MmioReg.QUEUE_SEL, q);
      w32(MmioReg.QUEUE_NUM, size);
      w32(MmioReg.QUEUE_DESC_LOW, ring.descAddr);
      w32(MmioReg.QUEUE_DESC_HIGH, 0);
      w32(MmioReg.QUEUE_DRIVER_LOW, ring.availAddr);
      w32(MmioReg.QUEUE_DRIVER_HIGH, 0);
      w32(MmioReg.QUEUE_DEVICE_LOW, ring.usedAddr);
      w32(MmioReg.QUEUE_DEVICE_HIGH, 0);
      w32(MmioReg.QUEUE_READY, 1);
      // irqfd-like: this queue's IOThread rings the vCPU's doorbell directly.
      const call = Doorbell.create();
      device.setCallNotifier(q, { kind: "doorbell", ...call.describe() });
      queues.push({
        memory: memory.describe(),
        queue: q,
        ring: { size, descAddr: ring.descAddr, availAddr: ring.availAddr, usedAddr: ring.usedAddr },
        eventIdx,
        kick: device.kickNotifier(q),
        call: call.describe(),
        scratchGpa: ring.end,
      });
    }
    w32(MmioReg.STATUS, Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK | Status.DRIVER_OK);
    await device.whenStarted();
    log(`DRIVER_OK; engine ${device.engineName}\n${device.describeMapping()}`);

    // 4. vCPU threads: each reads a few sectors through its own queue.
    const reads = (
      await Promise.all(
        queues.map(
          (desc, i) =>
            new Promise<{ queue: number; sector: number; text: string }[]>((resolve, reject) => {
              const w = new Worker(fileURLToPath(new URL("./vcpu.js", import.meta.url)), {
                workerData: { desc, dataGpa: next + i * MiB, sectors: [i * 64, i * 64 + 8, i * 64 + 16] },
              });
              w.once("message", resolve);
              w.once("error", reject);
            }),
        ),
      )
    ).flat();
    for (const r of reads) log(`vcpu ${r.queue}: sector ${r.sector}: "${r.text}"`);
    const counters = device.counters();
    for (const t of counters.iothreads) log(`${t.name}: vqs ${t.queues.join(",")}, loops ${t.loops}`);
    return { magicOk, deviceId, capacitySectors, engine: device.engineName, interrupts, reads, counters };
  } finally {
    // 5. Reset (status 0) and shut down.
    w32(MmioReg.STATUS, 0);
    await device.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  runMinimalVmm(process.argv[2]).catch((e) => {
    console.error(e);
    process.exitCode = 1;
  });
}

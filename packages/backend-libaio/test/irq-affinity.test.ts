// Which CPUs take a disk's interrupts: a sysfs/procfs tree built in a temp
// dir (the test controls the layout), then this machine's real one.
import { mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { devToMajMin, diskIrqCpus, parseKernelCpuList } from "../dist/index.js";

const root = mkdtempSync(join(tmpdir(), "vblk-irq-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function write(p: string, text: string): void {
  mkdirSync(join(p, ".."), { recursive: true });
  writeFileSync(p, text);
}

/**
 * A fake machine: 4 CPUs, PCI function 0000:00:02.0 with MSI vectors 35
 * (config, 1 interrupt) and 36 (requests), disk vda with partition vda1.
 * `file` lives on "vda1" (its st_dev is mapped to vda1's maj:min).
 */
function fakeMachine(opts: { reqAffinity: string; online?: string }) {
  const dir = mkdtempSync(join(root, "m-"));
  const sys = join(dir, "sys");
  const proc = join(dir, "proc");
  const file = join(dir, "image.raw");
  writeFileSync(file, "x");
  const majMin = devToMajMin(Number(statSync(file).dev));
  const pci = join(sys, "devices", "pci0000:00", "0000:00:02.0");
  const vda = join(pci, "virtio1", "block", "vda");
  write(join(vda, "vda1", "partition"), "1\n");
  write(join(pci, "msi_irqs", "35"), "msi\n");
  write(join(pci, "msi_irqs", "36"), "msi\n");
  mkdirSync(join(sys, "dev", "block"), { recursive: true });
  symlinkSync(join(vda, "vda1"), join(sys, "dev", "block", majMin));
  write(join(sys, "devices", "system", "cpu", "online"), `${opts.online ?? "0-3"}\n`);
  write(
    join(proc, "interrupts"),
    [
      "           CPU0       CPU1       CPU2       CPU3",
      " 35:          0          1          0          0  PCI-MSIX-0000:00:02.0   0-edge      virtio1-config",
      " 36:          0     600000      20000          0  PCI-MSIX-0000:00:02.0   1-edge      virtio1-req.0",
      "NMI:          0          0          0          0   Non-maskable interrupts",
      "",
    ].join("\n"),
  );
  write(join(proc, "irq", "35", "effective_affinity_list"), "3\n");
  write(join(proc, "irq", "36", "effective_affinity_list"), `${opts.reqAffinity}\n`);
  return { sys, proc, file };
}

describe("parseKernelCpuList", () => {
  it("reads ranges and singles", () => {
    expect(parseKernelCpuList("0-3,8,10-11\n")).toEqual([0, 1, 2, 3, 8, 10, 11]);
    expect(parseKernelCpuList("1")).toEqual([1]);
    expect(() => parseKernelCpuList("a-b")).toThrow(/not a CPU list/);
  });
});

describe("diskIrqCpus", () => {
  it("follows a partition to its disk and its PCI function's MSI vectors", () => {
    const m = fakeMachine({ reqAffinity: "1" });
    const info = diskIrqCpus(m.file, { sys: m.sys, proc: m.proc });
    // vector 35 fired once (< 1% of the device's interrupts): left out, so CPU 3 is not named
    expect(info).toEqual({ disk: "vda", irqs: [36], cpus: [1], online: [0, 1, 2, 3] });
  });

  it("says nothing when the interrupts cover every online CPU (multi-queue disks)", () => {
    const m = fakeMachine({ reqAffinity: "0-3" });
    expect(diskIrqCpus(m.file, { sys: m.sys, proc: m.proc })).toBeUndefined();
  });

  it("ignores CPUs that are not online", () => {
    const m = fakeMachine({ reqAffinity: "1,5", online: "0-3" });
    expect(diskIrqCpus(m.file, { sys: m.sys, proc: m.proc })?.cpus).toEqual([1]);
  });

  it("says nothing for a missing path or a device without sysfs entries", () => {
    const m = fakeMachine({ reqAffinity: "1" });
    expect(diskIrqCpus(join(root, "nope"), { sys: m.sys, proc: m.proc })).toBeUndefined();
    expect(diskIrqCpus(m.file, { sys: join(root, "empty-sys"), proc: m.proc })).toBeUndefined();
  });

  const realFile = join(root, "real.img");
  writeFileSync(realFile, "x");
  const real = diskIrqCpus(realFile);
  if (real === undefined)
    console.warn("[irq-affinity] SKIP: this machine's disk has no MSI interrupts on a CPU subset");
  it.skipIf(real === undefined)("on this machine: a proper subset of the online CPUs", () => {
    const info = real!;
    expect(info.cpus.length).toBeGreaterThan(0);
    expect(info.cpus.length).toBeLessThan(info.online.length);
    for (const c of info.cpus) expect(info.online).toContain(c);
    expect(info.irqs.length).toBeGreaterThan(0);
  });
});

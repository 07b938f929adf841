/**
 * Which CPUs take a disk's completion interrupts.
 *
 * An IOThread that waits for the kernel should sleep where the disk's
 * interrupt lands (the wake-up is then local) and nothing should spin
 * there: on a VM a busy vCPU takes its interrupts late (docs/BENCHMARKS.md,
 * "polling and the disk's IRQ"). This finds that CPU set from sysfs/procfs:
 *
 *   path --stat--> dev (maj:min) --/sys/dev/block/maj:min--> block dir
 *     partition -> parent disk; loop -> backing_file (again); dm/md -> slaves/*
 *   block dir --walk up--> first ancestor with msi_irqs/ (the PCI function)
 *   msi_irqs/N + /proc/interrupts counts -> the IRQs that really fire
 *   /proc/irq/N/effective_affinity_list -> CPUs
 *
 * Returns undefined when any step is missing (tmpfs, no MSI, containers
 * hiding sysfs) or when the interrupts already cover every online CPU (a
 * multi-queue disk completes on the submitting CPU: nothing to place).
 */
import { existsSync, readdirSync, readFileSync, realpathSync, statSync } from "node:fs";
import { dirname, join } from "node:path";

export interface DiskIrqInfo {
  /** The block device whose interrupts these are, e.g. "vda". */
  disk: string;
  /** IRQ numbers that fired for it (config / idle vectors left out). */
  irqs: number[];
  /** CPUs those IRQs are delivered to, ascending. */
  cpus: number[];
  /** Online CPUs (for "the others"). */
  online: number[];
}

export interface IrqLookupRoots {
  /** Default "/sys". */
  sys?: string;
  /** Default "/proc". */
  proc?: string;
}

/** Parse a kernel CPU list ("0-3,8,10-11"). */
export function parseKernelCpuList(text: string): number[] {
  const out = new Set<number>();
  for (const part of text.trim().split(",")) {
    if (part === "") continue;
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (m === null) throw new Error(`not a CPU list: "${text.trim()}"`);
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    for (let c = a; c <= b; c++) out.add(c);
  }
  return [...out].sort((x, y) => x - y);
}

function readText(p: string): string | undefined {
  try {
    return readFileSync(p, "utf8");
  } catch {
    return undefined;
  }
}

/** Linux dev_t (as Node's stat gives it) -> "major:minor". */
export function devToMajMin(dev: number): string {
  const d = BigInt(dev);
  const major = ((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn);
  const minor = (d & 0xffn) | ((d >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

/** Interrupt counts per IRQ number, summed over CPUs, from /proc/interrupts. */
function irqCounts(proc: string): Map<number, number> {
  const out = new Map<number, number>();
  const text = readText(join(proc, "interrupts"));
  if (text === undefined) return out;
  const lines = text.split("\n");
  const ncpu = (lines[0] ?? "").trim().split(/\s+/).length;
  for (const line of lines.slice(1)) {
    const m = /^\s*(\d+):(.*)$/.exec(line);
    if (m === null) continue;
    const fields = m[2]!.trim().split(/\s+/);
    let sum = 0;
    for (let i = 0; i < ncpu && i < fields.length; i++) sum += Number(fields[i]) || 0;
    out.set(Number(m[1]), sum);
  }
  return out;
}

/** The sysfs directory of the whole disk under a block device's sysfs directory. */
function resolveBlockDir(sys: string, majMin: string, depth: number): string | undefined {
  if (depth > 8) return undefined;
  const link = join(sys, "dev", "block", majMin);
  if (!existsSync(link)) return undefined;
  let dir = realpathSync(link);
  // A partition: its parent directory is the disk.
  if (existsSync(join(dir, "partition"))) dir = dirname(dir);
  // A loop device: follow its backing file.
  const backing = readText(join(dir, "loop", "backing_file"))?.trim();
  if (backing) {
    try {
      return resolveBlockDir(sys, devToMajMin(Number(statSync(backing).dev)), depth + 1);
    } catch {
      return undefined;
    }
  }
  // device-mapper / md: the first slave.
  const slaves = join(dir, "slaves");
  if (existsSync(slaves)) {
    const names = readdirSync(slaves).sort();
    if (names.length > 0) {
      const dev = readText(join(slaves, names[0]!, "dev"))?.trim();
      if (dev) return resolveBlockDir(sys, dev, depth + 1);
    }
  }
  return dir;
}

/**
 * The "auto" IOThread placement for a device serving `path` (vblk-bench and
 * `vblk serve --iothread-cpus auto`): its disk's interrupt CPUs, or none,
 * with the line both print.
 */
export function irqAutoPlacement(path: string): { irq: DiskIrqInfo | undefined; note: string } {
  const irq = diskIrqCpus(path);
  return irq === undefined
    ? { irq, note: "IOThreads unpinned (auto: the disk's interrupts are not on a CPU subset)" }
    : { irq, note: `IOThreads on CPU ${irq.cpus.join(",")} (auto: ${irq.disk}'s IRQ ${irq.irqs.join(",")})` };
}

/** Where `path`'s disk interrupts are delivered; see the module comment. */
export function diskIrqCpus(path: string, roots: IrqLookupRoots = {}): DiskIrqInfo | undefined {
  const sys = roots.sys ?? "/sys";
  const proc = roots.proc ?? "/proc";
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(path);
  } catch {
    return undefined;
  }
  const majMin = devToMajMin(Number(st.isBlockDevice() ? st.rdev : st.dev));
  const blockDir = resolveBlockDir(sys, majMin, 0);
  if (blockDir === undefined) return undefined;
  let dev = blockDir;
  let msiDir: string | undefined;
  for (let i = 0; i < 8 && dev.length > sys.length; i++) {
    if (existsSync(join(dev, "msi_irqs"))) {
      msiDir = join(dev, "msi_irqs");
      break;
    }
    dev = dirname(dev);
  }
  if (msiDir === undefined) return undefined;
  const all = readdirSync(msiDir)
    .map(Number)
    .filter((n) => Number.isInteger(n));
  const counts = irqCounts(proc);
  const total = all.reduce((s, n) => s + (counts.get(n) ?? 0), 0);
  if (total === 0) return undefined;
  // The vectors that carry the I/O: at least 1% of the device's interrupts.
  const irqs = all.filter((n) => (counts.get(n) ?? 0) * 100 >= total).sort((a, b) => a - b);
  const cpus = new Set<number>();
  for (const n of irqs) {
    const text =
      readText(join(proc, "irq", String(n), "effective_affinity_list")) ??
      readText(join(proc, "irq", String(n), "smp_affinity_list"));
    if (text === undefined || text.trim() === "") continue;
    for (const c of parseKernelCpuList(text)) cpus.add(c);
  }
  const onlineText = readText(join(sys, "devices", "system", "cpu", "online"));
  if (cpus.size === 0 || onlineText === undefined) return undefined;
  const online = parseKernelCpuList(onlineText);
  const list = [...cpus].filter((c) => online.includes(c)).sort((a, b) => a - b);
  if (list.length === 0 || list.length >= online.length) return undefined;
  return { disk: blockDir.split("/").pop()!, irqs, cpus: list, online };
}

/**
 * The optional native addon (@vblk/backend-libaio): page-aligned guest RAM
 * (O_DIRECT engines DMA into it in place), io_uring/libaio probes and thread
 * pinning. Everything degrades when the addon did not build or load.
 */

import {
  allocGuestMemory,
  closeFd,
  irqAutoPlacement,
  nativeAvailable,
  nativeLoadError,
  probeEngines,
  schedYield,
  setThreadAffinity,
  spinWait16,
} from "@vblk/backend-libaio";
import type { GuestRegionInit } from "@vblk/core";

export function nativeStatus(): { available: boolean; loadError: string | undefined } {
  const available = nativeAvailable();
  return { available, loadError: available ? undefined : (nativeLoadError() ?? "native addon unavailable") };
}

/** io_uring / libaio usable here: true, or why not. */
export function probeNativeEngines(): { io_uring: true | string; libaio: true | string } {
  const p = probeEngines();
  const v = (x: boolean | string): true | string => (x === true ? true : x === false ? "unavailable" : x);
  return { io_uring: v(p.io_uring), libaio: v(p.libaio) };
}

/** Pin the calling thread; returns why not when the addon is missing. */
export function pinThread(cpus: number[]): string | undefined {
  const s = nativeStatus();
  if (!s.available) return `cpus_allowed ignored: ${s.loadError}`;
  setThreadAffinity(cpus);
  return undefined;
}

/** What a spinning job calls every few microseconds (sched_yield), when the addon loaded. */
export function spinRelax(): (() => void) | undefined {
  return nativeAvailable() ? schedYield : undefined;
}

/** A PAUSE-based native spin on a ring index, when the addon loaded. */
export function nativeSpin(): typeof spinWait16 | undefined {
  return nativeAvailable() ? spinWait16 : undefined;
}

/** Guest RAM of `size` bytes at GPA 0: page aligned through the addon when it loads. */
export function allocGuestRegion(size: number): { region: GuestRegionInit; aligned: boolean } {
  if (nativeAvailable()) {
    const { buffer, fd } = allocGuestMemory(size, "vblk-bench-guest-ram");
    // The mapping lives as long as the SharedArrayBuffer; the memfd is only
    // needed to share it with another process, which the bench never does.
    closeFd(fd);
    return { region: { gpa: 0, size, buffer }, aligned: true };
  }
  return { region: { gpa: 0, size, buffer: new SharedArrayBuffer(size) }, aligned: false };
}

/** Where the IOThreads and the jobs run. */
export interface Placement {
  /** undefined = unpinned. */
  iothreadCpus: number[] | undefined;
  jobCpus: number[] | undefined;
  /** One line for the report. */
  note: string;
}

/**
 * CPU placement: --iothread-cpus=auto puts the IOThreads of a native-engine
 * device on the CPUs that take the disk's interrupts (they sleep there until
 * a completion wakes them locally) and the jobs, which spin for their
 * completions, on the other CPUs (a spinning vCPU takes its interrupts late).
 * An explicit --cpus_allowed keeps the jobs where the user put them.
 */
export function placeThreads(
  iothreadCpus: "auto" | "none" | number[],
  cpusAllowed: number[] | undefined,
  nativeEngine: boolean,
  path: string | undefined,
): Placement {
  const jobs = cpusAllowed;
  const jobText = jobs ? `jobs on CPU ${jobs.join(",")} (--cpus_allowed)` : "jobs unpinned";
  if (Array.isArray(iothreadCpus))
    return { iothreadCpus, jobCpus: jobs, note: `IOThreads on CPU ${iothreadCpus.join(",")}, ${jobText}` };
  if (iothreadCpus === "none")
    return { iothreadCpus: undefined, jobCpus: jobs, note: `IOThreads unpinned, ${jobText}` };
  if (!nativeEngine || path === undefined || !nativeAvailable())
    return {
      iothreadCpus: undefined,
      jobCpus: jobs,
      note: `IOThreads unpinned (auto: no native engine), ${jobText}`,
    };
  const { irq, note } = irqAutoPlacement(path);
  if (irq === undefined) return { iothreadCpus: undefined, jobCpus: jobs, note: `${note}, ${jobText}` };
  const jobCpus = jobs ?? irq.online.filter((c) => !irq.cpus.includes(c));
  return {
    iothreadCpus: irq.cpus,
    jobCpus,
    note: `${note}, jobs on CPU ${jobCpus.join(",")}${jobs ? " (--cpus_allowed)" : ""}`,
  };
}

/**
 * The optional native addon (@vblk/backend-libaio): page-aligned guest RAM
 * (O_DIRECT engines DMA into it in place), io_uring/libaio probes and thread
 * pinning. Everything degrades when the addon did not build or load.
 */

import {
  allocGuestMemory,
  closeFd,
  nativeAvailable,
  nativeLoadError,
  probeEngines,
  setThreadAffinity,
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

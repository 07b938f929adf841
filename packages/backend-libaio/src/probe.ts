import { nativeAvailable, nativeLoadError, requireNative } from "./native.js";

/** Per engine: `true` when usable here, else the reason it is not. */
export interface EngineProbe {
  io_uring: boolean | string;
  libaio: boolean | string;
}

let cached: EngineProbe | undefined;
let override: Partial<EngineProbe> | undefined;

/**
 * Probe at run time: can this process create an io_uring (EPERM under
 * seccomp, kernel.io_uring_disabled)? An AIO context? Each value is `true`,
 * or a string saying why the engine is unusable. The real probe runs once
 * per thread and is cached; {@link setProbeOverrideForTests} can mask it.
 */
export function probeEngines(): EngineProbe {
  if (!cached) {
    if (!nativeAvailable()) {
      const why = `native addon not loaded: ${nativeLoadError() ?? "unknown"}`;
      cached = { io_uring: why, libaio: why };
    } else {
      const n = requireNative("probeEngines");
      cached = { io_uring: n.probeIoUring(), libaio: n.probeLibaio() };
    }
  }
  return {
    io_uring: override?.io_uring ?? cached.io_uring,
    libaio: override?.libaio ?? cached.libaio,
  };
}

/**
 * Make {@link probeEngines} report something else (e.g. `{ io_uring: "EPERM
 * (simulated)" }`) so that engine selection fallbacks can be tested;
 * `undefined` removes the override. Only affects this thread.
 */
export function setProbeOverrideForTests(o: Partial<EngineProbe> | undefined): void {
  override = o ? { ...o } : undefined;
}

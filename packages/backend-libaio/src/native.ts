/**
 * Loads the compiled addon (`build/Release/vblk_native.node`). Loading never
 * throws: when the addon is missing (build failed, VBLK_SKIP_ADDON=1) or
 * refuses to load, {@link nativeAvailable} is false and
 * {@link nativeLoadError} says why; functions that need it throw then.
 *
 * `VBLK_DISABLE_NATIVE=1` in the environment makes the addon look absent (to
 * test fallbacks); `VBLK_NATIVE_PATH` loads it from another path.
 */
import { createRequire } from "node:module";

/** Shape of the raw addon exports (internal; use the wrappers). */
export interface NativeBinding {
  probeIoUring(): true | string;
  probeLibaio(): true | string;
  allocGuestMemory(size: number, name?: string): { buffer: SharedArrayBuffer; fd: number };
  mapFd(fd: number, size: number, offset: number, readOnly: boolean): SharedArrayBuffer;
  addressOf(view: ArrayBufferView): bigint;
  pageSize: number;
  eventfd(initval: number, nonblock: boolean): number;
  eventfdWrite(fd: number, value: number): void;
  eventfdRead(fd: number): number;
  closeFd(fd: number): void;
  setThreadAffinity(cpus: number[]): void;
  getThreadAffinity(): number[];
  gettid(): number;
  schedYield(): void;
  spinWait16(u16: Uint16Array, index: number, value: number, ns: number): boolean;
  openBlockFile(
    path: string,
    direct: boolean,
    readOnly: boolean,
  ): {
    fd: number;
    sizeBytes: number;
    logicalBlockSize: number;
    physicalBlockSize: number;
    isBlockDevice: boolean;
    direct: boolean;
    note?: string;
  };
  Poller: new () => NativePollerBinding;
  NativeEngine: new (opts: object) => NativeEngineBinding;
}

export interface NativePollerBinding {
  readonly readyBuffer: ArrayBuffer;
  readonly readyCapacity: number;
  add(fd: number, token: number, drainEventfd: boolean): void;
  remove(fd: number): void;
  wait(timeoutMs: number): number;
  close(): void;
  fd(): number;
}

export interface NativeEngineBinding {
  readonly kind: "io_uring" | "libaio";
  readonly completionFd: number;
  readonly sqBuffer: ArrayBuffer;
  readonly iovBuffer: ArrayBuffer;
  readonly cqBuffer: ArrayBuffer;
  readonly sqCapacity: number;
  readonly iovCapacity: number;
  readonly cqCapacity: number;
  readonly depth: number;
  submit(count: number): void;
  reap(): number;
  waitCompletions(minComplete: number, timeoutMs: number): number;
  sleep(timeoutMs: number): number;
  canWatch(): boolean;
  watchFd(fd: number, token: number): void;
  unwatchFd(token: number): void;
  takeReady(): number[];
  watchErrors(): number;
  inflight(): number;
  stats(): {
    submitted: number;
    completed: number;
    submitCalls: number;
    bounced: number;
    bouncedBytes: number;
    errors: number;
    syncOps: number;
  };
  describe(): string;
  close(): void;
}

let binding: NativeBinding | undefined;
let loadError: string | undefined;

function load(): void {
  if (process.env.VBLK_DISABLE_NATIVE === "1") {
    loadError = "disabled by VBLK_DISABLE_NATIVE=1";
    return;
  }
  const path = process.env.VBLK_NATIVE_PATH || "../build/Release/vblk_native.node";
  try {
    binding = createRequire(import.meta.url)(path) as NativeBinding;
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    loadError = `cannot load the vblk native addon (${path}): ${msg.split("\n")[0]}`;
  }
}
load();

/** True when the native addon loaded. */
export function nativeAvailable(): boolean {
  return binding !== undefined;
}

/** Why the native addon is not available (undefined when it is). */
export function nativeLoadError(): string | undefined {
  return loadError;
}

/** The addon, or an Error naming `what` and the load failure. */
export function requireNative(what: string): NativeBinding {
  if (!binding) throw new Error(`${what}: native addon not available: ${loadError ?? "unknown reason"}`);
  return binding;
}

/**
 * @vblk/backend-libaio: the native side of vblk. io_uring and Linux AIO
 * engines spoken through raw syscalls, page-aligned guest RAM as
 * SharedArrayBuffers over memfd, eventfds, an epoll poller, block-device
 * geometry and thread pinning. Everything imports even when the addon did not
 * build: check {@link nativeAvailable}.
 */
export type { BlockFile, OpenBlockFileOptions } from "./block-file.js";
export { openBlockFile } from "./block-file.js";
export * from "./constants.js";
export type { EngineKind, NativeEngineOptions, NativeEngineStats } from "./engine.js";
export { NativeEngine } from "./engine.js";
export { closeFd, eventfd, eventfdRead, eventfdWrite } from "./fd.js";
export type { DiskIrqInfo, IrqLookupRoots } from "./irq-affinity.js";
export { devToMajMin, diskIrqCpus, irqAutoPlacement, parseKernelCpuList } from "./irq-affinity.js";
export type { GuestMemoryAllocation } from "./memory.js";
export { addressOf, allocGuestMemory, mapFd, pageSize } from "./memory.js";
export { nativeAvailable, nativeLoadError } from "./native.js";
export type { PollerAddOptions } from "./poller.js";
export { Poller } from "./poller.js";
export type { EngineProbe } from "./probe.js";
export { probeEngines, setProbeOverrideForTests } from "./probe.js";
export { getThreadAffinity, gettid, schedYield, setThreadAffinity, spinWait16 } from "./thread.js";
export * from "./unix-socket.js";

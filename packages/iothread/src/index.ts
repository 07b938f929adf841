/**
 * @vblk/iothread: a virtio-blk device served by IOThreads (worker threads
 * that each own some virtqueues, QEMU's iothread-vq-mapping), the engines a
 * thread can run, and the driver-side helpers to play the guest.
 */
export * from "./counters.js";
export {
  type DeviceCounters,
  type QueueActivation,
  VirtioBlkDevice,
  type VirtioBlkDeviceOptions,
} from "./device.js";
export * from "./driver.js";
export * from "./engine-spec.js";
// reliability: error policies (rerror/werror, stop/resume, request timeout) and fault injection
export * from "./error-policy.js";
export * from "./fault-engine.js";
export { IoThread, type IoThreadOptions, type StoppedInfo } from "./iothread.js";
export * from "./mapping.js";
export * from "./notifier.js";
export { createThreadsEngine, openImageInfo } from "./threads-engine.js";

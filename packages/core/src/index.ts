/**
 * @vblk/core: guest memory, split virtqueues (device and driver sides),
 * the virtio-blk protocol, the virtio-mmio transport, doorbells and the
 * engine interface. No threads and no native code here.
 */

export * from "./blk-config.js";
export * from "./blk-constants.js";
export * from "./blk-driver.js";
export * from "./blk-request.js";
export * from "./descriptor-chain.js";
export * from "./doorbell.js";
export * from "./driver-queue.js";
export * from "./engine.js";
export * from "./engines.js";
export * from "./errors.js";
export * from "./guest-memory.js";
export * from "./queue.js";
export * from "./split-ring.js";
export * from "./virtio.js";
export * from "./virtio-mmio.js";

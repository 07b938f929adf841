/**
 * @vblk/vhost-user: a vhost-user-blk back-end over the vblk device (QEMU's
 * vhost-user-blk-pci connects to it), and the `vblk serve` command.
 */
export * from "./channel.js";
export * from "./memory-table.js";
export * from "./protocol.js";
export * from "./serve.js";
export * from "./server.js";
export * from "./session.js";

// Real-guest tests: a Linux guest under QEMU uses a virtio-blk disk served by each
// backend. Run with `pnpm run test:guest` (not part of the normal `vitest run`).
// To add a vhost-user backend (e.g. `vblk serve`), one line:
//   defineGuestSuite({ backend: "vhost-user", vhostUser: { command: ["node", "bench/dist/cli.js", "serve",
//     "--socket", "{socket}", "--image", "{image}", "--num-queues", "{numQueues}"] } });
import { defineGuestSuite } from "./suite.js";

// QEMU's own virtio-blk (in the main loop, then in an IOThread)
defineGuestSuite({ backend: "builtin" });
defineGuestSuite({ backend: "builtin", iothread: true, checks: ["info", "fio-verify"] });
// qemu-storage-daemon as a vhost-user-blk server (the reference for `vblk serve`)
defineGuestSuite({
  backend: "qsd",
  expectSerial: "vhost_user_blk",
  expectWriteCache: "write through",
  checks: ["info", "fs", "fio-verify", "flush-discard", "readonly"],
});
// the generic vhost-user path (what `vblk serve` will use), exercised with qsd as the server
defineGuestSuite({
  backend: "vhost-user",
  name: "guest vhost-user (qemu-storage-daemon as the server command) q4",
  numQueues: 4,
  checks: ["info", "flush-discard"],
  expectSerial: "vhost_user_blk",
  vhostUser: {
    command: [
      "qemu-storage-daemon",
      "--blockdev",
      "driver=file,node-name=f,filename={image},cache.direct=on,aio=native,discard=unmap",
      "--export",
      "type=vhost-user-blk,id=e,node-name=f,addr.type=unix,addr.path={socket},writable=on,num-queues={numQueues}",
    ],
  },
});

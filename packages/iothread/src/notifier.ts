/**
 * Notifiers: how one side tells the other "look at the ring". Serializable
 * descriptions travel to worker threads; `makeNotify` turns one into a call.
 *
 *   doorbell  an Atomics doorbell in a SharedArrayBuffer (threads of this process)
 *   eventfd   a Linux eventfd (KVM ioeventfd/irqfd, vhost-user kick/call fds,
 *             and in-process kicks to an IOThread that waits in epoll)
 *   none      nobody listens (polling-only drivers)
 */
import { writeSync } from "node:fs";
import { Doorbell } from "@vblk/core";

export type NotifierDesc =
  | { kind: "doorbell"; buffer: SharedArrayBuffer; index: number }
  | { kind: "eventfd"; fd: number }
  | { kind: "none" };

const ONE = new Uint8Array(new BigUint64Array([1n]).buffer);

/** A function that signals the notifier. Cheap for doorbells when nobody sleeps. */
export function makeNotify(d: NotifierDesc): () => void {
  switch (d.kind) {
    case "doorbell": {
      const bell = Doorbell.from(d);
      return () => bell.ring();
    }
    case "eventfd": {
      const fd = d.fd;
      return () => {
        try {
          writeSync(fd, ONE, 0, 8);
        } catch (e) {
          // EAGAIN: the counter is saturated, the reader will wake anyway.
          if ((e as NodeJS.ErrnoException).code !== "EAGAIN") throw e;
        }
      };
    }
    case "none":
      return () => {};
  }
}

import { requireNative } from "./native.js";

/** A new eventfd (always EFD_CLOEXEC; EFD_NONBLOCK unless `nonblock` is false). */
export function eventfd(initval = 0, nonblock = true): number {
  return requireNative("eventfd").eventfd(initval, nonblock);
}

/** Add `value` (default 1) to an eventfd's counter, waking its pollers. */
export function eventfdWrite(fd: number, value = 1): void {
  requireNative("eventfdWrite").eventfdWrite(fd, value);
}

/** Read and reset an eventfd's counter without blocking; 0 when nothing was pending. */
export function eventfdRead(fd: number): number {
  return requireNative("eventfdRead").eventfdRead(fd);
}

/** close(2) an fd returned by this package (eventfd, memfd, openBlockFile). */
export function closeFd(fd: number): void {
  requireNative("closeFd").closeFd(fd);
}

import { requireNative } from "./native.js";

/** Guest RAM from {@link allocGuestMemory}. */
export interface GuestMemoryAllocation {
  /** Page-aligned, shareable with worker threads (workerData / postMessage) and Atomics. */
  buffer: SharedArrayBuffer;
  /** The memfd behind it; stays open (for handing to another process) until {@link closeFd}. */
  fd: number;
}

/**
 * Page-aligned guest RAM: memfd_create + ftruncate + mmap(MAP_SHARED),
 * wrapped as a real SharedArrayBuffer through V8's backing-store API (plain
 * N-API cannot make a SharedArrayBuffer). Returns the SAB and the memfd; the
 * fd stays open for sharing with another process until {@link closeFd}. The
 * mapping is unmapped by the backing store's deleter once the SAB (in every
 * thread) and every engine holding it are gone.
 */
export function allocGuestMemory(size: number, name?: string): GuestMemoryAllocation {
  return requireNative("allocGuestMemory").allocGuestMemory(size, name);
}

/**
 * mmap an fd someone else gave us (vhost-user SET_MEM_TABLE) MAP_SHARED, as
 * a SharedArrayBuffer of `size` bytes starting at file `offset` (need not be
 * page aligned). With `readOnly` the mapping is PROT_READ: writing through
 * the buffer then kills the process with SIGSEGV, so only read it.
 */
export function mapFd(fd: number, size: number, offset: number, readOnly = false): SharedArrayBuffer {
  return requireNative("mapFd").mapFd(fd, size, offset, readOnly);
}

/** Address of the first byte of a typed array's / DataView's memory, for alignment checks. */
export function addressOf(view: ArrayBufferView): bigint {
  return requireNative("addressOf").addressOf(view);
}

/** The system page size. */
export function pageSize(): number {
  return requireNative("pageSize").pageSize;
}

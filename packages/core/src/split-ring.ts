/**
 * Split virtqueue layout (virtio 1.2, 2.7). Three areas in guest memory,
 * all little-endian:
 *
 *   Descriptor table (align 16)          size x 16 bytes
 *   +--------------------+--------+--------+--------+
 *   | addr (le64)        | len32  | flags16| next16 |   x size
 *   +--------------------+--------+--------+--------+
 *     0                    8        12       14
 *
 *   Available ring (align 2, driver -> device)   6 + 2 x size bytes
 *   +-------+-------+---------------------+------------+
 *   | flags | idx   | ring[size] (heads)  | used_event |
 *   +-------+-------+---------------------+------------+
 *     0       2       4                     4 + 2*size
 *
 *   Used ring (align 4, device -> driver)        6 + 8 x size bytes
 *   +-------+-------+---------------------------+-------------+
 *   | flags | idx   | ring[size] {id32, len32}  | avail_event |
 *   +-------+-------+---------------------------+-------------+
 *     0       2       4                           4 + 8*size
 *
 * idx fields are free-running 16-bit counters; ring slots are idx % size.
 * used_event / avail_event exist only with VIRTIO_F_RING_EVENT_IDX.
 */

export const DESC_SIZE = 16;
export const DescFlag = { NEXT: 1, WRITE: 2, INDIRECT: 4 } as const;
/** avail.flags: driver asks the device not to interrupt. */
export const AVAIL_F_NO_INTERRUPT = 1;
/** used.flags: device asks the driver not to kick. */
export const USED_F_NO_NOTIFY = 1;

/** Largest split-ring size the spec allows. */
export const MAX_QUEUE_SIZE = 32768;

export const Align = { DESC: 16, AVAIL: 2, USED: 4 } as const;

export function descTableBytes(size: number): number {
  return DESC_SIZE * size;
}
export function availRingBytes(size: number): number {
  return 6 + 2 * size;
}
export function usedRingBytes(size: number): number {
  return 6 + 8 * size;
}

export interface RingAddresses {
  size: number;
  descAddr: number;
  availAddr: number;
  usedAddr: number;
}

/** Lay a ring out contiguously from `base` (16-aligned) and say where it ends. */
export function layoutSplitRing(size: number, base: number): RingAddresses & { end: number } {
  if (base % Align.DESC !== 0) throw new Error(`ring base 0x${base.toString(16)} is not 16-byte aligned`);
  const descAddr = base;
  const availAddr = descAddr + descTableBytes(size);
  const usedAddr = alignUp(availAddr + availRingBytes(size), Align.USED);
  const end = alignUp(usedAddr + usedRingBytes(size), Align.DESC);
  return { size, descAddr, availAddr, usedAddr, end };
}

const TWO_32 = 0x1_0000_0000;

/**
 * A 64-bit field (descriptor address, request sector) as the two 32-bit
 * words it is stored in. Values below 2^32 skip the division: `%` on a
 * double is a library call (fmod), and the driver splits three addresses and
 * a sector per request.
 */
export function lo32(x: number): number {
  return x < TWO_32 ? x : x - hi32(x) * TWO_32;
}

export function hi32(x: number): number {
  return x < TWO_32 ? 0 : Math.floor(x / TWO_32);
}

export function alignUp(x: number, a: number): number {
  return Math.ceil(x / a) * a;
}

/** True when `size` is a legal split-ring size: a power of two in 1..32768. */
export function isValidQueueSize(size: number): boolean {
  return Number.isInteger(size) && size >= 1 && size <= MAX_QUEUE_SIZE && (size & (size - 1)) === 0;
}

/**
 * vring_need_event: should the other side be notified, given its published
 * event index, the new index and the index at the previous notification?
 * All values are 16-bit counters.
 */
export function needEvent(event: number, newIdx: number, oldIdx: number): boolean {
  return ((newIdx - event - 1) & 0xffff) < ((newIdx - oldIdx) & 0xffff);
}

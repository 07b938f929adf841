/** A driver queue and a device queue over one GuestMemory, optionally started near the 16-bit wrap. */
import {
  DriverQueue,
  type GuestMemory,
  layoutSplitRing,
  type RingAddresses,
  SplitQueue,
} from "../../dist/index.js";

export interface Pair {
  mem: GuestMemory;
  ring: RingAddresses;
  dq: DriverQueue;
  q: SplitQueue;
}

export interface PairOptions {
  eventIdx?: boolean;
  indirect?: boolean;
  /** Ring base (16-aligned). */
  base?: number;
  /** Where both sides' 16-bit indices start. */
  start?: number;
}

/**
 * Run `n` one-descriptor round trips through a throwaway device queue so that
 * the driver's avail/used indices reach n (the DriverQueue has no resume
 * option); the caller then builds its device queue with lastAvailIdx = usedIdx = n,
 * as vhost-user SET_VRING_BASE would.
 */
export function advance(
  mem: GuestMemory,
  ring: RingAddresses,
  dq: DriverQueue,
  n: number,
  bufGpa: number,
): void {
  if (n === 0) return;
  const tmp = new SplitQueue(mem, { ...ring, eventIdx: dq.eventIdx });
  const g = [bufGpa];
  const l = [1];
  let done = 0;
  while (done < n) {
    const k = Math.min(ring.size, n - done);
    for (let i = 0; i < k; i++) dq.addChain(g, l, 1, 0);
    dq.publish();
    for (let ch = tmp.pop(); ch !== null; ch = tmp.pop()) tmp.push(ch.head, 0);
    tmp.publish();
    while (dq.popUsed() >= 0) {}
    done += k;
  }
  dq.kickNeeded(); // forget the kicks of the warm-up
}

export function makePair(mem: GuestMemory, size: number, o: PairOptions = {}): Pair {
  const ring = layoutSplitRing(size, o.base ?? 0);
  const eventIdx = o.eventIdx ?? false;
  const dq = new DriverQueue(mem, { ...ring, eventIdx });
  const start = o.start ?? 0;
  advance(mem, ring, dq, start, ring.end);
  const q = new SplitQueue(mem, {
    ...ring,
    eventIdx,
    indirect: o.indirect ?? false,
    lastAvailIdx: start,
    usedIdx: start,
  });
  return { mem, ring, dq, q };
}

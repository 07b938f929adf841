import { describe, expect, it } from "vitest";
import {
  type DescriptorChain,
  DriverQueue,
  GuestMemory,
  layoutSplitRing,
  needEvent,
  SplitQueue,
  VirtqueueError,
} from "../dist/index.js";
import {
  availEvent,
  crosses,
  pattern,
  readDesc,
  setAvailFlags,
  setUsedEvent,
  usedElem,
  usedEvent,
  usedFlags,
  usedIdx,
} from "./helpers/raw.js";
import { makePair } from "./helpers/rings.js";

const MiB = 1 << 20;
const DATA = 0x40000; // data buffers live here, far from the rings
const TABLES = 0x80000; // indirect tables

interface Seen {
  head: number;
  gpa: number[];
  len: number[];
  readable: number;
  indirect: boolean;
}

function snap(ch: DescriptorChain): Seen {
  return {
    head: ch.head,
    gpa: Array.from(ch.gpa.subarray(0, ch.count)),
    len: Array.from(ch.len.subarray(0, ch.count)),
    readable: ch.readable,
    indirect: ch.indirect,
  };
}

function expectVq(fn: () => unknown, code: string): VirtqueueError {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(VirtqueueError);
  expect((err as VirtqueueError).code).toBe(code);
  return err as VirtqueueError;
}

describe("chains", () => {
  it("pops a direct chain with mixed readable/writable segments exactly as added", () => {
    const { dq, q } = makePair(GuestMemory.allocate(MiB), 16);
    const gpas = [DATA, DATA + 100, DATA + 0x1000, DATA + 0x3000, DATA + 0x5001];
    const lens = [16, 4000, 512, 7, 1];
    expect(q.pop()).toBeNull();
    const head = dq.addChain(gpas, lens, 2, 3, "tok");
    expect(head).toBeGreaterThanOrEqual(0);
    expect(dq.free).toBe(11);
    expect(q.pop()).toBeNull(); // not published yet
    dq.publish();
    const ch = q.pop()!;
    expect(snap(ch)).toEqual({ head, gpa: gpas, len: lens, readable: 2, indirect: false });
    expect(ch.count).toBe(5);
    expect(ch.writable).toBe(3);
    expect(ch.readableBytes).toBe(4016);
    expect(ch.writableBytes).toBe(520);
    for (let i = 0; i < 5; i++) {
      expect(ch.region[i]).toBe(0);
      expect(ch.offset[i]).toBe(gpas[i]);
    }
    expect(q.pop()).toBeNull();
    q.push(head, 520);
    q.publish();
    expect(dq.popUsed()).toBe(head);
    expect(dq.lastLen).toBe(520);
    expect(dq.lastToken).toBe("tok");
    expect(dq.popUsed()).toBe(-1);
    expect(dq.free).toBe(16);
    expect(dq.outstanding).toBe(0);
  });

  it("translates region index and offset for a chain spanning two regions", () => {
    const mem = new GuestMemory([
      { gpa: 0, size: MiB, buffer: new SharedArrayBuffer(MiB) },
      { gpa: 0x1_0000_0000, size: 64 * 1024, buffer: new SharedArrayBuffer(64 * 1024) },
    ]);
    const { dq, q } = makePair(mem, 8);
    dq.addChain([0x1_0000_0010, DATA], [32, 64], 1, 1);
    dq.publish();
    const ch = q.pop()!;
    expect(Array.from(ch.region.subarray(0, 2))).toEqual([1, 0]);
    expect(Array.from(ch.offset.subarray(0, 2))).toEqual([0x10, DATA]);
    expect(Array.from(ch.gpa.subarray(0, 2))).toEqual([0x1_0000_0010, DATA]);
  });

  it("pops an indirect chain through its table and it costs one ring descriptor", () => {
    const { mem, dq, q } = makePair(GuestMemory.allocate(MiB), 8, { indirect: true });
    const gpas = [DATA, DATA + 16, DATA + 0x2000, DATA + 0x4000];
    const lens = [16, 4096, 4096, 1];
    const head = dq.addIndirect(TABLES, gpas, lens, 2, 2, 7);
    expect(dq.free).toBe(7);
    // The table is written in guest memory in the spec's format.
    expect(readDesc(mem, TABLES, 1)).toEqual({ addr: BigInt(DATA + 16), len: 4096, flags: 1, next: 2 });
    expect(readDesc(mem, TABLES, 3)).toEqual({ addr: BigInt(DATA + 0x4000), len: 1, flags: 2, next: 0 });
    dq.publish();
    const ch = q.pop()!;
    expect(snap(ch)).toEqual({ head, gpa: gpas, len: lens, readable: 2, indirect: true });
    q.push(head, 4097);
    q.publish();
    expect(dq.popUsed()).toBe(head);
    expect(dq.lastLen).toBe(4097);
    expect(dq.lastToken).toBe(7);
    expect(dq.free).toBe(8);
  });

  it("accepts all-readable and all-writable chains", () => {
    const { dq, q } = makePair(GuestMemory.allocate(MiB), 8);
    dq.addChain([DATA, DATA + 8], [8, 8], 2, 0);
    dq.addChain([DATA + 16, DATA + 24, DATA + 32], [8, 8, 8], 0, 3);
    dq.publish();
    const a = q.pop()!;
    expect([a.count, a.readable, a.writable, a.readableBytes, a.writableBytes]).toEqual([2, 2, 0, 16, 0]);
    const b = q.pop()!;
    expect([b.count, b.readable, b.writable, b.readableBytes, b.writableBytes]).toEqual([3, 0, 3, 0, 24]);
  });

  it("accepts a chain using every descriptor of the queue (the longest legal chain)", () => {
    const size = 16;
    const { dq, q } = makePair(GuestMemory.allocate(MiB), size);
    const gpas = Array.from({ length: size }, (_, i) => DATA + i * 64);
    const lens = Array.from({ length: size }, (_, i) => i + 1);
    const head = dq.addChain(gpas, lens, 5, size - 5);
    expect(dq.free).toBe(0);
    expect(dq.addChain([DATA], [1], 1, 0)).toBe(-1); // full
    dq.publish();
    const ch = q.pop()!;
    expect(snap(ch)).toEqual({ head, gpa: gpas, len: lens, readable: 5, indirect: false });
  });

  it("an indirect table as long as it can be (and longer than the queue)", () => {
    const { dq, q } = makePair(GuestMemory.allocate(MiB), 4, { indirect: true });
    const n = 100;
    const gpas = Array.from({ length: n }, (_, i) => DATA + i * 16);
    const lens = Array.from({ length: n }, () => 16);
    const head = dq.addIndirect(TABLES, gpas, lens, 60, 40);
    dq.publish();
    const ch = q.pop()!;
    expect(snap(ch)).toEqual({ head, gpa: gpas, len: lens, readable: 60, indirect: true });
    expect(ch.capacity).toBeGreaterThanOrEqual(n);
  });

  it("pops in avail order, completes out of order, and recycles descriptors", () => {
    const size = 16;
    const { dq, q } = makePair(GuestMemory.allocate(MiB), size);
    const added: number[] = [];
    for (let i = 0; i < 5; i++)
      added.push(dq.addChain([DATA + i * 0x100, DATA + i * 0x100 + 16], [16, 3], 1, 1, i));
    dq.publish();
    expect(q.pending()).toBe(5);
    const popped: number[] = [];
    for (let ch = q.pop(); ch !== null; ch = q.pop()) popped.push(ch.head);
    expect(popped).toEqual(added);
    // Complete in reverse with distinct lengths.
    for (const h of [...popped].reverse()) q.push(h, 100 + h);
    q.publish();
    const back: Array<[number, number, unknown]> = [];
    for (let h = dq.popUsed(); h >= 0; h = dq.popUsed()) back.push([h, dq.lastLen, dq.lastToken]);
    expect(back).toEqual([...added].reverse().map((h) => [h, 100 + h, added.indexOf(h)]));
    expect(dq.free).toBe(size);
    // The free list is usable again: fill the whole queue with 2-descriptor chains.
    for (let i = 0; i < size / 2; i++)
      expect(dq.addChain([DATA, DATA], [1, 1], 1, 1)).toBeGreaterThanOrEqual(0);
    expect(dq.addChain([DATA], [1], 1, 0)).toBe(-1);
    dq.publish();
    const heads = new Set<number>();
    for (let ch = q.pop(); ch !== null; ch = q.pop()) heads.add(ch.head);
    expect(heads.size).toBe(size / 2);
  });

  it("push() writes used elements at used.idx % size and publish() makes them visible", () => {
    const { mem, ring, dq, q } = makePair(GuestMemory.allocate(MiB), 4);
    dq.addChain([DATA], [8], 0, 1);
    dq.addChain([DATA], [8], 0, 1);
    dq.publish();
    const a = q.pop()!.head;
    const b = q.pop()!.head;
    q.push(b, 5);
    expect(usedIdx(mem, ring)).toBe(0); // not yet published
    expect(dq.hasUsed()).toBe(false);
    q.push(a, 6);
    q.publish();
    expect(usedIdx(mem, ring)).toBe(2);
    expect(usedElem(mem, ring, 0)).toEqual({ id: b, len: 5 });
    expect(usedElem(mem, ring, 1)).toEqual({ id: a, len: 6 });
    expect(dq.hasUsed()).toBe(true);
  });
});

describe("wrap-around of the 16-bit indices", () => {
  for (const eventIdx of [false, true]) {
    it(`runs past 65535 from a resumed position (eventIdx=${eventIdx})`, () => {
      const size = 8;
      const start = 65530;
      const { mem, ring, dq, q } = makePair(GuestMemory.allocate(MiB), size, {
        eventIdx,
        indirect: true,
        start,
      });
      expect(dq.nextAvail).toBe(start);
      expect(q.nextAvail).toBe(start);
      expect(q.nextUsed).toBe(start);
      const total = 40;
      let submitted = 0;
      let completed = 0;
      const order: number[] = [];
      let sawWrap = false;
      while (completed < total) {
        // Vary batch sizes (1..3 chains, mixing direct and indirect).
        const batch = Math.min(1 + (submitted % 3), total - submitted);
        const heads: number[] = [];
        for (let i = 0; i < batch; i++) {
          const k = submitted + i;
          const gpas = [DATA + k * 32, DATA + k * 32 + 16];
          const h =
            k % 2 === 0
              ? dq.addChain(gpas, [16, 16], 1, 1, k)
              : dq.addIndirect(TABLES + 256 * dq.peekHead(), gpas, [16, 16], 1, 1, k);
          expect(h).toBeGreaterThanOrEqual(0);
          heads.push(h);
        }
        submitted += batch;
        dq.publish();
        for (let ch = q.pop(); ch !== null; ch = q.pop()) {
          expect(ch.head).toBe(heads.shift());
          expect(ch.gpa[1]).toBe(ch.gpa[0]! + 16);
          q.push(ch.head, (ch.gpa[0]! - DATA) / 32);
        }
        q.publish();
        for (let h = dq.popUsed(); h >= 0; h = dq.popUsed()) {
          expect(dq.lastLen).toBe(dq.lastToken);
          order.push(dq.lastToken as number);
          completed++;
        }
        if (q.nextAvail < start) sawWrap = true;
      }
      expect(order).toEqual(Array.from({ length: total }, (_, i) => i));
      expect(sawWrap).toBe(true);
      const end = (start + total) & 0xffff;
      expect(end).toBe(34);
      expect(q.nextAvail).toBe(end);
      expect(q.nextUsed).toBe(end);
      expect(dq.nextAvail).toBe(end);
      expect(usedIdx(mem, ring)).toBe(end);
      expect(dq.free).toBe(size);
      expect(q.inflight).toBe(0);
    });
  }

  it("pending() counts across the wrap", () => {
    const { dq, q } = makePair(GuestMemory.allocate(MiB), 8, { start: 65533 });
    for (let i = 0; i < 6; i++) dq.addChain([DATA], [1], 1, 0);
    dq.publish();
    expect(dq.nextAvail).toBe(3);
    expect(q.pending()).toBe(6);
    expect(q.hasPending()).toBe(true);
    for (let i = 0; i < 6; i++) expect(q.pop()).not.toBeNull();
    expect(q.hasPending()).toBe(false);
    expect(q.pop()).toBeNull();
  });
});

describe("EVENT_IDX", () => {
  it("vring_need_event matches the 'event in [old, new)' definition, wrap included", () => {
    const samples = [0, 1, 2, 100, 32767, 32768, 65533, 65534, 65535];
    for (const e of samples)
      for (const n of samples) for (const o of samples) expect(needEvent(e, n, o)).toBe(crosses(e, n, o));
  });

  it("device publishes avail_event = next avail on every pop while notifications are enabled", () => {
    const { mem, ring, dq, q } = makePair(GuestMemory.allocate(MiB), 8, { eventIdx: true, start: 65534 });
    for (let i = 0; i < 4; i++) dq.addChain([DATA], [1], 1, 0);
    dq.publish();
    for (let i = 0; i < 4; i++) {
      q.pop();
      expect(availEvent(mem, ring)).toBe(q.nextAvail);
    }
    expect(q.nextAvail).toBe(2);
  });

  it("kicks: once when the device is waiting, not again until it catches up", () => {
    const { mem, ring, dq, q } = makePair(GuestMemory.allocate(MiB), 16, { eventIdx: true });
    dq.addChain([DATA], [1], 1, 0);
    dq.publish();
    expect(dq.kickNeeded()).toBe(true); // avail_event 0 crossed
    expect(dq.kickNeeded()).toBe(false); // nothing new
    dq.addChain([DATA], [1], 1, 0);
    dq.publish();
    expect(dq.kickNeeded()).toBe(false); // device has not consumed the first one yet
    q.pop();
    q.pop(); // device caught up: avail_event = 2
    expect(availEvent(mem, ring)).toBe(2);
    dq.addChain([DATA], [1], 1, 0);
    dq.addChain([DATA], [1], 1, 0);
    dq.publish();
    expect(dq.kickNeeded()).toBe(true);
  });

  it("kicks: disabled notification stops kicks, enable re-arms them and reports the race", () => {
    const { mem, ring, dq, q } = makePair(GuestMemory.allocate(MiB), 16, { eventIdx: true });
    q.disableNotification();
    expect(usedFlags(mem, ring)).toBe(0); // EVENT_IDX uses avail_event, never used.flags
    // avail_event parked just behind what the device consumed: no kick at all
    expect(availEvent(mem, ring)).toBe(0xffff);
    dq.addChain([DATA], [1], 1, 0);
    dq.publish();
    expect(dq.kickNeeded()).toBe(false);
    q.pop();
    expect(availEvent(mem, ring)).toBe(0xffff); // not advanced while disabled
    dq.addChain([DATA], [1], 1, 0);
    dq.publish();
    expect(dq.kickNeeded()).toBe(false);
    q.pop();
    expect(q.enableNotification()).toBe(false); // nothing arrived
    expect(availEvent(mem, ring)).toBe(2);
    dq.addChain([DATA], [1], 1, 0);
    dq.publish();
    expect(dq.kickNeeded()).toBe(true); // enabled: the next buffer kicks
    q.pop();
    q.disableNotification();
    expect(availEvent(mem, ring)).toBe(2);
    // The race: the driver adds while the device is still "disabled"...
    dq.addChain([DATA], [1], 1, 0);
    dq.publish();
    expect(dq.kickNeeded()).toBe(false);
    // ...so enable must report it: the device keeps draining.
    expect(q.enableNotification()).toBe(true);
    expect(q.pop()).not.toBeNull();
    expect(q.enableNotification()).toBe(false);
  });

  it("ignores used.flags NO_NOTIFY and avail.flags NO_INTERRUPT (spec 2.7.7/2.7.10)", () => {
    const { mem, ring, dq, q } = makePair(GuestMemory.allocate(MiB), 8, { eventIdx: true });
    mem.slice(ring.usedAddr, 2).set([1, 0]); // NO_NOTIFY, must be ignored
    dq.addChain([DATA], [1], 1, 0);
    dq.publish();
    expect(dq.kickNeeded()).toBe(true);
    const ch = q.pop()!;
    setAvailFlags(mem, ring, 1); // NO_INTERRUPT, must be ignored
    q.push(ch.head, 0);
    q.publish();
    expect(q.needsInterrupt()).toBe(true);
  });

  it("interrupts: follow used_event, including a delayed used_event and disableInterrupts", () => {
    const { mem, ring, dq, q } = makePair(GuestMemory.allocate(MiB), 16, { eventIdx: true });
    for (let i = 0; i < 12; i++) dq.addChain([DATA], [1], 0, 1);
    dq.publish();
    const heads: number[] = [];
    for (let ch = q.pop(); ch !== null; ch = q.pop()) heads.push(ch.head);
    const complete = (n: number) => {
      for (let i = 0; i < n; i++) q.push(heads.shift()!, 1);
      q.publish();
    };
    complete(1);
    expect(q.needsInterrupt()).toBe(true); // first decision: always
    expect(q.needsInterrupt()).toBe(false); // nothing new published
    expect(dq.popUsed()).toBeGreaterThanOrEqual(0); // used_event = 1
    expect(usedEvent(mem, ring)).toBe(1);
    complete(2);
    expect(q.needsInterrupt()).toBe(true); // 1 in [1, 3)
    complete(1);
    expect(q.needsInterrupt()).toBe(false); // driver has not popped: used_event still 1
    while (dq.popUsed() >= 0) {}
    expect(usedEvent(mem, ring)).toBe(4);
    // Delayed interrupt: "tell me when 3 more are done" (virtqueue_enable_cb_delayed).
    setUsedEvent(mem, ring, 4 + 2);
    complete(1);
    expect(q.needsInterrupt()).toBe(false); // used 4 -> 5
    complete(1);
    expect(q.needsInterrupt()).toBe(false); // 5 -> 6
    complete(1);
    expect(q.needsInterrupt()).toBe(true); // 6 -> 7 crosses 6
    while (dq.popUsed() >= 0) {}
    dq.disableInterrupts();
    complete(2);
    expect(q.needsInterrupt()).toBe(false);
    expect(dq.enableInterrupts()).toBe(true); // completions arrived meanwhile
    while (dq.popUsed() >= 0) {}
    expect(dq.enableInterrupts()).toBe(false);
    complete(1);
    expect(q.needsInterrupt()).toBe(true);
  });

  it("kickNeeded/needsInterrupt agree with vring_need_event over a long random run across the wrap", () => {
    const size = 32;
    const start = 65536 - 1000;
    const { mem, ring, dq, q } = makePair(GuestMemory.allocate(MiB), size, { eventIdx: true, start });
    const rnd = pattern(40000, 12345);
    let r = 0;
    const next = () => rnd[r++ % rnd.length]!;
    let kickedAt = dq.nextAvail;
    let signalled = -1; // device: used idx at its last interrupt decision (-1: none yet)
    let published = q.nextUsed;
    const inflight: number[] = [];
    let kicks = 0;
    let irqs = 0;
    let decisions = 0;
    for (let step = 0; step < 6000; step++) {
      switch (next() % 7) {
        case 0: {
          // driver adds 1..4 and publishes, then decides whether to kick
          const n = 1 + (next() % 4);
          for (let i = 0; i < n && dq.free > 0; i++) dq.addChain([DATA], [1], 0, 1);
          dq.publish();
          const now = dq.nextAvail;
          const expected = now !== kickedAt && crosses(availEvent(mem, ring), now, kickedAt);
          expect(dq.kickNeeded()).toBe(expected);
          if (expected) kicks++;
          kickedAt = now;
          break;
        }
        case 1:
        case 2: {
          const n = 1 + (next() % 4);
          for (let i = 0; i < n; i++) {
            const ch = q.pop();
            if (ch === null) break;
            inflight.push(ch.head);
          }
          break;
        }
        case 3: {
          const n = 1 + (next() % 4);
          for (let i = 0; i < n && inflight.length > 0; i++) q.push(inflight.shift()!, 1);
          q.publish();
          published = q.nextUsed;
          const expected =
            signalled < 0 || (published !== signalled && crosses(usedEvent(mem, ring), published, signalled));
          expect(q.needsInterrupt()).toBe(expected);
          decisions++;
          if (expected) irqs++;
          signalled = published;
          break;
        }
        case 4: {
          const n = 1 + (next() % 4);
          for (let i = 0; i < n; i++) if (dq.popUsed() < 0) break;
          break;
        }
        case 5:
          if (next() % 2 === 0) q.disableNotification();
          else q.enableNotification();
          break;
        case 6:
          if (next() % 2 === 0) dq.disableInterrupts();
          else dq.enableInterrupts();
          break;
      }
    }
    expect(q.nextAvail).toBeLessThan(start); // wrapped
    // Both outcomes happened, so the comparisons above were not vacuous.
    expect(kicks).toBeGreaterThan(10);
    expect(irqs).toBeGreaterThan(10);
    expect(decisions - irqs).toBeGreaterThan(10);
  });
});

describe("without EVENT_IDX: NO_NOTIFY and NO_INTERRUPT flags", () => {
  it("disableNotification sets used.flags NO_NOTIFY and the driver stops kicking", () => {
    const { mem, ring, dq, q } = makePair(GuestMemory.allocate(MiB), 8);
    dq.addChain([DATA], [1], 1, 0);
    dq.publish();
    expect(dq.kickNeeded()).toBe(true);
    q.disableNotification();
    expect(usedFlags(mem, ring)).toBe(1);
    dq.addChain([DATA], [1], 1, 0);
    dq.publish();
    expect(dq.kickNeeded()).toBe(false);
    q.pop();
    q.pop();
    expect(q.enableNotification()).toBe(false);
    expect(usedFlags(mem, ring)).toBe(0);
    dq.addChain([DATA], [1], 1, 0);
    dq.publish();
    expect(dq.kickNeeded()).toBe(true);
    expect(dq.kickNeeded()).toBe(false); // nothing new since the last decision
  });

  it("enableNotification() returns true when work arrived while disabled", () => {
    const { dq, q } = makePair(GuestMemory.allocate(MiB), 8);
    q.disableNotification();
    dq.addChain([DATA], [1], 1, 0);
    dq.publish();
    expect(dq.kickNeeded()).toBe(false);
    expect(q.enableNotification()).toBe(true);
    q.pop();
    expect(q.enableNotification()).toBe(false);
  });

  it("avail_event is ignored: the driver kicks whenever NO_NOTIFY is clear", () => {
    const { mem, ring, dq } = makePair(GuestMemory.allocate(MiB), 8);
    mem.slice(ring.usedAddr + 4 + 8 * 8, 2).set([100, 0]); // a stale avail_event
    for (let i = 0; i < 3; i++) {
      dq.addChain([DATA], [1], 1, 0);
      dq.publish();
      expect(dq.kickNeeded()).toBe(true);
    }
  });

  it("NO_INTERRUPT suppresses interrupts; used_event is ignored", () => {
    const { mem, ring, dq, q } = makePair(GuestMemory.allocate(MiB), 8);
    for (let i = 0; i < 6; i++) dq.addChain([DATA], [1], 0, 1);
    dq.publish();
    const heads: number[] = [];
    for (let ch = q.pop(); ch !== null; ch = q.pop()) heads.push(ch.head);
    setUsedEvent(mem, ring, 1000); // would suppress with EVENT_IDX; must be ignored
    q.push(heads.shift()!, 1);
    q.publish();
    expect(q.needsInterrupt()).toBe(true);
    expect(q.needsInterrupt()).toBe(false); // nothing new
    dq.disableInterrupts();
    expect(mem.slice(ring.availAddr, 1)[0]).toBe(1);
    q.push(heads.shift()!, 1);
    q.publish();
    expect(q.needsInterrupt()).toBe(false);
    expect(dq.enableInterrupts()).toBe(true);
    q.push(heads.shift()!, 1);
    q.publish();
    expect(q.needsInterrupt()).toBe(true);
  });
});

describe("in-flight accounting", () => {
  it("tracks inflight and inflightHeadList through pop and push", () => {
    const { dq, q } = makePair(GuestMemory.allocate(MiB), 8);
    const heads = [0, 1, 2].map(() => dq.addChain([DATA, DATA], [1, 1], 1, 1));
    dq.publish();
    expect(q.inflight).toBe(0);
    expect(q.inflightHeadList()).toEqual([]);
    q.pop();
    q.pop();
    q.pop();
    expect(q.inflight).toBe(3);
    expect(q.inflightHeadList()).toEqual([...heads].sort((a, b) => a - b));
    q.push(heads[1]!, 0);
    expect(q.inflight).toBe(2);
    expect(q.inflightHeadList()).toEqual([heads[0], heads[2]].sort((a, b) => a! - b!));
  });

  it("push of a head that is not in flight throws USED_UNKNOWN_HEAD and changes nothing", () => {
    const { mem, ring, dq, q } = makePair(GuestMemory.allocate(MiB), 8);
    const h = dq.addChain([DATA], [1], 0, 1);
    dq.publish();
    expectVq(() => q.push(h, 1), "USED_UNKNOWN_HEAD"); // not popped yet
    q.pop();
    expectVq(() => q.push(h + 1, 1), "USED_UNKNOWN_HEAD");
    expectVq(() => q.push(8, 1), "USED_UNKNOWN_HEAD"); // >= size
    expectVq(() => q.push(65535, 1), "USED_UNKNOWN_HEAD");
    expect(q.inflight).toBe(1);
    expect(q.nextUsed).toBe(0);
    q.push(h, 1);
    expectVq(() => q.push(h, 1), "USED_UNKNOWN_HEAD"); // twice
    expect(q.inflight).toBe(0);
    expect(q.nextUsed).toBe(1);
    q.publish();
    expect(usedIdx(mem, ring)).toBe(1);
  });

  it("a queue of size 1 works (the smallest legal ring)", () => {
    const mem = GuestMemory.allocate(MiB);
    const ring = layoutSplitRing(1, 0);
    const dq = new DriverQueue(mem, ring);
    const q = new SplitQueue(mem, ring);
    for (let i = 0; i < 5; i++) {
      expect(dq.addChain([DATA], [4], 0, 1, i)).toBe(0);
      expect(dq.addChain([DATA], [4], 0, 1)).toBe(-1);
      dq.publish();
      const ch = q.pop()!;
      expect(ch.head).toBe(0);
      q.push(0, 4);
      q.publish();
      expect(dq.popUsed()).toBe(0);
      expect(dq.lastToken).toBe(i);
    }
  });
});

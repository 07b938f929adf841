// The fuzz streams of fuzz-core.mjs through a real VirtioBlkDevice (2 queues
// on 2 IOThreads, memory engine), each compared byte for byte with the
// in-process batch reference: guest memory (but the notification words,
// whose values depend on polling), the disk, and the outcome (OK, or
// NEEDS_RESET with the same error code). Canaries around guest memory too.

import { encodeSerial, featureBit, VirtioFeature } from "@vblk/core";
import { connectDriver, VirtioBlkDevice } from "@vblk/iothread";
import fc from "fast-check";
import {
  buildStream,
  CAP_SECTORS,
  GUARD,
  guardedMemory,
  mutate,
  runBatchReference,
  streamArb,
  tally,
} from "./fuzz-core.mjs";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function fillDisk(bytes, seed) {
  let x = (seed | 1) >>> 0;
  for (let i = 0; i < bytes.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    bytes[i] = x;
  }
}

/** Open the device once; run() checks one stream. */
export async function openDeviceFuzz() {
  const g = guardedMemory();
  const diskBuf = new SharedArrayBuffer(CAP_SECTORS * 512);
  const disk = new Uint8Array(diskBuf);
  const device = await VirtioBlkDevice.create({
    memory: g.mem,
    engine: "memory",
    disk: diskBuf,
    numQueues: 2,
    iothreads: 2,
    queueSize: 32,
    serial: "vblk-fuzz",
  });
  const fatal = [];
  device.on("needs-reset", (r) => {
    // A malformed ring reads "queue N: CODE: ..."; anything else is the device's own failure.
    if (/INTERNAL|IOThread|activation failed/.test(r)) fatal.push(r);
  });
  const outcomes = {};
  let runs = 0;

  async function run(s) {
    runs++;
    g.reset();
    fillDisk(disk, s.seed);
    const refuse =
      (s.indirectNeg ? 0n : featureBit(VirtioFeature.RING_INDIRECT_DESC)) |
      (s.eventIdx ? 0n : featureBit(VirtioFeature.RING_EVENT_IDX));
    const conn = await connectDriver(device, { queueSize: s.size, refuse });
    const qi = s.seed % 2;
    const ring = conn.queues[qi].ring;
    const stream = buildStream(g.mem, s, { ring });
    const n = stream.built.length;
    const k = n === 0 ? 0 : s.mutations.length === 0 ? n : s.k % n;
    const { availIdx } = mutate(g.mem, s, stream, k, s.mutations);
    // Reference on copies.
    const ref = g.copy();
    const refDisk = new SharedArrayBuffer(diskBuf.byteLength);
    new Uint8Array(refDisk).set(disk);
    new DataView(ref.bytes.buffer).setUint16(GUARD + ring.availAddr + 2, availIdx, true);
    const r = runBatchReference(ref.mem, refDisk, diskBuf.byteLength, ring, {
      eventIdx: s.eventIdx,
      indirect: s.indirectNeg,
      segMax: 254,
      maxDiscardSectors: device.config.options.maxDiscardSectors,
      maxWriteZeroesSectors: device.config.options.maxWriteZeroesSectors,
      serial: encodeSerial("vblk-fuzz"),
    });
    tally(outcomes, r.outcome);
    // The device.
    const u16 = new Uint16Array(g.buffer);
    Atomics.store(u16, (GUARD + ring.availAddr + 2) / 2, availIdx);
    device.notify(qi);
    const usedIdxAt = (GUARD + ring.usedAddr + 2) / 2;
    const t0 = Date.now();
    for (;;) {
      const done =
        Atomics.load(u16, usedIdxAt) === (r.usedIdx & 0xffff) &&
        (r.outcome === "OK" || device.needsResetReason !== undefined);
      if (done) break;
      if (Date.now() - t0 > 5000)
        throw new Error(
          `device did not reach the reference state in 5 s: used idx ${Atomics.load(u16, usedIdxAt)} vs ${r.usedIdx}, reference ${r.outcome}, device ${device.needsResetReason ?? "OK"}`,
        );
      await sleep(1);
    }
    if (r.outcome === "OK") {
      await sleep(2);
      if (device.needsResetReason !== undefined)
        throw new Error(`reference OK, device needs reset: ${device.needsResetReason}`);
    } else if (!device.needsResetReason.includes(r.outcome))
      throw new Error(`reference ${r.outcome}, device: ${device.needsResetReason}`);
    // Byte for byte, but the words whose values depend on polling/notification state.
    const skip = new Set();
    for (const q of conn.queues) {
      const u = GUARD + q.ring.usedAddr;
      for (const o of [0, 1, 4 + 8 * q.ring.size, 5 + 8 * q.ring.size]) skip.add(u + o);
    }
    const a = g.bytes;
    const b = ref.bytes;
    for (let i = 0; i < a.length; i++)
      if (a[i] !== b[i] && !skip.has(i))
        throw new Error(`guest memory differs from the reference at SAB offset 0x${i.toString(16)}`);
    if (Buffer.compare(disk, new Uint8Array(refDisk)) !== 0)
      throw new Error("disk differs from the reference");
    const bad = g.firstBadGuard();
    if (bad >= 0) throw new Error(`guard byte at SAB offset ${bad} changed`);
    if (fatal.length > 0) throw new Error(`device reported a non-guest error: ${fatal[0]}`);
  }

  return {
    device,
    run,
    outcomes,
    get runs() {
      return runs;
    },
    close: () => device.close(),
  };
}

/** fc.assert over the device; returns the outcome tally. */
export async function assertDeviceFuzz({ numRuns, seed }) {
  const f = await openDeviceFuzz();
  try {
    await fc.assert(
      fc.asyncProperty(streamArb, (s) => f.run(s)),
      { numRuns, seed, endOnFailure: true },
    );
    return { runs: f.runs, outcomes: f.outcomes };
  } finally {
    await f.close();
  }
}

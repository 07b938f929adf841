// The crash test's victim (run by crash-harness.mjs with child_process.fork):
// a VirtioBlkDevice on an image file (io_uring, else libaio, else threads;
// O_DIRECT) with 2 queues on 2 IOThreads, and a driver on this process's main
// thread writing 4 KiB blocks as fast as it can. Every written block holds
// (block, generation) in each word. Every FLUSH_EVERY acknowledged writes it
// submits a FLUSH; when the FLUSH completes OK it appends to the log, and
// fsyncs, the writes that were acknowledged before that FLUSH was submitted:
//   "F <seq> <block>:<gen> <block>:<gen> ... E\n"
// The parent SIGKILLs this process at a random moment and checks that every
// logged write is on the image.
import { fsyncSync, openSync, writeSync } from "node:fs";
import { allocGuestMemory, closeFd, nativeAvailable, probeEngines } from "@vblk/backend-libaio";
import { GuestMemory } from "@vblk/core";
import { connectDriver, openDriverQueue, VirtioBlkDevice } from "@vblk/iothread";

const [path, logPath, roundArg, blocksArg, engineArg = "auto"] = process.argv.slice(2);
const round = Number(roundArg);
const BLOCKS = Number(blocksArg);
const BS = 4096;
const DEPTH = 16;
const FLUSH_EVERY = 24;
process.on("disconnect", () => process.exit(0));

let engine = engineArg === "auto" ? "threads" : engineArg;
if (engineArg === "auto" && nativeAvailable()) {
  const p = probeEngines();
  engine = p.io_uring === true ? "io_uring" : p.libaio === true ? "libaio" : "threads";
}
const size = 16 << 20;
let memory;
if (nativeAvailable()) {
  const g = allocGuestMemory(size);
  closeFd(g.fd);
  memory = new GuestMemory([{ gpa: 0, size, buffer: g.buffer }]);
} else memory = GuestMemory.allocate(size);
const device = await VirtioBlkDevice.create({
  memory,
  engine,
  path,
  cache: "none",
  numQueues: 2,
  iothreads: 2,
  queueSize: 64,
});
const conn = await connectDriver(device);
const qs = conn.queues.map((desc, i) => ({
  h: openDriverQueue(desc, memory),
  data: conn.end + i * DEPTH * BS,
  free: [...Array(DEPTH).keys()],
}));
for (const q of qs) q.h.queue.disableInterrupts();
const log = openSync(logPath, "a");
process.send({ type: "ready", engine: device.engineName });

function fill(view, block, gen) {
  const w = new Uint32Array(view.buffer, view.byteOffset, BS / 4);
  w[0] = block;
  w[1] = gen;
  for (let i = 2; i < w.length; i++) w[i] = (block * 2654435761 + gen * 40503 + i * 97) >>> 0;
}

let x = (round * 7919 + 17) >>> 0;
const rnd = (n) => {
  x ^= x << 13;
  x ^= x >>> 17;
  x ^= x << 5;
  x >>>= 0;
  return x % n;
};
let gen = round * 10_000_000 + 1;
const busy = new Uint8Array(BLOCKS);
let acked = []; // "block:gen" acknowledged, not yet covered by a submitted FLUSH
let sinceFlush = 0;
let flushing = null; // the writes the outstanding FLUSH covers
let flushSeq = 0;

for (;;) {
  for (let qi = 0; qi < qs.length; qi++) {
    const q = qs[qi];
    const h = q.h;
    let added = false;
    if (qi === 0 && flushing === null && sinceFlush >= FLUSH_EVERY && h.queue.free >= 2) {
      flushing = acked;
      acked = [];
      sinceFlush = 0;
      h.blk.flush({ flush: true });
      added = true;
    }
    while (q.free.length > 0 && h.queue.free >= 3) {
      // queue qi owns blocks with block % 2 === qi
      const block = rnd(BLOCKS / 2) * 2 + qi;
      if (busy[block]) break;
      const slot = q.free.pop();
      const gpa = q.data + slot * BS;
      const g = gen++;
      fill(memory.slice(gpa, BS), block, g);
      busy[block] = 1;
      h.blk.write(block * 8, gpa, BS, { slot, block, g });
      added = true;
    }
    if (added) h.submit();
    h.waitUsed(5000, 1);
    for (;;) {
      const head = h.blk.popCompletion();
      if (head < 0) break;
      const t = h.blk.lastToken;
      if (h.blk.lastStatus !== 0) throw new Error(`request failed with status ${h.blk.lastStatus}`);
      if (t.flush) {
        const line = `F ${++flushSeq} ${flushing.join(" ")} E\n`;
        writeSync(log, line);
        fsyncSync(log);
        flushing = null;
      } else {
        busy[t.block] = 0;
        q.free.push(t.slot);
        acked.push(`${t.block}:${t.g}`);
        sinceFlush++;
      }
    }
  }
}
// (never reached: the parent kills this process)

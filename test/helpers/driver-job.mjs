// A guest vCPU in a worker thread: drives one queue of a VirtioBlkDevice
// through @vblk/iothread's DriverHandle. Plain .mjs: workers cannot load .ts.
//
// workerData: { desc, dataGpa, depth, count, mode: "read" | "write" | "verify",
//               firstSector, sectors (span), bs, seed, pollNs }
// mode "write": writes `count` blocks, block k at sector firstSector + (k % span)*bs/512,
//   filled with a pattern of (queue, sector, generation); "verify": reads them back and checks.
import { parentPort, workerData } from "node:worker_threads";
import { openDriverQueue } from "@vblk/iothread";

const { desc, dataGpa, depth, count, mode, firstSector, span, bs, pollNs = 20000, tag = 0 } = workerData;
const h = openDriverQueue(desc);
const mem = h.mem;
h.queue.disableInterrupts();
const freeSlots = [];
for (let i = depth - 1; i >= 0; i--) freeSlots.push(i);
const secPerBlock = bs / 512;

function fill(view, sector) {
  const w = new Uint32Array(view.buffer, view.byteOffset, view.length / 4);
  for (let i = 0; i < w.length; i++) w[i] = (sector * 2654435761 + i * 40503 + tag) >>> 0;
}
function check(view, sector) {
  const w = new Uint32Array(view.buffer, view.byteOffset, view.length / 4);
  for (let i = 0; i < w.length; i++) if (w[i] !== (sector * 2654435761 + i * 40503 + tag) >>> 0) return false;
  return true;
}

let submitted = 0;
let completed = 0;
let errors = 0;
let badData = 0;
let badLen = 0;
const seenHeads = new Set();
const t0 = performance.now();
while (completed < count) {
  while (submitted < count && freeSlots.length > 0) {
    const slot = freeSlots.pop();
    const k = submitted;
    const sector = firstSector + ((workerData.scatter ? k * 7919 : k) % span) * secPerBlock;
    const gpa = dataGpa + slot * bs;
    const view = mem.slice(gpa, bs);
    let head;
    if (mode === "write") {
      fill(view, sector);
      head = h.blk.write(sector, gpa, bs, { slot, sector, k });
    } else {
      view.fill(0);
      head = h.blk.read(sector, gpa, bs, { slot, sector, k });
    }
    if (head < 0) {
      freeSlots.push(slot);
      break;
    }
    if (seenHeads.has(head)) throw new Error(`head ${head} handed out twice`);
    seenHeads.add(head);
    submitted++;
  }
  h.submit();
  if (!h.waitUsed(pollNs, 10_000))
    throw new Error(`queue ${desc.queue}: no completion within 10 s (${completed}/${count})`);
  for (;;) {
    const head = h.blk.popCompletion();
    if (head < 0) break;
    if (!seenHeads.delete(head)) throw new Error(`completion for head ${head} that is not outstanding`);
    const t = h.blk.lastToken;
    completed++;
    if (h.blk.lastStatus !== 0) errors++;
    else {
      const expectLen = mode === "write" ? 1 : bs + 1;
      if (h.blk.lastLen !== expectLen) badLen++;
      if (mode === "verify" && !check(mem.slice(dataGpa + t.slot * bs, bs), t.sector)) badData++;
    }
    freeSlots.push(t.slot);
  }
}
const secs = (performance.now() - t0) / 1000;
parentPort.postMessage({
  queue: desc.queue,
  completed,
  errors,
  badData,
  badLen,
  iops: completed / secs,
  kicks: h.kicks,
  sleeps: h.sleeps,
});

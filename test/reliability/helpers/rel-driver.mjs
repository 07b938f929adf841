// A guest vCPU for the reliability tests, in a worker thread: mixed random
// I/O on one queue, with verification, that runs until told to stop. Plain
// .mjs (workers cannot load .ts).
//
// workerData: { desc, dataGpa, depth, seed, firstBlock, blocks, maxBlocks,
//               writePct, flushEvery, ctl, slot, pollNs }
//   the job owns 4 KiB blocks [firstBlock, firstBlock + blocks) of the disk;
//   ctl: Int32Array SAB; ctl[0] != 0 -> stop; ctl[1 + slot] = completions so far
// Each written block holds (block, generation) in every word; the job keeps
// the generation it last wrote per block and checks every block it reads
// (blocks never written in this job are not checked). No two requests in
// flight touch the same block. A completion for a head that is not
// outstanding counts as `bogus` (a request completed twice).
import { parentPort, workerData } from "node:worker_threads";
import { openDriverQueue } from "@vblk/iothread";

const {
  desc,
  dataGpa,
  depth,
  seed = 1,
  firstBlock,
  blocks,
  maxBlocks = 16,
  writePct = 50,
  flushEvery = 64,
  slot = 0,
  pollNs = 20000,
} = workerData;
const ctl = new Int32Array(workerData.ctl);
const BS = 4096;
const SLOT_BYTES = maxBlocks * BS;
const h = openDriverQueue(desc);
const mem = h.mem;
h.queue.disableInterrupts();

let x = seed >>> 0 || 1;
function rnd(n) {
  x ^= x << 13;
  x ^= x >>> 17;
  x ^= x << 5;
  x >>>= 0;
  return x % n;
}
function fill(view, block, gen) {
  const w = new Uint32Array(view.buffer, view.byteOffset, BS / 4);
  const a = (block * 2654435761) >>> 0;
  w[0] = block;
  w[1] = gen;
  for (let i = 2; i < w.length; i++) w[i] = (a + gen * 40503 + i * 97) >>> 0;
}
function check(view, block, gen) {
  const w = new Uint32Array(view.buffer, view.byteOffset, BS / 4);
  if (w[0] !== block || w[1] !== gen) return false;
  const a = (block * 2654435761) >>> 0;
  for (let i = 2; i < w.length; i++) if (w[i] !== (a + gen * 40503 + i * 97) >>> 0) return false;
  return true;
}

const gens = new Uint32Array(blocks);
const busy = new Uint8Array(blocks);
const freeSlots = [];
for (let i = depth - 1; i >= 0; i--) freeSlots.push(i);
const outstanding = new Map();
const st = {
  queue: desc.queue,
  completed: 0,
  reads: 0,
  writes: 0,
  flushes: 0,
  errors: 0,
  verifyErrors: 0,
  blocksVerified: 0,
  bogus: 0,
  stalls: 0,
  firstError: "",
};
let genCounter = 1;
let sinceFlush = 0;
let lastProgress = performance.now();

function submitOne() {
  if (freeSlots.length === 0) return false;
  const s = freeSlots[freeSlots.length - 1];
  const gpa = dataGpa + s * SLOT_BYTES;
  let head;
  let tok;
  if (flushEvery > 0 && sinceFlush >= flushEvery) {
    tok = { s, kind: "f" };
    head = h.blk.flush(tok);
    if (head < 0) return false;
    sinceFlush = 0;
  } else {
    const n = 1 + rnd(maxBlocks);
    const b0 = rnd(Math.max(1, blocks - n + 1));
    for (let i = 0; i < n; i++) if (busy[b0 + i]) return false;
    const write = rnd(100) < writePct;
    tok = { s, kind: write ? "w" : "r", b0, n, gens: write ? new Uint32Array(n) : null };
    if (write) {
      for (let i = 0; i < n; i++) {
        const g = genCounter++;
        tok.gens[i] = g;
        fill(mem.slice(gpa + i * BS, BS), firstBlock + b0 + i, g);
      }
      head = h.blk.write((firstBlock + b0) * 8, gpa, n * BS, tok);
    } else {
      mem.slice(gpa, n * BS).fill(0);
      head = h.blk.read((firstBlock + b0) * 8, gpa, n * BS, tok);
    }
    if (head < 0) return false;
    for (let i = 0; i < n; i++) busy[b0 + i] = 1;
    sinceFlush++;
  }
  freeSlots.pop();
  if (outstanding.has(head)) throw new Error(`head ${head} handed out twice`);
  outstanding.set(head, tok);
  return true;
}

function complete(head) {
  const tok = outstanding.get(head);
  if (tok === undefined || tok !== h.blk.lastToken) {
    st.bogus++;
    if (!st.firstError) st.firstError = `completion for head ${head} that is not outstanding`;
    return;
  }
  outstanding.delete(head);
  st.completed++;
  const ok = h.blk.lastStatus === 0;
  if (!ok) {
    st.errors++;
    if (!st.firstError) st.firstError = `status ${h.blk.lastStatus} for a ${tok.kind}`;
  }
  const gpa = dataGpa + tok.s * SLOT_BYTES;
  if (tok.kind === "f") st.flushes++;
  else {
    for (let i = 0; i < tok.n; i++) busy[tok.b0 + i] = 0;
    if (tok.kind === "w") {
      st.writes++;
      // A failed write leaves the blocks unknown.
      for (let i = 0; i < tok.n; i++) gens[tok.b0 + i] = ok ? tok.gens[i] : 0;
    } else {
      st.reads++;
      if (ok) {
        for (let i = 0; i < tok.n; i++) {
          const g = gens[tok.b0 + i];
          if (g === 0) continue;
          st.blocksVerified++;
          if (!check(mem.slice(gpa + i * BS, BS), firstBlock + tok.b0 + i, g)) {
            st.verifyErrors++;
            if (!st.firstError) st.firstError = `block ${firstBlock + tok.b0 + i}: expected generation ${g}`;
          }
        }
      }
    }
  }
  freeSlots.push(tok.s);
}

let stalled = false;
while (Atomics.load(ctl, 0) === 0) {
  let any = false;
  if (!stalled) {
    while (submitOne()) any = true;
    if (any) h.submit();
  }
  if (!h.waitUsed(pollNs, 50)) {
    if (performance.now() - lastProgress > 1000 && outstanding.size > 0 && !stalled) {
      stalled = true;
      st.stalls++;
    }
    continue;
  }
  for (;;) {
    let head;
    try {
      head = h.blk.popCompletion();
    } catch (e) {
      st.bogus++;
      if (!st.firstError) st.firstError = e.message;
      stalled = true;
      break;
    }
    if (head < 0) break;
    complete(head);
    lastProgress = performance.now();
    stalled = false;
  }
  Atomics.store(ctl, 1 + slot, st.completed);
}
st.outstanding = outstanding.size;
parentPort.postMessage(st);

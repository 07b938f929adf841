#!/usr/bin/env node
import { parseArgs } from "node:util";
// How long a cache line takes to move between two threads on this machine
// (docs/BENCHMARKS.md, "Null engine"): the cost the split ring pays for every
// line the driver writes and the device reads, or back.
//
//   node scripts/line-pingpong.mjs [--cpus 0,1] [--rounds 2000000] [--repeat 3]
//
// The main thread stores i into word 0 and spins until the worker has copied
// it into word 16 (another cache line); the worker spins on word 0. One round
// trip = two line transfers. With --cpus A,B (needs the native addon) the two
// threads are pinned to CPUs A and B; without it the scheduler places them.
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";

async function pinner() {
  try {
    const m = await import("../packages/backend-libaio/dist/index.js");
    return m.nativeAvailable() ? m.setThreadAffinity : undefined;
  } catch {
    return undefined;
  }
}

if (isMainThread) {
  const { values } = parseArgs({
    options: {
      cpus: { type: "string" },
      rounds: { type: "string", default: "2000000" },
      repeat: { type: "string", default: "3" },
    },
  });
  const bad = (msg) => {
    console.error(`line-pingpong: ${msg}`);
    process.exit(2);
  };
  const rounds = Number(values.rounds);
  const repeat = Number(values.repeat);
  if (!Number.isInteger(rounds) || rounds < 1000) bad("--rounds: an integer >= 1000");
  if (!Number.isInteger(repeat) || repeat < 1) bad("--repeat: an integer >= 1");
  let cpus;
  if (values.cpus !== undefined) {
    cpus = values.cpus.split(",").map(Number);
    if (cpus.length !== 2 || cpus.some((c) => !Number.isInteger(c) || c < 0))
      bad(`--cpus: two CPU numbers like 0,1 (got ${values.cpus})`);
  }
  const pin = cpus ? await pinner() : undefined;
  if (cpus && !pin) console.log("--cpus ignored: the native addon is not available");
  if (pin) pin([cpus[0]]);
  const a = new Int32Array(new SharedArrayBuffer(256));
  const w = new Worker(new URL(import.meta.url), { workerData: { sab: a.buffer, cpu: pin ? cpus[1] : -1 } });
  await new Promise((r) => w.once("message", r));
  let seq = 0;
  for (let r = 0; r < repeat; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < rounds; i++) {
      seq++;
      Atomics.store(a, 0, seq);
      while (Atomics.load(a, 16) !== seq);
    }
    const ns = Number(process.hrtime.bigint() - t0) / rounds;
    console.log(
      `round trip ${ns.toFixed(1)} ns, one line transfer ~${(ns / 2).toFixed(1)} ns (${rounds} rounds${pin ? `, CPUs ${cpus[0]} and ${cpus[1]}` : ""})`,
    );
  }
  Atomics.store(a, 0, -1);
  await new Promise((r) => w.once("exit", r));
} else {
  const { sab, cpu } = workerData;
  if (cpu >= 0) (await pinner())?.([cpu]);
  const a = new Int32Array(sab);
  parentPort.postMessage("ready");
  let last = 0;
  for (;;) {
    const v = Atomics.load(a, 0);
    if (v === -1) break;
    if (v !== last) {
      last = v;
      Atomics.store(a, 16, v);
    }
  }
}

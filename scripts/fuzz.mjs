#!/usr/bin/env node
// Long fuzz runs (docs/RELIABILITY.md). Usage:
//   npm run fuzz -- --runs N [--geometry N] [--device N] [--seed S]
// --runs: mutated request streams in process (SplitQueue + parseBlkRequest +
// MemoryEngine); --geometry: hostile queue sizes/ring addresses (default
// runs/2); --device: streams through a real VirtioBlkDevice with IOThreads,
// compared byte for byte with the in-process reference (default runs/20).
// Prints what each part ran and found; exits 1 on a property violation, with
// fast-check's seed, path and shrunk counterexample.
import { parseArgs } from "node:util";
import fc from "fast-check";
import {
  geometryArb,
  guardedDisk,
  guardedMemory,
  runGeometryCase,
  runStepCase,
  streamArb,
  tally,
} from "../test/reliability/helpers/fuzz-core.mjs";
import { assertDeviceFuzz } from "../test/reliability/helpers/fuzz-device.mjs";

const argv = process.argv.slice(2).filter((a) => a !== "--");
const { values } = parseArgs({
  args: argv,
  options: {
    runs: { type: "string", default: "10000" },
    geometry: { type: "string" },
    device: { type: "string" },
    seed: { type: "string" },
  },
});
const runs = Number(values.runs);
const geometry = values.geometry !== undefined ? Number(values.geometry) : Math.ceil(runs / 2);
const deviceRuns = values.device !== undefined ? Number(values.device) : Math.ceil(runs / 20);
const seed = values.seed !== undefined ? Number(values.seed) : Date.now() % 2 ** 31;
for (const [k, v] of Object.entries({ runs, geometry, device: deviceRuns }))
  if (!Number.isInteger(v) || v < 0) throw new Error(`--${k} must be an integer >= 0`);

const fmt = (o) =>
  Object.entries(o)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${v}`)
    .join(", ");
let failed = false;
function part(name, fn) {
  const t0 = performance.now();
  try {
    const info = fn();
    console.log(`${name}: ${((performance.now() - t0) / 1000).toFixed(1)} s, ${info}`);
  } catch (e) {
    failed = true;
    console.log(`${name}: FAILED after ${((performance.now() - t0) / 1000).toFixed(1)} s\n${e.message}`);
  }
}

console.log(
  `vblk fuzz: seed ${seed}, ${runs} streams, ${geometry} geometry cases, ${deviceRuns} device streams`,
);
part("streams (in process)", () => {
  const g = guardedMemory();
  const d = guardedDisk();
  const out = {};
  let verified = 0;
  let requests = 0;
  let n = 0;
  fc.assert(
    fc.property(streamArb, (s) => {
      const r = runStepCase(g, d, s);
      tally(out, r.outcome);
      verified += r.verified;
      requests += r.n;
      if (++n % 20000 === 0) console.log(`  ${n} streams...`);
    }),
    { numRuns: runs, seed },
  );
  return `${n} runs, ${requests} requests built, ${verified} legal requests verified before the mutation; outcomes: ${fmt(out)}`;
});
part("geometry (in process)", () => {
  const g = guardedMemory();
  const d = guardedDisk();
  const out = {};
  fc.assert(
    fc.property(geometryArb, (c) => {
      tally(out, runGeometryCase(g, d, c).outcome);
    }),
    { numRuns: geometry, seed: seed + 1 },
  );
  return `${geometry} runs; outcomes: ${fmt(out)}`;
});
if (deviceRuns > 0) {
  const t0 = performance.now();
  try {
    const r = await assertDeviceFuzz({ numRuns: deviceRuns, seed: seed + 2 });
    console.log(
      `device (2 IOThreads): ${((performance.now() - t0) / 1000).toFixed(1)} s, ${r.runs} runs; outcomes: ${fmt(r.outcomes)}`,
    );
  } catch (e) {
    failed = true;
    console.log(`device (2 IOThreads): FAILED\n${e.message}`);
  }
}
console.log(failed ? "FAILED" : "no property violation");
process.exit(failed ? 1 : 0);

#!/usr/bin/env node
// Soak: mixed random I/O with verification over 4 queues / 2 IOThreads,
// sampling resident memory (docs/RELIABILITY.md). Usage:
//   npm run soak -- --minutes N [--engine auto|io_uring|libaio|threads|memory] [--sample-s 5] [--disk-mib 256]
// Prints one line per sample, then a JSON summary (RSS start/end/max, verify
// errors); exits 1 on any verify error, I/O error, double completion or
// NEEDS_RESET.
import { parseArgs } from "node:util";
import { runSoak } from "../test/reliability/helpers/soak-core.mjs";

const { values } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== "--"),
  options: {
    minutes: { type: "string", default: "10" },
    engine: { type: "string", default: "auto" },
    "sample-s": { type: "string", default: "5" },
    "disk-mib": { type: "string", default: "256" },
  },
});
const minutes = Number(values.minutes);
if (!(minutes > 0)) throw new Error("--minutes must be > 0");
console.log(`vblk soak: ${minutes} min, engine ${values.engine}, 4 queues / 2 IOThreads`);
const r = await runSoak({
  seconds: minutes * 60,
  engine: values.engine,
  sampleEveryMs: Number(values["sample-s"]) * 1000,
  diskMiB: Number(values["disk-mib"]),
  onSample: (s) =>
    console.log(
      `t=${String(s.t).padStart(5)} s  rss ${s.rssMiB.toFixed(1)} MiB  ${s.iops} IOPS  ${s.completed} done${s.needsReset ? `  NEEDS_RESET ${s.needsReset}` : ""}`,
    ),
});
const { samples, ...summary } = r;
console.log(JSON.stringify({ ...summary, samples: samples.length }, null, 1));
const bad = r.verifyErrors + r.errors + r.bogus > 0 || r.needsReset !== null;
console.log(bad ? "FAILED" : "OK: zero verify errors");
process.exit(bad ? 1 : 0);

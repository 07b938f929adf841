#!/usr/bin/env node
// Resident memory of vblk-bench runs (docs/BENCHMARKS.md, "Memory"):
//
//   node scripts/mem-bench.mjs per-iothread [--iothreads 1,2,4,8] [--seconds 5] [--one-job] [-- BENCH OPTIONS]
//     one short run per IOThread count (num-queues = IOThreads, numjobs = the
//     same or 1 with --one-job); prints the process RSS at the end of each and
//     the slope per extra IOThread.
//   node scripts/mem-bench.mjs soak [--seconds 300] [--sample-s 10] [-- BENCH OPTIONS]
//     one long run; RSS of the bench process every sample (from /proc), then
//     first / last / max and the growth after the first minute.
//
// RSS is read from /proc/PID/status (VmRSS) of the bench process, so it is
// the whole process: main thread, jobs, IOThreads, guest RAM actually touched.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

const dashes = process.argv.indexOf("--");
const extra = dashes >= 0 ? process.argv.slice(dashes + 1) : [];
const own = dashes >= 0 ? process.argv.slice(2, dashes) : process.argv.slice(2);
const { values, positionals } = parseArgs({
  args: own,
  allowPositionals: true,
  options: {
    iothreads: { type: "string", default: "1,2,4,8" },
    seconds: { type: "string" },
    "sample-s": { type: "string", default: "10" },
    "one-job": { type: "boolean", default: false },
  },
});
const mode = positionals[0];
if (mode !== "per-iothread" && mode !== "soak") {
  console.error("usage: mem-bench.mjs per-iothread|soak [options] [-- bench options]");
  process.exit(2);
}
const cli = new URL("../bench/dist/cli.js", import.meta.url).pathname;

function rssMiB(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Run the bench; sample its RSS every sampleMs; resolve with samples and its JSON result. */
function runBench(args, sampleMs, onSample) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, ...args, "--output-format=json"], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    const t0 = Date.now();
    const samples = [];
    const timer = setInterval(() => {
      const r = rssMiB(child.pid);
      if (r === undefined) return;
      const s = { t: Math.round((Date.now() - t0) / 1000), rssMiB: r };
      samples.push(s);
      onSample?.(s);
    }, sampleMs);
    child.on("error", reject);
    child.on("exit", (code) => {
      clearInterval(timer);
      if (code !== 0) return reject(new Error(`vblk-bench exited with ${code}`));
      resolve({ samples, result: JSON.parse(out) });
    });
  });
}

const base = ["--rw=randread", "--bs=4k", "--iodepth=32", "--time_based", ...extra];
if (mode === "per-iothread") {
  const secs = Number(values.seconds ?? 5);
  const rows = [];
  for (const n of values.iothreads.split(",").map(Number)) {
    const jobs = values["one-job"] ? 1 : n;
    const { samples, result } = await runBench(
      [...base, `--numjobs=${jobs}`, `--num-queues=${n}`, `--iothreads=${n}`, `--runtime=${secs}`],
      250,
    );
    const last = samples.slice(-4);
    const rss = Math.max(...last.map((s) => s.rssMiB));
    const iops = Math.round(result.jobs[0].read.iops);
    rows.push({ iothreads: n, rssMiB: rss, iops, engine: result.vblk.engine });
    console.log(
      `${n} IOThread(s), ${jobs} job(s): RSS ${rss.toFixed(1)} MiB at the end, ${iops} IOPS (${result.vblk.engine})`,
    );
  }
  // least-squares slope of RSS over the IOThread count (each also adds a job thread)
  const xs = rows.map((r) => r.iothreads);
  const ys = rows.map((r) => r.rssMiB);
  const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
  const my = ys.reduce((a, b) => a + b, 0) / ys.length;
  const slope =
    xs.reduce((a, x, i) => a + (x - mx) * (ys[i] - my), 0) / xs.reduce((a, x) => a + (x - mx) ** 2, 0);
  console.log(
    `slope: ${slope.toFixed(1)} MiB per ${values["one-job"] ? "IOThread (one job throughout)" : "(IOThread + its job thread)"}; intercept ${(my - slope * mx).toFixed(1)} MiB`,
  );
} else {
  const secs = Number(values.seconds ?? 300);
  const { samples, result } = await runBench(
    [...base, "--numjobs=2", "--iothreads=2", `--runtime=${secs}`],
    Number(values["sample-s"]) * 1000,
    (s) => console.log(`t=${String(s.t).padStart(4)} s  rss ${s.rssMiB.toFixed(1)} MiB`),
  );
  const after1 = samples.filter((s) => s.t >= 60);
  const max = Math.max(...samples.map((s) => s.rssMiB));
  const growth = after1.length > 1 ? after1[after1.length - 1].rssMiB - after1[0].rssMiB : 0;
  console.log(
    JSON.stringify({
      seconds: secs,
      engine: result.vblk.engine,
      iops: Math.round(result.jobs[0].read.iops),
      rssFirstMiB: samples[0]?.rssMiB,
      rssAt60sMiB: after1[0]?.rssMiB,
      rssLastMiB: samples[samples.length - 1]?.rssMiB,
      rssMaxMiB: max,
      growthAfter60sMiB: Number(growth.toFixed(1)),
    }),
  );
}

#!/usr/bin/env node
// Guest-side throughput of the virtio-blk backends: fio 4k random reads (O_DIRECT) in a
// real Linux guest, for each backend x iodepth x numjobs, backends alternated round-robin
// for R rounds (one guest boot per backend per round runs every configuration), medians
// printed as a table with ratios to the first backend.
//
//   node test/guest/perf.mjs [--rounds 3] [--runtime 5] [--ramp 1] [--size-mib 256]
//        [--queues 2] [--backends builtin,builtin+iothread,qsd] [--configs 1x1,64x1,1x2,64x2]
//        [--json FILE] [-- VHOST_USER_SERVER_COMMAND ...]
//
// With a command after `--`, a "vhost-user" backend running it is added; {socket}
// {image} {numQueues} {queueSize} are replaced, e.g.
//   node test/guest/perf.mjs -- node bench/dist/cli.js serve --socket {socket} --image {image} --num-queues {numQueues}
// Backend "vblk" is `vblk serve` (packages/vhost-user/dist/cli.js; build first) with
// --num-queues/--queue-size from the run and --vblk-args "..." appended, e.g.
//   node test/guest/perf.mjs --backends builtin,builtin+iothread,qsd,vblk --vblk-args "--iothreads 2"
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  createImage,
  ensureAssets,
  fioIops,
  imageDir,
  resolveAccel,
  runGuest,
  sectionJson,
} from "./guest.mjs";

function parseArgs(argv) {
  const o = {
    rounds: 3,
    runtime: 5,
    ramp: 1,
    sizeMiB: 256,
    queues: 2,
    backends: ["builtin", "builtin+iothread", "qsd"],
    configs: ["1x1", "64x1", "1x2", "64x2"],
    json: null,
    engine: "auto",
    server: null,
    vblkArgs: [],
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => argv[++i];
    if (a === "--") {
      o.server = argv.slice(i + 1);
      break;
    } else if (a === "--rounds") o.rounds = Number(next());
    else if (a === "--runtime") o.runtime = Number(next());
    else if (a === "--ramp") o.ramp = Number(next());
    else if (a === "--size-mib") o.sizeMiB = Number(next());
    else if (a === "--queues") o.queues = Number(next());
    else if (a === "--backends") o.backends = next().split(",");
    else if (a === "--configs") o.configs = next().split(",");
    else if (a === "--engine") o.engine = next();
    else if (a === "--vblk-args") o.vblkArgs = next().split(/\s+/).filter(Boolean);
    else if (a === "--json") o.json = next();
    else {
      console.error(`unknown option ${a}; see the header of ${import.meta.url}`);
      process.exit(2);
    }
  }
  if (o.server?.length && !o.backends.includes("vhost-user")) o.backends.push("vhost-user");
  return o;
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function backendOptions(name, o) {
  if (name === "builtin") return { backend: "builtin" };
  if (name === "builtin+iothread") return { backend: "builtin", iothread: true };
  if (name === "qsd") return { backend: "qsd" };
  if (name === "vblk") {
    const cli = fileURLToPath(new URL("../../packages/vhost-user/dist/cli.js", import.meta.url));
    if (!existsSync(cli)) throw new Error(`${cli} not built (npx tsc -b tsconfig.build.json)`);
    const command = [process.execPath, cli, "serve", "--socket", "{socket}", "--image", "{image}"];
    command.push("--num-queues", "{numQueues}", "--queue-size", "{queueSize}", ...o.vblkArgs);
    return { backend: "vhost-user", vhostUser: { command } };
  }
  if (name === "vhost-user") {
    if (!o.server?.length) throw new Error("backend vhost-user needs `-- COMMAND ...`");
    return { backend: "vhost-user", vhostUser: { command: o.server } };
  }
  throw new Error(`unknown backend ${name}`);
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const assets = await ensureAssets({ quiet: true });
  const accel = await resolveAccel(assets, {});
  const dir = imageDir();
  const image = createImage(join(dir, "perf.img"), o.sizeMiB * 1024 * 1024, "random");
  console.log(
    `guest perf: accel ${accel.accel} (${accel.reason}); ${o.rounds} rounds x [${o.backends.join(", ")}]; ` +
      `fio randread 4k direct, ${o.runtime} s + ${o.ramp} s ramp per config; num-queues ${o.queues}; ` +
      `image ${o.sizeMiB} MiB of random data; guest kernel ${assets.kernelRelease}; ${assets.qemuVersion}`,
  );
  /** @type {Record<string, Record<string, {iops: number[], latUs: number[]}>>} */
  const data = {};
  let engine = null;
  const failures = [];
  for (let round = 0; round < o.rounds; round++) {
    // rotate the starting backend each round so no backend always runs first
    const order = o.backends.map((_, i) => o.backends[(i + round) % o.backends.length]);
    for (const b of order) {
      const r = await runGuest({
        ...backendOptions(b, o),
        image,
        workload: "fio-perf",
        numQueues: o.queues,
        assets,
        timeoutMs: 120_000 + o.configs.length * (o.runtime + o.ramp + 10) * 1000,
        env: { CONFIGS: o.configs.join(" "), RUNTIME: o.runtime, RAMP: o.ramp, FIO_ENGINE: o.engine },
      });
      if (!r.ok) {
        failures.push(`${b} round ${round + 1}: ${r.error ?? `exit ${r.exitCode}`} (${r.logDir})`);
        console.log(`round ${round + 1} ${b}: FAILED ${r.error ?? `exit ${r.exitCode}`}; logs ${r.logDir}`);
        continue;
      }
      engine = sectionJson(r, "params").engine;
      const line = [];
      for (const c of o.configs) {
        const fio = r.sections[`fio-${c}`]?.json;
        if (!fio) continue;
        const iops = fioIops(fio);
        const latUs = (fio.jobs?.[0]?.read?.clat_ns?.mean ?? Number.NaN) / 1000;
        data[b] ??= {};
        data[b][c] ??= { iops: [], latUs: [], irqPerIo: [] };
        data[b][c].iops.push(iops);
        data[b][c].latUs.push(latUs);
        // interrupts the guest took per request (the ramp's requests are not in iops: estimate
        // the requests of the whole fio run as iops x (runtime + ramp))
        const irqs = r.sections[`irq-${c}`]?.json?.irqs;
        if (typeof irqs === "number" && iops > 0)
          data[b][c].irqPerIo.push(irqs / (iops * (o.runtime + o.ramp)));
        line.push(`${c}: ${iops.toFixed(0)}`);
      }
      console.log(
        `round ${round + 1} ${b.padEnd(16)} ${line.join("  ")}  (${(r.durationMs / 1000).toFixed(1)} s)`,
      );
    }
  }
  rmSync(dir, { recursive: true, force: true });

  const base = o.backends[0];
  console.log(
    `\nmedian guest IOPS over ${o.rounds} rounds (fio ${engine}, QDxJOBS; ratio vs ${base}; clat mean in us)` +
      `${accel.accel === "tcg" ? "\nNOTE: the guest was EMULATED (TCG): its CPU is the bottleneck; compare ratios, not absolute IOPS" : ""}`,
  );
  const header = [
    "config",
    ...o.backends.map((b) => `${b} IOPS`),
    ...o.backends.slice(1).map((b) => `${b}/${base}`),
  ];
  const rows = [];
  for (const c of o.configs) {
    const med = o.backends.map((b) => median(data[b]?.[c]?.iops ?? []));
    const lat = o.backends.map((b) => median(data[b]?.[c]?.latUs ?? []));
    rows.push([
      c,
      ...med.map(
        (m, i) =>
          `${Number.isNaN(m) ? "-" : m.toFixed(0)} (${Number.isNaN(lat[i]) ? "-" : lat[i].toFixed(0)} us)`,
      ),
      ...med.slice(1).map((m) => (Number.isNaN(m) || !med[0] ? "-" : (m / med[0]).toFixed(2))),
    ]);
  }
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const fmt = (r) => `| ${r.map((v, i) => String(v).padEnd(widths[i])).join(" | ")} |`;
  console.log(fmt(header));
  console.log(`| ${widths.map((w) => "-".repeat(w)).join(" | ")} |`);
  for (const r of rows) console.log(fmt(r));
  // Guest interrupts per request: under TCG every interrupt runs the guest's handler emulated.
  const irqRows = o.configs.map((c) => [
    c,
    ...o.backends.map((b) => {
      const m = median(data[b]?.[c]?.irqPerIo ?? []);
      return Number.isNaN(m) ? "-" : m.toFixed(2);
    }),
  ]);
  const irqHeader = ["config", ...o.backends.map((b) => `${b} irq/IO`)];
  const iw = irqHeader.map((h, i) => Math.max(h.length, ...irqRows.map((r) => String(r[i]).length)));
  const ifmt = (r) => `| ${r.map((v, i) => String(v).padEnd(iw[i])).join(" | ")} |`;
  console.log(
    `\nguest interrupts per request (median; request-queue interrupts / (IOPS x (runtime + ramp)))`,
  );
  console.log(ifmt(irqHeader));
  console.log(`| ${iw.map((w) => "-".repeat(w)).join(" | ")} |`);
  for (const r of irqRows) console.log(ifmt(r));
  if (failures.length) console.log(`\n${failures.length} failed runs:\n${failures.join("\n")}`);
  if (o.json) {
    writeFileSync(o.json, JSON.stringify({ accel, engine, options: o, data }, null, 2));
    console.log(`raw numbers: ${o.json}`);
  }
  return failures.length ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(e instanceof Error ? e.stack : e);
    process.exit(2);
  },
);

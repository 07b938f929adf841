/**
 * Reports: fio's normal text, fio-shaped JSON, and a reduced terse line.
 *
 * JSON: one aggregated entry in "jobs" (fio's --group_reporting shape, so
 * `jobs[0].read.iops` is the run's IOPS), each job under `vblk.per_job`,
 * and the device's mapping and counters under `vblk`.
 *
 * Terse: fio's terse version 3 field order, cut after the CPU fields
 * (fio continues with IO depth / latency distributions and disk util):
 *   3;version;jobname;groupid;error;
 *   READ: kb;bw KiB/s;iops;runtime ms; slat min;max;mean;dev; clat min;max;mean;dev;
 *         20 x "pct%=usec"; lat min;max;mean;dev; bw min;max;agg%;mean;dev
 *   WRITE: (same 41 fields)  TRIM: (same, zeros)
 *   usr%;sys%;ctx;majf;minf
 * Latencies in terse are in microseconds, as in fio.
 */
import type { BenchResult } from "./runner.js";
import { type DirStats, dirStats, type GroupStats, type LatStats } from "./stats.js";
import { formatBw, formatBytesPair, formatSize, num2str, percentileKey } from "./units.js";

function fixed(v: number, d = 2): string {
  return v.toFixed(d);
}

/** fio's display_lat unit choice (values in ns). */
function latUnit(s: LatStats): { name: string; div: number } {
  if (s.min > 2_000_000 && s.max > 99_999_999 && s.stddev > 1_000_000) return { name: "msec", div: 1e6 };
  if (s.min > 2000 && s.max > 99_999 && s.stddev > 1000) return { name: "usec", div: 1e3 };
  return { name: "nsec", div: 1 };
}

function latLine(label: string, s: LatStats): string {
  const u = latUnit(s);
  return `${label} (${u.name}): min=${num2str(Math.round(s.min / u.div), 1000, 6)}, max=${num2str(
    Math.round(s.max / u.div),
    1000,
    6,
  )}, avg=${fixed(s.mean / u.div)}, stdev=${fixed(s.stddev / u.div)}`;
}

function percentileLines(s: LatStats): string[] {
  const entries = Object.entries(s.percentile ?? {});
  if (entries.length === 0 || s.N === 0) return [];
  const vals = entries.map(([, v]) => v);
  const minv = Math.min(...vals);
  const maxv = Math.max(...vals);
  let unit = "nsec";
  let div = 1;
  if (minv > 2_000_000 && maxv > 99_999_999) {
    unit = "msec";
    div = 1e6;
  } else if (minv > 2000 && maxv > 99_999) {
    unit = "usec";
    div = 1e3;
  }
  const cells = entries.map(
    ([k, v]) => `${Number(k).toFixed(2).padStart(5)}th=[${String(Math.round(v / div)).padStart(5)}]`,
  );
  const lines = [`    clat percentiles (${unit}):`];
  for (let i = 0; i < cells.length; i += 4) {
    const last = i + 4 >= cells.length;
    lines.push(`     | ${cells.slice(i, i + 4).join(", ")}${last ? "" : ","}`);
  }
  return lines;
}

function dirBlock(label: "read" | "write", d: DirStats, showSamples: boolean): string[] {
  if (d.total_ios === 0 && d.errors === 0) return [];
  const out: string[] = [];
  const iops = num2str(d.iops, 1000, 4);
  out.push(
    `  ${label}: IOPS=${iops}, BW=${formatBw(d.bw_bytes)}(${num2str(d.io_bytes, 1024)}B/${d.runtime}msec)${
      d.errors ? `, errors=${d.errors}` : ""
    }`,
  );
  out.push(`    ${latLine("slat", d.slat_ns)}`);
  out.push(`    ${latLine("clat", d.clat_ns)}`);
  out.push(`     ${latLine("lat", d.lat_ns)}`);
  out.push(...percentileLines(d.clat_ns));
  if (showSamples && d.bw_samples > 0) {
    out.push(
      `   bw (  KiB/s): min=${String(d.bw_min).padStart(5)}, max=${String(d.bw_max).padStart(5)}, per=${fixed(
        d.bw_agg,
      )}%, avg=${fixed(d.bw_mean)}, stdev=${fixed(d.bw_dev).padStart(5)}, samples=${d.bw_samples}`,
    );
    out.push(
      `   iops        : min=${String(d.iops_min).padStart(5)}, max=${String(d.iops_max).padStart(5)}, avg=${fixed(
        d.iops_mean,
      )}, stdev=${fixed(d.iops_stddev).padStart(5)}, samples=${d.iops_samples}`,
    );
  }
  return out;
}

function pad(s: string | number, w: number, left = false): string {
  const t = String(s);
  return left ? t.padEnd(w) : t.padStart(w);
}

function table(header: string[], rows: (string | number)[][], leftCols = 1): string[] {
  const w = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (r: (string | number)[]) =>
    r
      .map((c, i) => pad(c, w[i]!, i < leftCols))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)];
}

function ranges(qs: number[]): string {
  if (qs.length === 0) return "-";
  const out: string[] = [];
  let a = qs[0]!;
  let b = a;
  for (let i = 1; i <= qs.length; i++) {
    const q = qs[i];
    if (q !== undefined && q === b + 1) {
      b = q;
      continue;
    }
    out.push(a === b ? `${a}` : `${a}-${b}`);
    if (q !== undefined) a = b = q;
  }
  return out.join(",");
}

export function jobHeader(r: BenchResult): string {
  const o = r.options;
  const bs = `${o.bs}B-${o.bs}B`;
  return `${o.name}: (g=0): rw=${o.rw}, bs=(R) ${bs}, (W) ${bs}, (T) ${bs}, ioengine=${r.engine}, iodepth=${o.iodepth}`;
}

/** The vblk device section of the normal report. */
export function deviceSection(r: BenchResult): string[] {
  const d = r.device;
  const o = r.options;
  const out: string[] = [];
  out.push(
    `vblk: engine=${r.engine}${o.ioengineGiven !== r.engine ? ` (asked: ${o.ioengineGiven})` : ""}, cache=${
      o.direct ? "none" : "writeback"
    }, guest RAM ${r.guestMemoryAligned ? "page aligned (native)" : "SharedArrayBuffer (not page aligned)"}`,
  );
  out.push(
    `  device: ${d.numQueues} queue${d.numQueues === 1 ? "" : "s"} x ${d.queueSize}, event-idx=${
      d.eventIdx ? 1 : 0
    }, poll-max-ns=${d.pollMaxNs}, poll-engine=${d.pollEngine ? 1 : 0}, iothread-wait=${d.iothreadWait}, driver-poll-ns=${d.driverPollNs}, driver-poll-max-ns=${d.driverPollMaxNs}`,
  );
  out.push(`  placement: ${d.placement.note}`);
  if (d.warmupMs > 0)
    out.push(`  warm-up: ${d.warmupMs} ms untimed before the window (JIT; --warmup=0 for none)`);
  if (r.filename)
    out.push(
      `  image: ${r.filename} (${formatSize(r.imageBytes)}${r.tempImage ? ", temporary" : ""}), range ${formatSize(r.rangeBytes)}`,
    );
  else
    out.push(`  disk: ${formatSize(r.imageBytes)} (${r.engine} engine), range ${formatSize(r.rangeBytes)}`);
  for (const l of d.mappingText.split("\n")) out.push(`  ${l}`);
  out.push("  IOThreads (measured window):");
  const trows = d.iothreads.map((t) => [
    t.name,
    ranges(t.queues),
    t.requests,
    t.batches,
    t.batches > 0 ? fixed(t.requests / t.batches, 1) : "-",
    t.interrupts,
    t.kicks,
    t.wakeups,
    `${t.pollHits}/${t.pollMisses}`,
    t.submits,
    fixed(t.busyPct, 1),
  ]);
  for (const l of table(
    [
      "iothread",
      "vqs",
      "requests",
      "batches",
      "req/batch",
      "interrupts",
      "kicks",
      "wakeups",
      "poll hit/miss",
      "submits",
      "busy%",
    ],
    trows,
    2,
  ))
    out.push(`    ${l}`);
  out.push("  Queues:");
  const jobByQueue = new Map(r.jobs.map((j) => [j.queue, j]));
  const qrows = d.queues.map((q) => [
    q.queue,
    q.iothread,
    q.requests,
    q.reads,
    q.writes,
    q.batches,
    q.maxBatch,
    q.interrupts,
    q.kicks,
    q.errors,
    jobByQueue.get(q.queue)?.kicks ?? "-",
    jobByQueue.get(q.queue)?.sleeps ?? "-",
  ]);
  for (const l of table(
    [
      "vq",
      "iothread",
      "requests",
      "reads",
      "writes",
      "batches",
      "max batch",
      "interrupts",
      "kicks",
      "errors",
      "driver kicks",
      "driver sleeps",
    ],
    qrows,
    2,
  ))
    out.push(`    ${l}`);
  return out;
}

/** fio's normal output (one group), then the vblk section. */
export function formatNormal(r: BenchResult): string {
  const o = r.options;
  const out: string[] = [];
  out.push(jobHeader(r));
  if (o.numjobs > 1) out.push("...");
  out.push(r.version);
  out.push(
    `Starting ${o.numjobs} job${o.numjobs === 1 ? "" : "s"} (worker threads) on ${r.device.numQueues} queue${
      r.device.numQueues === 1 ? "" : "s"
    }, ${r.device.iothreads.length} IOThread${r.device.iothreads.length === 1 ? "" : "s"}`,
  );
  for (const w of r.warnings) out.push(`warning: ${w}`);
  out.push("");
  const date = new Date(r.timestampMs).toString().replace(/ GMT.*$/, "");
  out.push(
    `${o.name}: (groupid=0, jobs=${o.numjobs}): err=${String(r.error).padStart(2)}: pid=${process.pid}: ${date}`,
  );
  const g = r.group;
  out.push(...dirBlock("read", g.read, true));
  out.push(...dirBlock("write", g.write, true));
  out.push(
    `  cpu          : usr=${fixed(r.cpu.usr)}%, sys=${fixed(r.cpu.sys)}%, ctx=${r.cpu.ctx}, majf=${r.cpu.majf}, minf=${r.cpu.minf} (whole process)`,
  );
  out.push(`  IO depths    : ${o.iodepth}=100.0% (fixed: each job keeps iodepth in flight)`);
  if (r.jobs.length > 1)
    for (const j of r.jobs) {
      const parts: string[] = [];
      for (const k of ["read", "write"] as const) {
        const d = j.stats[k];
        if (d.total_ios > 0)
          parts.push(
            `${k} IOPS=${num2str(d.iops)} clat avg=${fixed(d.clat_ns.mean / 1000)}us p99=${fixed(
              (d.clat_ns.percentile?.[percentileKey(99)] ?? 0) / 1000,
            )}us`,
          );
      }
      out.push(
        `  job ${j.job} (vq ${j.queue})${j.error ? ` err=${j.error}` : ""}: ${parts.join(", ") || "no I/O"}, kicks=${
          j.kicks
        }, sleeps=${j.sleeps}`,
      );
    }
  if (r.verify)
    out.push(`  verify       : crc32c, ${r.verify.blocks} blocks read back, ${r.verify.errors} bad`);
  for (const e of r.errorMessages) out.push(`  error        : ${e}`);
  if (r.interrupted) out.push("  (interrupted: stopped early)");
  out.push("");
  out.push("Run status group 0 (all jobs):");
  for (const k of ["read", "write"] as const) {
    const d = g[k];
    if (d.total_ios === 0) continue;
    const per = r.jobs.map((j) => j.stats[k]).filter((s) => s.total_ios > 0);
    const bws = per.map((s) => s.bw_bytes);
    const runs = per.map((s) => s.runtime);
    const bwMin = Math.min(...bws);
    const bwMax = Math.max(...bws);
    out.push(
      `${k === "read" ? "   READ" : "  WRITE"}: bw=${formatBw(d.bw_bytes)}, ${num2str(bwMin, 1024)}B/s-${num2str(
        bwMax,
        1024,
      )}B/s (${num2str(bwMin)}B/s-${num2str(bwMax)}B/s), io=${formatBytesPair(d.io_bytes)}, run=${Math.min(
        ...runs,
      )}-${Math.max(...runs)}msec`,
    );
  }
  out.push("");
  out.push(...deviceSection(r));
  return `${out.join("\n")}\n`;
}

function dirJson(d: DirStats): Record<string, unknown> {
  return { ...d };
}

/** fio-shaped JSON object (see the file comment). */
export function toJson(r: BenchResult): Record<string, unknown> {
  const o = r.options;
  const jobOptions: Record<string, string> = { name: o.name, ...r.options.given };
  const trim = dirStats([], []);
  delete (trim.clat_ns as { percentile?: unknown }).percentile;
  return {
    "fio version": r.version,
    timestamp: Math.floor(r.timestampMs / 1000),
    timestamp_ms: r.timestampMs,
    time: new Date(r.timestampMs).toString(),
    "global options": {},
    jobs: [
      {
        jobname: o.name,
        groupid: 0,
        error: r.error,
        eta: 0,
        elapsed: Math.round(r.wallMs / 1000),
        "job options": jobOptions,
        read: dirJson(r.group.read),
        write: dirJson(r.group.write),
        trim: dirJson(trim),
        job_runtime: Math.round(r.wallMs),
        usr_cpu: r.cpu.usr,
        sys_cpu: r.cpu.sys,
        ctx: r.cpu.ctx,
        majf: r.cpu.majf,
        minf: r.cpu.minf,
      },
    ],
    vblk: {
      engine: r.engine,
      engine_requested: o.ioengineGiven,
      cache: o.direct ? "none" : "writeback",
      filename: r.filename ?? null,
      temp_image: r.tempImage,
      image_bytes: r.imageBytes,
      range_bytes: r.rangeBytes,
      guest_memory_aligned: r.guestMemoryAligned,
      num_queues: r.device.numQueues,
      queue_size: r.device.queueSize,
      event_idx: r.device.eventIdx,
      poll_max_ns: r.device.pollMaxNs,
      poll_engine: r.device.pollEngine,
      iothread_wait: r.device.iothreadWait,
      warmup_ms: r.device.warmupMs,
      driver_poll_ns: r.device.driverPollNs,
      driver_poll_max_ns: r.device.driverPollMaxNs,
      placement: {
        iothread_cpus: r.device.placement.iothreadCpus ?? null,
        job_cpus: r.device.placement.jobCpus ?? null,
        note: r.device.placement.note,
      },
      mapping_mode: r.device.mode,
      mapping: r.device.mapping,
      iothreads: r.device.iothreads,
      queues: r.device.queues,
      per_job: r.jobs.map((j) => ({
        job: j.job,
        queue: j.queue,
        error: j.error,
        stopped: j.stopped,
        kicks: j.kicks,
        sleeps: j.sleeps,
        read: dirJson(j.stats.read),
        write: dirJson(j.stats.write),
      })),
      verify: r.verify ?? null,
      errors: r.errorMessages,
      warnings: r.warnings,
      interrupted: r.interrupted,
      wall_ms: r.wallMs,
    },
  };
}

export function formatJson(r: BenchResult): string {
  return `${JSON.stringify(toJson(r), null, 2)}\n`;
}

function us(ns: number): string {
  return (ns / 1000).toFixed(6);
}

function terseDir(d: DirStats, percentiles: number[]): string[] {
  const f: string[] = [];
  f.push(String(d.io_kbytes), String(d.bw), String(Math.round(d.iops)), String(d.runtime));
  for (const s of [d.slat_ns, d.clat_ns]) {
    f.push(String(Math.round(s.min / 1000)), String(Math.round(s.max / 1000)), us(s.mean), us(s.stddev));
    if (s === d.clat_ns) {
      for (let i = 0; i < 20; i++) {
        const p = percentiles[i];
        if (p === undefined) f.push("0%=0");
        else f.push(`${p.toFixed(6)}%=${Math.round((d.clat_ns.percentile?.[percentileKey(p)] ?? 0) / 1000)}`);
      }
    }
  }
  const l = d.lat_ns;
  f.push(String(Math.round(l.min / 1000)), String(Math.round(l.max / 1000)), us(l.mean), us(l.stddev));
  f.push(
    String(d.bw_min),
    String(d.bw_max),
    `${d.bw_agg.toFixed(6)}%`,
    d.bw_mean.toFixed(6),
    d.bw_dev.toFixed(6),
  );
  return f;
}

/** One terse line for the group (see the file comment for the fields). */
export function formatTerse(r: BenchResult): string {
  const o = r.options;
  const f = ["3", r.version, o.name, "0", String(r.error)];
  f.push(...terseDir(r.group.read, o.percentiles));
  f.push(...terseDir(r.group.write, o.percentiles));
  f.push(...terseDir(dirStats([], o.percentiles), o.percentiles));
  f.push(
    `${r.cpu.usr.toFixed(6)}%`,
    `${r.cpu.sys.toFixed(6)}%`,
    String(r.cpu.ctx),
    String(r.cpu.majf),
    String(r.cpu.minf),
  );
  return `${f.join(";")}\n`;
}

export function formatReport(r: BenchResult): string {
  switch (r.options.outputFormat) {
    case "json":
      return formatJson(r);
    case "terse":
      return formatTerse(r);
    default:
      return formatNormal(r);
  }
}

export type { GroupStats };

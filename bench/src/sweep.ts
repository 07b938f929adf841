/**
 * `vblk-bench sweep`: the seed article's Figure 2, IOPS for each iodepth x
 * IOThread count (default {1, 64} x {1, 2, 4}), on one image shared by every
 * point. Each point is a full run with num_queues = max(numjobs, iothreads)
 * (unless --num-queues is given) and queues spread round-robin over the
 * IOThreads. Writes <out>.json, <out>.csv and <out>.svg.
 *
 * Defaults (each can be overridden with the usual job options):
 *   --rw=randread --bs=4k --numjobs=2 --runtime=5 --time_based --ioengine=auto --size=256M
 */
import { writeFileSync } from "node:fs";
import type { PreparedImage } from "./image.js";
import { attrName, type BenchOptions, OptionError, resolveOptions } from "./options.js";
import { type BenchResult, type RunContext, runBench } from "./runner.js";
import { renderBarChart } from "./svg.js";
import { num2str, percentileKey } from "./units.js";

export const SWEEP_SPECS = [
  { name: "iodepths", arg: "<list>", help: "iodepths to sweep, comma separated (default: 1,64)" },
  {
    name: "iothreads-list",
    arg: "<list>",
    help: "IOThread counts to sweep, comma separated (default: 1,2,4)",
  },
  { name: "out", arg: "<prefix>", help: "output files <prefix>.json, .csv, .svg (default: vblk-sweep)" },
];

export const SWEEP_DEFAULTS: Record<string, string | boolean> = {
  rw: "randread",
  bs: "4k",
  numjobs: "2",
  runtime: "5",
  time_based: true,
  ioengine: "auto",
  size: "256M",
};

export interface SweepPoint {
  iodepth: number;
  iothreads: number;
  numjobs: number;
  numQueues: number;
  engine: string;
  iops: number;
  readIops: number;
  writeIops: number;
  bwBytes: number;
  clatMeanNs: number;
  clatP99Ns: number;
  error: number;
}

export interface SweepResult {
  version: string;
  base: {
    rw: string;
    bs: number;
    numjobs: number;
    runtimeMs: number | undefined;
    ioengine: string;
    direct: boolean;
  };
  iodepths: number[];
  iothreadsList: number[];
  points: SweepPoint[];
  files: { json: string; csv: string; svg: string };
}

type Raw = Record<string, string | boolean | undefined>;

export function parseIntList(option: string, text: string, min: number, max: number): number[] {
  const parts = text.split(",").map((s) => s.trim());
  const out: number[] = [];
  for (const p of parts) {
    const v = /^\d+$/.test(p) ? Number(p) : Number.NaN;
    if (!Number.isSafeInteger(v) || v < min || v > max)
      throw new OptionError(
        option,
        `--${option}: invalid value "${text}"; allowed: comma-separated integers from ${min} to ${max}, e.g. ${option === "iodepths" ? "1,64" : "1,2,4"}`,
      );
    if (!out.includes(v)) out.push(v);
  }
  return out;
}

/** Options of every point (validated before anything runs). */
export function sweepPlan(raw: Raw): {
  iodepths: number[];
  iothreadsList: number[];
  out: string;
  points: BenchOptions[];
} {
  const r: Raw = { ...raw };
  for (const [k, v] of Object.entries(SWEEP_DEFAULTS)) if (r[attrName(k)] === undefined) r[attrName(k)] = v;
  if (r.iothreadVqMapping !== undefined)
    throw new OptionError(
      "iothread-vq-mapping",
      "--iothread-vq-mapping: not used by sweep; allowed: --iothreads-list",
    );
  if (r.iothreads !== undefined)
    throw new OptionError("iothreads", "--iothreads: not used by sweep; allowed: --iothreads-list");
  if (r.iodepth !== undefined)
    throw new OptionError("iodepth", "--iodepth: not used by sweep; allowed: --iodepths");
  if (r.verify !== undefined) throw new OptionError("verify", "--verify: not used by sweep");
  if (r.compareFio !== undefined) throw new OptionError("compare-fio", "--compare-fio: not used by sweep");
  const iodepths = parseIntList("iodepths", String(r.iodepths ?? "1,64"), 1, 341);
  const iothreadsList = parseIntList("iothreads-list", String(r.iothreadsList ?? "1,2,4"), 1, 64);
  const out = String(r.out ?? "vblk-sweep");
  if (out.length === 0) throw new OptionError("out", '--out: invalid value ""; allowed: a file name prefix');
  const points: BenchOptions[] = [];
  const base = resolveOptions(r);
  for (const iodepth of iodepths)
    for (const it of iothreadsList) {
      const p: Raw = { ...r, iodepth: String(iodepth), iothreads: String(it) };
      if (raw.numQueues === undefined) p.numQueues = String(Math.max(base.numjobs, it));
      points.push(resolveOptions(p));
    }
  return { iodepths, iothreadsList, out, points };
}

export async function runSweep(
  plan: ReturnType<typeof sweepPlan>,
  image: PreparedImage | undefined,
  ctx: RunContext & { onPoint?: (p: SweepPoint, r: BenchResult) => void },
): Promise<SweepResult> {
  const points: SweepPoint[] = [];
  for (const opts of plan.points) {
    if (ctx.signal?.aborted) break;
    const r = await runBench(opts, { ...ctx, ...(image ? { image } : {}) });
    const g = r.group;
    const main = g.read.total_ios >= g.write.total_ios ? g.read : g.write;
    const p: SweepPoint = {
      iodepth: opts.iodepth,
      iothreads: opts.iothreads ?? 1,
      numjobs: opts.numjobs,
      numQueues: opts.numQueues,
      engine: r.engine,
      iops: g.read.iops + g.write.iops,
      readIops: g.read.iops,
      writeIops: g.write.iops,
      bwBytes: g.read.bw_bytes + g.write.bw_bytes,
      clatMeanNs: main.clat_ns.mean,
      clatP99Ns: main.clat_ns.percentile?.[percentileKey(99)] ?? 0,
      error: r.error,
    };
    points.push(p);
    ctx.onPoint?.(p, r);
  }
  const b = plan.points[0]!;
  const result: SweepResult = {
    version: "vblk-bench-0.1",
    base: {
      rw: b.rw,
      bs: b.bs,
      numjobs: b.numjobs,
      runtimeMs: b.runtimeMs,
      ioengine: points[0]?.engine ?? b.ioengine,
      direct: b.direct,
    },
    iodepths: plan.iodepths,
    iothreadsList: plan.iothreadsList,
    points,
    files: { json: `${plan.out}.json`, csv: `${plan.out}.csv`, svg: `${plan.out}.svg` },
  };
  writeFileSync(result.files.json, `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(result.files.csv, sweepCsv(result));
  writeFileSync(result.files.svg, sweepSvg(result));
  return result;
}

export function sweepCsv(s: SweepResult): string {
  const rows = [
    "iodepth,iothreads,numjobs,num_queues,engine,iops,read_iops,write_iops,bw_bytes,clat_mean_us,clat_p99_us,error",
  ];
  for (const p of s.points)
    rows.push(
      [
        p.iodepth,
        p.iothreads,
        p.numjobs,
        p.numQueues,
        p.engine,
        p.iops.toFixed(1),
        p.readIops.toFixed(1),
        p.writeIops.toFixed(1),
        p.bwBytes,
        (p.clatMeanNs / 1000).toFixed(3),
        (p.clatP99Ns / 1000).toFixed(3),
        p.error,
      ].join(","),
    );
  return `${rows.join("\n")}\n`;
}

export function sweepSvg(s: SweepResult): string {
  const b = s.base;
  return renderBarChart({
    title: "IOPS by iodepth and IOThread count",
    subtitle: `vblk ${b.rw} bs=${b.bs} numjobs=${b.numjobs} engine=${b.ioengine} ${b.direct ? "O_DIRECT" : "page cache"}`,
    xLabel: "iodepth",
    yLabel: "IOPS",
    categories: s.iodepths.map((d) => `iodepth ${d}`),
    series: s.iothreadsList.map((t) => ({
      name: `${t} IOThread${t === 1 ? "" : "s"}`,
      values: s.iodepths.map((d) => s.points.find((p) => p.iodepth === d && p.iothreads === t)?.iops ?? 0),
    })),
    format: (v) => num2str(v),
  });
}

export function formatSweep(s: SweepResult): string {
  const hdr = ["iodepth", ...s.iothreadsList.map((t) => `iothreads=${t}`)];
  const rows = s.iodepths.map((d) => [
    String(d),
    ...s.iothreadsList.map((t) => {
      const p = s.points.find((x) => x.iodepth === d && x.iothreads === t);
      return p ? `${num2str(p.iops)}${p.error ? " (err)" : ""}` : "-";
    }),
  ]);
  const w = hdr.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const lines = [
    `sweep: ${s.base.rw} bs=${s.base.bs} numjobs=${s.base.numjobs} engine=${s.base.ioengine}, IOPS:`,
    hdr.map((h, i) => h.padStart(w[i]!)).join("  "),
    ...rows.map((r) => r.map((x, i) => x.padStart(w[i]!)).join("  ")),
    "",
    `wrote ${s.files.json}, ${s.files.csv}, ${s.files.svg}`,
  ];
  return `${lines.join("\n")}\n`;
}

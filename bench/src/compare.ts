/**
 * --compare-fio: the same job through vblk and through real fio on the same
 * file, alternating --repeat times, then the IOPS ratio vblk/fio per run
 * with its median, min and max. The order swaps every run (vblk fio | fio
 * vblk | vblk fio ...): a disk whose speed drifts during the comparison (a
 * host cache warming up under the image) would otherwise always favour the
 * one that runs second.
 *
 *   vblk ioengine     fio ioengine
 *   io_uring          io_uring
 *   libaio / native   libaio
 *   threads / psync   psync
 *   null              null
 *   auto              whatever auto resolved to in the first vblk run
 *   memory            (none: refused)
 *
 * fio gets: --name --filename --size --rw --rwmixread --bs --iodepth
 * --numjobs --ioengine --direct --runtime --time_based --ramp_time
 * --number_ios --randseed --cpus_allowed --thread --norandommap
 * --group_reporting --output-format=json --eta=never.
 * (--thread: fio's jobs are threads like ours; --norandommap: our random
 * offsets are uniform with repeats, fio's default would visit each block once.)
 */
import { spawn } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";
import type { PreparedImage } from "./image.js";
import { type BenchOptions, fioEngineFor, OptionError } from "./options.js";
import { toJson } from "./report.js";
import { type BenchResult, type RunContext, runBench } from "./runner.js";
import { num2str } from "./units.js";

export function findFio(pathEnv = process.env.PATH ?? ""): string | undefined {
  for (const dir of pathEnv.split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, "fio");
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** fio's command line for the job `opts` on `image` with fio engine `engine`. */
export function fioArgs(
  opts: BenchOptions,
  engine: string,
  image: PreparedImage | undefined,
  rangeBytes: number,
): string[] {
  const a = [
    `--name=${opts.name}`,
    ...(engine === "null" ? [] : [`--filename=${image!.path}`]),
    `--size=${rangeBytes}`,
    `--rw=${opts.rw}`,
    ...(opts.rw === "rw" || opts.rw === "randrw" ? [`--rwmixread=${opts.rwmixread}`] : []),
    `--bs=${opts.bs}`,
    `--iodepth=${opts.iodepth}`,
    `--numjobs=${opts.numjobs}`,
    `--ioengine=${engine}`,
    `--direct=${opts.direct ? 1 : 0}`,
    ...(opts.runtimeMs !== undefined ? [`--runtime=${Math.max(1, Math.round(opts.runtimeMs))}ms`] : []),
    ...(opts.timeBased ? ["--time_based"] : []),
    ...(opts.rampMs > 0 ? [`--ramp_time=${Math.round(opts.rampMs)}ms`] : []),
    ...(opts.numberIos !== undefined ? [`--number_ios=${opts.numberIos}`] : []),
    `--randseed=${opts.seed}`,
    ...(opts.cpusAllowed ? [`--cpus_allowed=${opts.cpusAllowed.join(",")}`] : []),
    "--thread",
    "--norandommap",
    "--group_reporting",
    "--output-format=json",
    "--eta=never",
  ];
  return a;
}

export interface FioRun {
  iops: number;
  readIops: number;
  writeIops: number;
  json: Record<string, unknown>;
}

/** Run fio, parse its JSON (it may print notes before it). */
export function runFio(fio: string, args: string[], signal?: AbortSignal): Promise<FioRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(fio, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      err += d.toString();
    });
    const onAbort = () => child.kill("SIGINT");
    signal?.addEventListener("abort", onAbort);
    child.on("error", (e) => {
      signal?.removeEventListener("abort", onAbort);
      reject(e);
    });
    child.on("close", (code) => {
      signal?.removeEventListener("abort", onAbort);
      const start = out.indexOf("{");
      if (code !== 0 || start < 0) {
        reject(new Error(`fio exited with code ${code}: ${(err || out).trim().slice(0, 2000)}`));
        return;
      }
      try {
        const json = JSON.parse(out.slice(start)) as Record<string, unknown>;
        const job = (json.jobs as Record<string, { iops: number }>[])[0]!;
        const readIops = job.read?.iops ?? 0;
        const writeIops = job.write?.iops ?? 0;
        resolve({ iops: readIops + writeIops, readIops, writeIops, json });
      } catch (e) {
        reject(new Error(`cannot parse fio's JSON: ${(e as Error).message}`));
      }
    });
  });
}

export interface CompareRow {
  run: number;
  /** Which ran first in this run. */
  first: "vblk" | "fio";
  vblkIops: number;
  fioIops: number;
  ratio: number;
}

export interface CompareResult {
  rows: CompareRow[];
  ratioMedian: number;
  ratioMin: number;
  ratioMax: number;
  fioPath: string;
  fioVersion: string;
  fioEngine: string;
  fioArgs: string[];
  vblk: BenchResult[];
  fio: FioRun[];
}

export function median(xs: number[]): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function checkCompareOptions(opts: BenchOptions): void {
  if (opts.ioengine === "memory")
    throw new OptionError(
      "compare-fio",
      "--compare-fio: ioengine=memory has no fio counterpart; allowed: --ioengine=null, threads (psync), io_uring, libaio or auto",
    );
  if (opts.verify)
    throw new OptionError(
      "compare-fio",
      "--compare-fio: cannot be combined with --verify; allowed: one of the two",
    );
}

async function fioVersion(fio: string): Promise<string> {
  return new Promise((resolve) => {
    const c = spawn(fio, ["--version"], { stdio: ["ignore", "pipe", "ignore"] });
    let out = "";
    c.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    c.on("close", () => resolve(out.trim()));
    c.on("error", () => resolve("unknown"));
  });
}

export async function compareWithFio(
  opts: BenchOptions,
  fio: string,
  image: PreparedImage | undefined,
  ctx: RunContext & { onRun?: (line: string) => void },
): Promise<CompareResult> {
  checkCompareOptions(opts);
  const rows: CompareRow[] = [];
  const vblk: BenchResult[] = [];
  const fioRuns: FioRun[] = [];
  let engine: string | undefined;
  let args: string[] = [];
  const fioRun = async (i: number): Promise<FioRun> => {
    const f = await runFio(fio, args, ctx.signal);
    fioRuns.push(f);
    ctx.onRun?.(`run ${i}/${opts.repeat}: fio  ${num2str(f.iops)} IOPS`);
    return f;
  };
  for (let i = 1; i <= opts.repeat; i++) {
    if (ctx.signal?.aborted) break;
    // Run 1 starts with vblk: fio's engine is what vblk's resolved to.
    const fioFirst = i % 2 === 0;
    const f0 = fioFirst ? await fioRun(i) : undefined;
    if (ctx.signal?.aborted) break;
    const r = await runBench(opts, { ...ctx, ...(image ? { image } : {}) });
    vblk.push(r);
    if (r.error !== 0) throw new Error(`vblk run ${i} failed: ${r.errorMessages[0] ?? `error ${r.error}`}`);
    if (engine === undefined) {
      engine = fioEngineFor(r.engine);
      if (engine === undefined)
        throw new OptionError("compare-fio", `--compare-fio: engine ${r.engine} has no fio counterpart`);
      args = fioArgs(opts, engine, image, r.rangeBytes);
    }
    const vIops = r.group.read.iops + r.group.write.iops;
    ctx.onRun?.(`run ${i}/${opts.repeat}: vblk ${num2str(vIops)} IOPS`);
    if (ctx.signal?.aborted) break;
    const f = f0 ?? (await fioRun(i));
    rows.push({
      run: i,
      first: fioFirst ? "fio" : "vblk",
      vblkIops: vIops,
      fioIops: f.iops,
      ratio: f.iops > 0 ? vIops / f.iops : 0,
    });
  }
  const ratios = rows.map((r) => r.ratio);
  return {
    rows,
    ratioMedian: median(ratios),
    ratioMin: ratios.length ? Math.min(...ratios) : 0,
    ratioMax: ratios.length ? Math.max(...ratios) : 0,
    fioPath: fio,
    fioVersion: await fioVersion(fio),
    fioEngine: engine ?? "",
    fioArgs: args,
    vblk,
    fio: fioRuns,
  };
}

export function formatCompare(c: CompareResult): string {
  const lines: string[] = [];
  const v0 = c.vblk[0];
  if (v0) {
    const o = v0.options;
    lines.push(
      `compare: rw=${o.rw} bs=${o.bs} iodepth=${o.iodepth} numjobs=${o.numjobs} direct=${o.direct ? 1 : 0}; vblk engine=${v0.engine} (${v0.device.iothreads.length} IOThread(s), ${v0.device.numQueues} queue(s)) vs ${c.fioVersion} ioengine=${c.fioEngine}`,
    );
  }
  lines.push(`fio ${c.fioArgs.join(" ")}`);
  lines.push("");
  const hdr = ["run", "first", "vblk IOPS", "fio IOPS", "ratio"];
  const rows = c.rows.map((r) => [
    String(r.run),
    r.first,
    num2str(r.vblkIops),
    num2str(r.fioIops),
    r.ratio.toFixed(3),
  ]);
  const w = hdr.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  lines.push(hdr.map((h, i) => h.padStart(w[i]!)).join("  "));
  for (const r of rows) lines.push(r.map((x, i) => x.padStart(w[i]!)).join("  "));
  lines.push("");
  lines.push(
    `ratio vblk/fio: median ${c.ratioMedian.toFixed(3)}, min ${c.ratioMin.toFixed(3)}, max ${c.ratioMax.toFixed(3)} over ${c.rows.length} run(s)`,
  );
  return `${lines.join("\n")}\n`;
}

export function compareJson(c: CompareResult): Record<string, unknown> {
  return {
    "fio version": c.vblk[0]?.version ?? "vblk-bench-0.1",
    compare: {
      fio: c.fioVersion,
      fio_path: c.fioPath,
      fio_ioengine: c.fioEngine,
      fio_args: c.fioArgs,
      runs: c.rows.map((r) => ({
        run: r.run,
        first: r.first,
        vblk_iops: r.vblkIops,
        fio_iops: r.fioIops,
        ratio: r.ratio,
      })),
      ratio_median: c.ratioMedian,
      ratio_min: c.ratioMin,
      ratio_max: c.ratioMax,
    },
    vblk_runs: c.vblk.map(toJson),
    fio_runs: c.fio.map((f) => f.json),
  };
}

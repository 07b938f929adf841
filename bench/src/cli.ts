#!/usr/bin/env node
/**
 * vblk-bench: fio-like benchmark of the vblk virtio-blk device.
 *
 *   vblk-bench [job options] [device options]       one run (no options: a default job)
 *   vblk-bench [...] --compare-fio [--repeat N]      alternate vblk and real fio on the same file
 *   vblk-bench sweep [--iodepths 1,64] [--iothreads-list 1,2,4] [--out prefix] [job options]
 *
 * Exit codes: 0 ok; 1 bad option, run error, verify failure, fio missing;
 * 130 / 143 interrupted by SIGINT / SIGTERM (the partial report is printed,
 * the temporary image removed and every thread joined first).
 */
import { realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Command, CommanderError } from "commander";
import { checkCompareOptions, compareJson, compareWithFio, findFio, formatCompare } from "./compare.js";
import { type PreparedImage, prepareImage, removeAllTempImages } from "./image.js";
import {
  addOptions,
  COMPARE_SPECS,
  DEFAULT_JOB_ARGS,
  DEVICE_SPECS,
  JOB_SPECS,
  normalizeArgv,
  OptionError,
  resolveOptions,
} from "./options.js";
import { ProgressLine } from "./progress.js";
import { formatReport } from "./report.js";
import { BENCH_VERSION, checkDeviceOptions, type RunContext, runBench, usesFile } from "./runner.js";
import { formatSweep, runSweep, SWEEP_SPECS, sweepPlan } from "./sweep.js";

export interface CliIo {
  out: (s: string) => void;
  err: (s: string) => void;
  /** Show the live progress line (default: process.stdout.isTTY). */
  isTTY: boolean;
  /** Install SIGINT/SIGTERM handlers (default true). */
  handleSignals: boolean;
}

const defaultIo = (): CliIo => ({
  out: (s) => process.stdout.write(s),
  err: (s) => process.stderr.write(s),
  isTTY: process.stdout.isTTY === true,
  handleSignals: true,
});

const ROOT_SPECS = [...JOB_SPECS, ...DEVICE_SPECS, ...COMPARE_SPECS];
const SWEEP_ALL_SPECS = [...JOB_SPECS, ...DEVICE_SPECS, ...SWEEP_SPECS];

const HELP_AFTER = `
Defaults with no options at all: ${DEFAULT_JOB_ARGS.join(" ")}
  on a temporary image (removed at exit).
Jobs: job i is one submitting thread (the guest's vCPU) on virtqueue i; it
  keeps iodepth requests in flight, spins --driver-poll-ns for completions,
  then sleeps until the device interrupts.
Reports: --output-format=normal (fio-like + a vblk section with the mapping and
  per-IOThread/per-queue counters), json (fio's field names; the group in
  jobs[0], each job in vblk.per_job), terse (fio's v3 fields up to CPU).
Exit codes: 0 ok, 1 error (bad option, I/O error, verify failure), 130/143 interrupted.
`;

interface Session {
  io: CliIo;
  signal: AbortSignal;
  code: number;
}

function progressCtx(
  s: Session,
  opts: ReturnType<typeof resolveOptions>,
): { ctx: RunContext; done: () => void } {
  if (!s.io.isTTY) return { ctx: { signal: s.signal }, done: () => {} };
  const line = new ProgressLine(opts, s.io.out);
  return {
    ctx: { signal: s.signal, onProgress: (p) => line.update(p) },
    done: () => line.clear(),
  };
}

async function withImage<T>(
  s: Session,
  opts: ReturnType<typeof resolveOptions>,
  fn: (image: PreparedImage | undefined) => Promise<T>,
): Promise<T> {
  let image: PreparedImage | undefined;
  if (usesFile(opts.ioengine)) {
    if (s.io.isTTY)
      s.io.err(
        opts.filename
          ? `vblk-bench: using ${opts.filename}\n`
          : `vblk-bench: laying out a temporary image of ${opts.size ?? 256 << 20} bytes\n`,
      );
    image = await prepareImage({
      filename: opts.filename,
      directory: opts.directory,
      size: opts.size,
      bs: opts.bs,
      signal: s.signal,
    });
  }
  try {
    return await fn(image);
  } finally {
    image?.remove();
  }
}

async function runMain(s: Session, raw: Record<string, string | boolean | undefined>): Promise<void> {
  const opts = resolveOptions(raw);
  checkDeviceOptions(opts);
  if (opts.compareFio) {
    checkCompareOptions(opts);
    const fio = findFio();
    if (!fio) {
      s.io.err("vblk-bench: --compare-fio needs fio on PATH, and there is none (apt-get install fio)\n");
      s.code = 1;
      return;
    }
    await withImage(s, opts, async (image) => {
      const { ctx, done } = progressCtx(s, opts);
      const c = await compareWithFio(opts, fio, image, {
        ...ctx,
        onRun: (l) => {
          done();
          if (s.io.isTTY || opts.outputFormat === "normal") s.io.err(`${l}\n`);
        },
      });
      done();
      if (opts.outputFormat === "json") s.io.out(`${JSON.stringify(compareJson(c), null, 2)}\n`);
      else s.io.out(formatCompare(c));
      if (c.rows.length < opts.repeat && s.code === 0) s.code = 1;
    });
    return;
  }
  await withImage(s, opts, async (image) => {
    const { ctx, done } = progressCtx(s, opts);
    let r: Awaited<ReturnType<typeof runBench>>;
    try {
      r = await runBench(opts, { ...ctx, ...(image ? { image } : {}) });
    } finally {
      done();
    }
    s.io.out(formatReport(r));
    if (r.error !== 0 && s.code === 0) s.code = 1;
  });
}

async function runSweepCmd(s: Session, raw: Record<string, string | boolean | undefined>): Promise<void> {
  const plan = sweepPlan(raw);
  for (const p of plan.points) checkDeviceOptions(p);
  const first = plan.points[0]!;
  await withImage(s, first, async (image) => {
    const { ctx, done } = progressCtx(s, first);
    const result = await runSweep(plan, image, {
      ...ctx,
      onPoint: (p) => {
        done();
        s.io.err(`sweep: iodepth=${p.iodepth} iothreads=${p.iothreads}: ${Math.round(p.iops)} IOPS\n`);
      },
    });
    done();
    if (first.outputFormat === "json") s.io.out(`${JSON.stringify(result, null, 2)}\n`);
    else s.io.out(formatSweep(result));
    if (result.points.some((p) => p.error !== 0) && s.code === 0) s.code = 1;
  });
}

/** Run the CLI with `argv` (no node/script prefix). Resolves to the exit code. */
export async function main(argv: string[], ioIn: Partial<CliIo> = {}): Promise<number> {
  const io: CliIo = { ...defaultIo(), ...ioIn };
  const ac = new AbortController();
  const s: Session = { io, signal: ac.signal, code: 0 };
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    signals++;
    s.code = sig === "SIGINT" ? 130 : 143;
    if (signals === 1) {
      io.err(`\nvblk-bench: ${sig}: stopping jobs (again to exit at once)\n`);
      ac.abort();
    } else {
      removeAllTempImages();
      process.exit(s.code);
    }
  };
  if (io.handleSignals) {
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
  }

  // `pnpm bench -- --rw=read` passes the "--" through: drop it.
  if (argv[0] === "--") argv = argv.slice(1);
  const isSweep = argv[0] === "sweep";
  const args =
    argv.length === 0 ? DEFAULT_JOB_ARGS : normalizeArgv(argv, isSweep ? SWEEP_ALL_SPECS : ROOT_SPECS);
  let action: Promise<void> | undefined;
  const program = new Command("vblk-bench")
    .description("fio-like benchmark of the vblk virtio-blk device (IOThreads + iothread-vq-mapping)")
    .version(BENCH_VERSION, "-V, --version")
    .enablePositionalOptions()
    .allowExcessArguments(false)
    .exitOverride()
    .configureOutput({ writeOut: io.out, writeErr: io.err })
    .showHelpAfterError("(run vblk-bench --help for the options and their values)")
    .addHelpText("after", HELP_AFTER);
  addOptions(program, ROOT_SPECS);
  program.action(() => {
    action = runMain(s, program.opts());
  });
  const sweep = program
    .command("sweep")
    .description(
      "IOPS for each iodepth x IOThread count (the article's Figure 2); writes <out>.json/.csv/.svg",
    )
    .allowExcessArguments(false)
    .exitOverride()
    .configureOutput({ writeOut: io.out, writeErr: io.err })
    .showHelpAfterError("(run vblk-bench sweep --help for the options and their values)");
  addOptions(sweep, SWEEP_ALL_SPECS);
  sweep.action(() => {
    action = runSweepCmd(s, sweep.opts());
  });

  try {
    await program.parseAsync(args, { from: "user" });
    if (action) await action;
  } catch (e) {
    if (e instanceof CommanderError) {
      s.code =
        e.code === "commander.helpDisplayed" || e.code === "commander.version" || e.exitCode === 0 ? 0 : 1;
    } else if (e instanceof OptionError) {
      io.err(`vblk-bench: ${e.message}\n`);
      s.code = 1;
    } else if (ac.signal.aborted) {
      io.err(`vblk-bench: interrupted: ${(e as Error).message}\n`);
    } else {
      io.err(`vblk-bench: error: ${(e as Error).message}\n`);
      if (process.env.VBLK_BENCH_DEBUG) io.err(`${(e as Error).stack}\n`);
      s.code = 1;
    }
  } finally {
    if (io.handleSignals) {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    }
    removeAllTempImages();
  }
  return s.code;
}

function isEntry(): boolean {
  const a = process.argv[1];
  if (!a) return false;
  try {
    return realpathSync(a) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
}

if (isEntry()) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: Error) => {
      process.stderr.write(`vblk-bench: ${e.stack ?? e.message}\n`);
      process.exitCode = 1;
    },
  );
}

/**
 * vblk-bench options: fio's names and meanings for the job, plus the
 * device's (QEMU-like) knobs. Parsing is two steps:
 *
 *   argv --normalizeArgv--> commander (syntax: --opt=v / --opt v, unknown
 *        options)  --resolveOptions--> BenchOptions (values, defaults,
 *        cross-checks; every error names the option and what is allowed)
 *
 * Option names are matched with "-" and "_" treated alike, so fio's
 * --ramp_time and --ramp-time both work, as do --num_queues / --num-queues.
 */

import { cpus } from "node:os";
import type { Command } from "commander";
import {
  DEFAULT_PERCENTILES,
  formatSize,
  MAX_PERCENTILES,
  parseCpuList,
  parsePercentiles,
  parseSize,
  parseTimeMs,
} from "./units.js";

export const RW_MODES = ["read", "write", "randread", "randwrite", "rw", "readwrite", "randrw"] as const;
export type RwMode = "read" | "write" | "randread" | "randwrite" | "rw" | "randrw";

/** What --ioengine accepts, and what each name means here. */
export const IOENGINE_ALIASES: Record<string, EngineChoice> = {
  null: "null",
  memory: "memory",
  threads: "threads",
  psync: "threads",
  sync: "threads",
  pvsync: "threads",
  io_uring: "io_uring",
  libaio: "libaio",
  native: "libaio",
  auto: "auto",
};
export type EngineChoice = "null" | "memory" | "threads" | "io_uring" | "libaio" | "auto";
export const IOENGINE_ALLOWED =
  "null, memory, threads (aliases: psync, sync, pvsync), io_uring, libaio (alias: native), auto";

export const OUTPUT_FORMATS = ["normal", "json", "terse"] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

export interface VqMappingEntry {
  iothread: string;
  vqs?: number[];
}

export interface BenchOptions {
  name: string;
  /** Image file or block device; undefined = a temporary image (removed at exit). */
  filename: string | undefined;
  /** Where the temporary image goes (fio's --directory). */
  directory: string | undefined;
  /** Bytes of the file each job works on; undefined = the whole existing file (or 256M for a new one). */
  size: number | undefined;
  rw: RwMode;
  rwmixread: number;
  bs: number;
  iodepth: number;
  numjobs: number;
  /** undefined = no time limit (run until `size` bytes per job). */
  runtimeMs: number | undefined;
  timeBased: boolean;
  rampMs: number;
  /** vblk-only untimed warm-up before ramp/measurement (JIT), ms. */
  warmupMs: number;
  direct: boolean;
  ioengine: EngineChoice;
  /** --ioengine exactly as given (psync, native, ...). */
  ioengineGiven: string;
  cpusAllowed: number[] | undefined;
  outputFormat: OutputFormat;
  percentiles: number[];
  verify: "crc32c" | undefined;
  numberIos: number | undefined;
  seed: number;
  numQueues: number;
  queueSize: number;
  iothreads: number | undefined;
  iothreadVqMapping: VqMappingEntry[] | undefined;
  pollMaxNs: number;
  /** Poll native completions while I/O is in flight (device option pollEngine). */
  pollEngine: boolean;
  /** Where an idle io_uring IOThread sleeps: in its ring (io_uring_enter) or in epoll. */
  iothreadWait: "ring" | "epoll";
  /** IOThread CPUs: "auto" = where the disk's interrupts land, "none" = unpinned, or a list. */
  iothreadCpus: "auto" | "none" | number[];
  eventIdx: boolean;
  driverPollNs: number;
  /** Cap of the job's adaptive spin window (0 = fixed at driverPollNs). */
  driverPollMaxNs: number;
  /** Requests per avail-index publish (fio's iodepth_batch_submit); 0 = all that fit. */
  iodepthBatchSubmit: number;
  compareFio: boolean;
  repeat: number;
  /** The options as the user gave them (fio's "job options" in JSON). */
  given: Record<string, string>;
}

/** A bad option value: the message names the option and what it accepts. */
export class OptionError extends Error {
  constructor(
    readonly option: string,
    message: string,
  ) {
    super(message);
    this.name = "OptionError";
  }
}

function bad(option: string, value: string, allowed: string): never {
  throw new OptionError(option, `--${option}: invalid value "${value}"; allowed: ${allowed}`);
}

interface Spec {
  /** Canonical long name (what commander sees). */
  name: string;
  /** "<value>", "[value]" or "" (a flag). */
  arg: string;
  help: string;
}

/** Job options (fio's names). */
export const JOB_SPECS: Spec[] = [
  { name: "name", arg: "<name>", help: "job name (default: vblk)" },
  {
    name: "filename",
    arg: "<path>",
    help: "image file or block device (default: a temporary image of --size with random data, removed at exit)",
  },
  {
    name: "directory",
    arg: "<dir>",
    help: "where the temporary image is created (default: the OS temp dir)",
  },
  { name: "size", arg: "<size>", help: "bytes of I/O range per job, fio suffixes k/m/g (base 1024)" },
  {
    name: "rw",
    arg: "<mode>",
    help: "read, write, randread, randwrite, rw|readwrite, randrw (default: read)",
  },
  { name: "rwmixread", arg: "<pct>", help: "percentage of reads in rw/randrw (default: 50)" },
  { name: "bs", arg: "<size>", help: "block size, a multiple of 512 (default: 4k)" },
  { name: "iodepth", arg: "<n>", help: "requests each job keeps in flight (default: 1)" },
  { name: "numjobs", arg: "<n>", help: "jobs (vCPU submitters), each on its own queue (default: 1)" },
  { name: "runtime", arg: "<time>", help: "time limit, seconds or with s/ms/m/h suffix" },
  { name: "time_based", arg: "[0|1]", help: "run for --runtime even when --size is done" },
  { name: "ramp_time", arg: "<time>", help: "run this long before measuring" },
  {
    name: "warmup",
    arg: "<time>",
    help: "untimed warm-up of the JIT before the measured window, vblk only (fio is compiled ahead of time); like tinybench's warmupTime (default: 300ms, 0 = none)",
  },
  {
    name: "direct",
    arg: "<0|1>",
    help: "1 = O_DIRECT (cache=none), 0 = page cache (cache=writeback) (default: 1)",
  },
  { name: "ioengine", arg: "<engine>", help: `${IOENGINE_ALLOWED} (default: auto)` },
  {
    name: "cpus_allowed",
    arg: "<list>",
    help: "CPUs the job threads run on, e.g. 0-1,3 (needs the native addon)",
  },
  { name: "output-format", arg: "<fmt>", help: "normal, json, terse (default: normal)" },
  { name: "percentile_list", arg: "<list>", help: "clat percentiles, e.g. 1:5:50:99:99.9" },
  { name: "verify", arg: "<type>", help: "crc32c: write every block, then read it back and check it" },
  {
    name: "iodepth_batch_submit",
    arg: "<n>",
    help: "publish the avail index (and kick if asked) after this many new requests, 0 = all that fit (alias: iodepth_batch; default: 32, fio's is 1)",
  },
  { name: "number_ios", arg: "<n>", help: "stop each job after this many I/Os" },
  { name: "seed", arg: "<n>", help: "random seed (alias: --randseed; default: 137 like fio)" },
  { name: "group_reporting", arg: "", help: "accepted for fio compatibility: groups are always reported" },
];

/** Device options (QEMU's names). */
export const DEVICE_SPECS: Spec[] = [
  { name: "num-queues", arg: "<n>", help: "virtqueues (default: numjobs; must be >= numjobs)" },
  {
    name: "queue-size",
    arg: "<n>",
    help: "ring size, power of two 4..1024 (default: 256, more when iodepth needs it)",
  },
  { name: "iothreads", arg: "<n>", help: "IOThreads, queues assigned round-robin (default: 1)" },
  {
    name: "iothread-vq-mapping",
    arg: "<json>",
    help: `QEMU's mapping, e.g. '[{"iothread":"t0","vqs":[0]},{"iothread":"t1","vqs":[1]}]'`,
  },
  {
    name: "poll-max-ns",
    arg: "<ns>",
    help: "IOThread adaptive polling cap, 0 = no polling (default: 32768)",
  },
  {
    name: "poll-engine",
    arg: "<0|1>",
    help: "IOThreads also spin on io_uring/libaio completions while I/O is in flight (default: 0: they sleep in epoll)",
  },
  {
    name: "iothread-wait",
    arg: "<ring|epoll>",
    help: "where an idle io_uring IOThread sleeps: ring = io_uring_enter with the kick eventfds watched in the ring, epoll = epoll_wait (default: ring)",
  },
  {
    name: "iothread-cpus",
    arg: "<auto|none|list>",
    help: "CPUs for the IOThreads: auto = the CPUs taking the disk's interrupts, jobs then on the others (io_uring/libaio); none; or a list like 1 or 0-1 (default: auto)",
  },
  { name: "event-idx", arg: "<0|1>", help: "negotiate VIRTIO_RING_F_EVENT_IDX (default: 1)" },
  {
    name: "driver-poll-ns",
    arg: "<ns>",
    help: "how long a job spins for completions before it sleeps on the interrupt (default: 200000, like Linux guest haltpoll's guest_halt_poll_ns)",
  },
  {
    name: "driver-poll-max-ns",
    arg: "<ns>",
    help: "cap of the job's adaptive spin: a sleep that a completion ended sooner than this doubles the spin window, a longer one halves it, never below --driver-poll-ns (Linux haltpoll's rule); 0 = fixed window (default: 2000000)",
  },
];

export const COMPARE_SPECS: Spec[] = [
  { name: "compare-fio", arg: "", help: "also run the same job with fio on the same file, alternating" },
  { name: "repeat", arg: "<n>", help: "runs of each tool with --compare-fio (default: 3)" },
];

/** Other spellings accepted for an option (after - / _ folding). */
const ALIASES: Record<string, string> = {
  randseed: "seed",
  output_format: "output-format",
  iodepth_batch: "iodepth_batch_submit",
};

function fold(name: string): string {
  return name.replace(/-/g, "_").toLowerCase();
}

export function addOptions(cmd: Command, specs: Spec[]): void {
  for (const s of specs) cmd.option(`--${s.name}${s.arg ? ` ${s.arg}` : ""}`, s.help);
}

/**
 * Rewrite `--ramp-time=1` to `--ramp_time=1`, `--num_queues` to
 * `--num-queues`, `--randseed` to `--seed`: each known option in its
 * canonical spelling. Unknown ones are left for commander to reject.
 */
export function normalizeArgv(argv: string[], specs: Spec[]): string[] {
  const canon = new Map<string, string>();
  for (const s of specs) canon.set(fold(s.name), s.name);
  for (const [a, to] of Object.entries(ALIASES)) if (specs.some((s) => s.name === to)) canon.set(fold(a), to);
  const out: string[] = [];
  let rest = false;
  for (const a of argv) {
    if (rest || !a.startsWith("--") || a === "--") {
      if (a === "--") rest = true;
      out.push(a);
      continue;
    }
    const eq = a.indexOf("=");
    const name = eq < 0 ? a.slice(2) : a.slice(2, eq);
    const c = canon.get(fold(name));
    out.push(c === undefined ? a : `--${c}${eq < 0 ? "" : a.slice(eq)}`);
  }
  return out;
}

/** commander's attribute name for a long option ("num-queues" -> "numQueues", "time_based" stays). */
export function attrName(name: string): string {
  return name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

type Raw = Record<string, string | boolean | undefined>;

function str(raw: Raw, name: string): string | undefined {
  const v = raw[attrName(name)];
  if (v === undefined) return undefined;
  return typeof v === "boolean" ? (v ? "1" : "0") : v;
}

export function intOpt(
  raw: Raw,
  name: string,
  def: number,
  min: number,
  max: number,
  allowed?: string,
): number {
  const v = str(raw, name);
  if (v === undefined) return def;
  const n = /^\s*\d+\s*$/.test(v) ? Number(v) : Number.NaN;
  const text = allowed ?? `an integer from ${min} to ${max}`;
  if (!Number.isSafeInteger(n) || n < min || n > max) bad(name, v, text);
  return n;
}

export function boolOpt(raw: Raw, name: string, def: boolean): boolean {
  const v = str(raw, name);
  if (v === undefined) return def;
  const t = v.trim().toLowerCase();
  if (t === "1" || t === "true" || t === "yes" || t === "on" || t === "") return true;
  if (t === "0" || t === "false" || t === "no" || t === "off") return false;
  return bad(name, v, "0 or 1");
}

export function sizeOpt(raw: Raw, name: string, allowed: string): number | undefined {
  const v = str(raw, name);
  if (v === undefined) return undefined;
  const n = parseSize(v);
  if (!Number.isFinite(n) || n <= 0) bad(name, v, allowed);
  return n;
}

export function timeOpt(raw: Raw, name: string, allowZero: boolean): number | undefined {
  const v = str(raw, name);
  if (v === undefined) return undefined;
  const n = parseTimeMs(v);
  if (!Number.isFinite(n) || n < 0 || (!allowZero && n === 0))
    bad(name, v, `a ${allowZero ? "" : "positive "}duration: seconds, or a number with us, ms, s, m, h`);
  return n;
}

/** Largest iodepth a queue can hold: each request takes 3 descriptors (header, data, status). */
export const DESCS_PER_REQUEST = 3;
export const MAX_QUEUE_SIZE = 1024;
export const MAX_IODEPTH = Math.floor(MAX_QUEUE_SIZE / DESCS_PER_REQUEST);
/** Cap on bs × iodepth × numjobs (data buffers in guest memory). */
export const MAX_DATA_BYTES = 1 << 30;
export const DEFAULT_SIZE = 256 << 20;

/** The job vblk-bench runs when given no options at all. */
export const DEFAULT_JOB_ARGS = [
  "--rw=randread",
  "--bs=4k",
  "--iodepth=64",
  "--numjobs=2",
  "--runtime=10",
  "--time_based",
  "--ioengine=auto",
  "--size=256M",
];

function nextPow2(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/**
 * Turn commander's raw values into BenchOptions. `raw` holds only what the
 * user gave (no commander defaults), keyed by attribute name.
 */
export function resolveOptions(raw: Raw, ncpus = cpus().length): BenchOptions {
  const given: Record<string, string> = {};
  for (const s of [...JOB_SPECS, ...DEVICE_SPECS, ...COMPARE_SPECS]) {
    const v = str(raw, s.name);
    if (v !== undefined) given[s.name] = v;
  }

  const name = str(raw, "name") ?? "vblk";
  if (name.length === 0 || /[\s;]/.test(name)) bad("name", name, "a non-empty name without spaces or ';'");

  const rwText = str(raw, "rw") ?? "read";
  if (!(RW_MODES as readonly string[]).includes(rwText)) bad("rw", rwText, RW_MODES.join(", "));
  const rw = (rwText === "readwrite" ? "rw" : rwText) as RwMode;

  const rwmixread = intOpt(raw, "rwmixread", 50, 0, 100);
  const bs = sizeOpt(raw, "bs", "a multiple of 512 from 512 to 16M (suffixes k, m)") ?? 4096;
  if (bs % 512 !== 0 || bs > 16 << 20)
    bad("bs", str(raw, "bs")!, "a multiple of 512 from 512 to 16M (suffixes k, m)");
  const iodepth = intOpt(raw, "iodepth", 1, 1, MAX_IODEPTH);
  const numjobs = intOpt(raw, "numjobs", 1, 1, 256);

  const filename = str(raw, "filename");
  if (filename !== undefined && filename.length === 0)
    bad("filename", filename, "a file or block device path");
  const directory = str(raw, "directory");

  const size = sizeOpt(raw, "size", "a positive size with optional suffix k, m, g, t (base 1024)");
  if (size !== undefined && size < bs)
    throw new OptionError(
      "size",
      `--size: ${formatSize(size)} is smaller than --bs=${formatSize(bs)}; allowed: a size >= bs`,
    );

  const runtimeMs = timeOpt(raw, "runtime", false);
  const timeBased = boolOpt(raw, "time_based", false);
  if (timeBased && runtimeMs === undefined)
    throw new OptionError(
      "time_based",
      "--time_based: needs --runtime (how long to run); allowed: with --runtime=<time>",
    );
  const rampMs = timeOpt(raw, "ramp_time", true) ?? 0;
  const warmupMs = timeOpt(raw, "warmup", true) ?? 300;
  const direct = boolOpt(raw, "direct", true);

  const engText = str(raw, "ioengine") ?? "auto";
  const ioengine = IOENGINE_ALIASES[engText];
  if (ioengine === undefined) bad("ioengine", engText, IOENGINE_ALLOWED);

  let cpusAllowed: number[] | undefined;
  const cpuText = str(raw, "cpus_allowed");
  if (cpuText !== undefined) {
    try {
      cpusAllowed = parseCpuList(cpuText, ncpus);
    } catch (e) {
      bad(
        "cpus_allowed",
        cpuText,
        `CPU numbers and ranges 0-${ncpus - 1}, e.g. 0-1,3 (${(e as Error).message})`,
      );
    }
  }

  const fmt = str(raw, "output-format") ?? "normal";
  if (!(OUTPUT_FORMATS as readonly string[]).includes(fmt))
    bad("output-format", fmt, OUTPUT_FORMATS.join(", "));

  let percentiles = DEFAULT_PERCENTILES;
  const pl = str(raw, "percentile_list");
  if (pl !== undefined) {
    try {
      percentiles = parsePercentiles(pl);
    } catch (e) {
      bad(
        "percentile_list",
        pl,
        `up to ${MAX_PERCENTILES} numbers in (0, 100] separated by ':', e.g. 1:5:50:99:99.9 (${(e as Error).message})`,
      );
    }
  }

  const verifyText = str(raw, "verify");
  let verify: "crc32c" | undefined;
  if (verifyText !== undefined) {
    if (verifyText === "crc32c") verify = "crc32c";
    else if (verifyText === "0" || verifyText === "none") verify = undefined;
    else bad("verify", verifyText, "crc32c, none");
  }
  if (verify !== undefined && ioengine === "null")
    throw new OptionError(
      "verify",
      "--verify: the null engine stores nothing, so there is nothing to verify; allowed: --ioengine=memory, threads, io_uring, libaio or auto",
    );
  if (verify !== undefined && bs < 512)
    throw new OptionError("verify", "--verify: needs --bs >= 512 (each block carries a 32-byte header)");

  const numberIosText = str(raw, "number_ios");
  const numberIos =
    numberIosText === undefined
      ? undefined
      : intOpt(raw, "number_ios", 0, 1, Number.MAX_SAFE_INTEGER, "a positive integer");
  const seed = intOpt(raw, "seed", 137, 0, 0xffff_ffff, "an integer from 0 to 4294967295");

  const numQueues = intOpt(raw, "num-queues", numjobs, 1, 1024);
  if (numQueues < numjobs)
    throw new OptionError(
      "num-queues",
      `--num-queues: ${numQueues} is less than --numjobs=${numjobs}; allowed: an integer >= numjobs (each job drives its own queue, job i uses queue i)`,
    );

  const needDescs = iodepth * DESCS_PER_REQUEST;
  const qsText = str(raw, "queue-size");
  let queueSize: number;
  if (qsText === undefined) {
    queueSize = Math.max(256, nextPow2(needDescs));
  } else {
    queueSize = intOpt(raw, "queue-size", 256, 4, MAX_QUEUE_SIZE, "a power of two from 4 to 1024");
    if ((queueSize & (queueSize - 1)) !== 0) bad("queue-size", qsText, "a power of two from 4 to 1024");
    if (queueSize < needDescs)
      throw new OptionError(
        "iodepth",
        `--iodepth: ${iodepth} needs ${needDescs} descriptors (3 per request) but --queue-size is ${queueSize}; allowed: iodepth <= ${Math.floor(queueSize / DESCS_PER_REQUEST)}, or a larger --queue-size`,
      );
  }

  if (bs * iodepth * numjobs > MAX_DATA_BYTES)
    throw new OptionError(
      "bs",
      `--bs: bs x iodepth x numjobs = ${formatSize(bs * iodepth * numjobs)} of data buffers exceeds 1G of guest memory; allowed: a smaller --bs, --iodepth or --numjobs`,
    );

  const itText = str(raw, "iothreads");
  const mapText = str(raw, "iothread-vq-mapping");
  let iothreads: number | undefined;
  let iothreadVqMapping: VqMappingEntry[] | undefined;
  if (itText !== undefined) iothreads = intOpt(raw, "iothreads", 1, 1, 64);
  if (mapText !== undefined) {
    if (itText !== undefined)
      throw new OptionError(
        "iothread-vq-mapping",
        "--iothread-vq-mapping: cannot be combined with --iothreads; allowed: one of the two",
      );
    iothreadVqMapping = parseMapping(mapText);
  }

  const pollMaxNs = intOpt(raw, "poll-max-ns", 32768, 0, 1_000_000_000);
  const eventIdx = boolOpt(raw, "event-idx", true);
  const pollEngine = boolOpt(raw, "poll-engine", false);
  const waitText = str(raw, "iothread-wait") ?? "ring";
  if (waitText !== "ring" && waitText !== "epoll") bad("iothread-wait", waitText, "ring, epoll");
  const iothreadWait = waitText;
  const cpuPinText = str(raw, "iothread-cpus") ?? "auto";
  let iothreadCpus: "auto" | "none" | number[];
  if (cpuPinText === "auto" || cpuPinText === "none") iothreadCpus = cpuPinText;
  else {
    try {
      iothreadCpus = parseCpuList(cpuPinText, ncpus);
    } catch (e) {
      bad(
        "iothread-cpus",
        cpuPinText,
        `auto, none, or CPU numbers and ranges 0-${ncpus - 1}, e.g. 1 or 0-1 (${(e as Error).message})`,
      );
    }
  }
  const driverPollNs = intOpt(raw, "driver-poll-ns", 200_000, 0, 1_000_000_000);
  const driverPollMaxNs = intOpt(raw, "driver-poll-max-ns", 2_000_000, 0, 1_000_000_000);
  const iodepthBatchSubmit = intOpt(raw, "iodepth_batch_submit", 32, 0, 1024);
  const compareFio = boolOpt(raw, "compare-fio", false);
  const repeat = intOpt(raw, "repeat", 3, 1, 100);

  return {
    name,
    filename,
    directory,
    size,
    rw,
    rwmixread,
    bs,
    iodepth,
    numjobs,
    runtimeMs,
    timeBased,
    rampMs,
    warmupMs,
    direct,
    ioengine,
    ioengineGiven: engText,
    cpusAllowed,
    outputFormat: fmt as OutputFormat,
    percentiles,
    verify,
    numberIos,
    seed,
    numQueues,
    queueSize,
    iothreads,
    iothreadVqMapping,
    pollMaxNs,
    pollEngine,
    iothreadWait,
    iothreadCpus,
    eventIdx,
    driverPollNs,
    driverPollMaxNs,
    iodepthBatchSubmit,
    compareFio,
    repeat,
    given,
  };
}

const MAPPING_ALLOWED =
  'a JSON array of {"iothread": name, "vqs"?: [queue indexes]}, e.g. [{"iothread":"t0","vqs":[0]},{"iothread":"t1","vqs":[1]}]';

export function parseMapping(text: string): VqMappingEntry[] {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    return bad("iothread-vq-mapping", text, `${MAPPING_ALLOWED} (${(e as Error).message})`);
  }
  if (!Array.isArray(v) || v.length === 0) bad("iothread-vq-mapping", text, MAPPING_ALLOWED);
  const out: VqMappingEntry[] = [];
  for (const e of v as unknown[]) {
    if (typeof e !== "object" || e === null) bad("iothread-vq-mapping", text, MAPPING_ALLOWED);
    const o = e as Record<string, unknown>;
    if (typeof o.iothread !== "string" || o.iothread.length === 0)
      bad("iothread-vq-mapping", text, MAPPING_ALLOWED);
    const keys = Object.keys(o).filter((k) => k !== "iothread" && k !== "vqs");
    if (keys.length > 0) bad("iothread-vq-mapping", text, `${MAPPING_ALLOWED} (unknown key "${keys[0]}")`);
    if (o.vqs !== undefined) {
      if (!Array.isArray(o.vqs) || !o.vqs.every((q) => Number.isInteger(q) && (q as number) >= 0))
        bad("iothread-vq-mapping", text, `${MAPPING_ALLOWED} (vqs must be non-negative integers)`);
      out.push({ iothread: o.iothread, vqs: o.vqs as number[] });
    } else out.push({ iothread: o.iothread });
  }
  return out;
}

/** The fio command-line options equivalent to a vblk job (for --compare-fio). */
export function fioEngineFor(engine: string): string | undefined {
  switch (engine) {
    case "io_uring":
      return "io_uring";
    case "libaio":
    case "native":
      return "libaio";
    case "threads":
      return "psync";
    case "null":
      return "null";
    default:
      return undefined;
  }
}

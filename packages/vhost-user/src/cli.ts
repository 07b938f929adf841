#!/usr/bin/env node
/**
 * vblk: command line of the vblk virtio-blk device.
 *
 *   vblk serve --socket PATH --image FILE [options]
 *     serve FILE to a vhost-user front-end (QEMU's vhost-user-blk-pci) on the
 *     Unix socket PATH until SIGTERM/SIGINT; then stop (in-flight I/O
 *     completes), print per-IOThread counters to stderr and write them to
 *     --stats-file as JSON.
 *
 * Exit codes: 0 stopped by a signal; 1 bad option or start-up failure.
 */
import { realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { ENGINE_NAMES, type EngineName, type IOThreadVirtqueueMapping } from "@vblk/iothread";
import { Command, InvalidArgumentError, Option } from "commander";
import { formatStats, type RunningServe, type ServeOptions, startServe, writeStatsFile } from "./serve.js";

function int(name: string, min: number, max = Number.MAX_SAFE_INTEGER) {
  return (v: string): number => {
    if (!/^\d+$/.test(v.trim())) throw new InvalidArgumentError(`${name} must be an integer`);
    const n = Number(v);
    if (n < min || n > max) throw new InvalidArgumentError(`${name} must be in ${min}..${max}`);
    return n;
  };
}

const SIZE_UNITS: Record<string, number> = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

function size(v: string): number {
  const m = /^\s*(\d+)\s*([kmgt]?)(i?b)?\s*$/i.exec(v);
  if (!m) throw new InvalidArgumentError("expected a size like 1073741824, 512M or 1G");
  return Number(m[1]) * SIZE_UNITS[m[2]!.toLowerCase()]!;
}

function mappingJson(v: string): IOThreadVirtqueueMapping[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(v);
  } catch (e) {
    throw new InvalidArgumentError(`not JSON: ${(e as Error).message}`);
  }
  if (!Array.isArray(parsed))
    throw new InvalidArgumentError(
      'expected a JSON list like [{"iothread":"a","vqs":[0,2]},{"iothread":"b","vqs":[1,3]}]',
    );
  return parsed as IOThreadVirtqueueMapping[];
}

function cpuMap(v: string): Record<string, number[]> | "auto" {
  // "auto" | "iothread0=0;iothread1=1,2"
  if (v.trim() === "auto") return "auto";
  const out: Record<string, number[]> = {};
  for (const part of v.split(";").filter((p) => p.trim() !== "")) {
    const [name, cpus] = part.split("=");
    if (!name || !cpus) throw new InvalidArgumentError('expected "auto" or "iothread0=0;iothread1=1,2"');
    out[name.trim()] = cpus.split(",").map((c) => int("cpu", 0, 4095)(c));
  }
  return out;
}

export interface CliIo {
  err: (s: string) => void;
  out: (s: string) => void;
  /** Install SIGTERM/SIGINT handlers and exit the process at the end (default true). */
  process: boolean;
}

/** Run the CLI; resolves with the running server (serve) or undefined. */
export async function main(argv: string[], io: CliIo = defaultIo()): Promise<RunningServe | undefined> {
  const program = new Command("vblk")
    .description("vblk: a virtio-blk device with QEMU-style IOThread virtqueue mapping")
    .exitOverride()
    .configureOutput({ writeOut: io.out, writeErr: io.err });
  let running: RunningServe | undefined;
  program
    .command("serve")
    .description(
      "serve a disk image over vhost-user-blk (QEMU: -chardev socket,id=c0,path=PATH -device vhost-user-blk-pci,chardev=c0)",
    )
    .requiredOption("--socket <path>", "Unix socket to listen on (a stale socket file is replaced)")
    .option("--image <file>", "raw image file or block device (required unless --engine null/memory)")
    .option("--size <bytes>", "disk size for --engine null/memory (e.g. 1G)", size)
    .option(
      "--num-queues <n>",
      "virtqueues offered (QEMU's num-queues must not exceed it)",
      int("--num-queues", 1, 1024),
      1,
    )
    .option(
      "--queue-size <n>",
      "largest ring size accepted (power of two, 4..1024)",
      int("--queue-size", 4, 1024),
      256,
    )
    .option("--iothreads <n>", "round-robin the queues over n IOThreads", int("--iothreads", 1, 1024))
    .option("--iothread-vq-mapping <json>", "QEMU's iothread-vq-mapping, as JSON", mappingJson)
    .addOption(
      new Option("--engine <engine>", "I/O engine (threads cannot serve vhost-user)")
        .choices([...ENGINE_NAMES])
        .default("auto"),
    )
    .addOption(
      new Option("--cache <mode>", "none = O_DIRECT, writeback = page cache")
        .choices(["none", "writeback"])
        .default("none"),
    )
    .option("--readonly", "export read-only (VIRTIO_BLK_F_RO)", false)
    .option("--serial <s>", "GET_ID answer, at most 20 bytes", "vblk")
    .option("--poll-max-ns <ns>", "IOThread adaptive polling cap (0 disables)", int("--poll-max-ns", 0))
    .option(
      "--iothread-cpus <map>",
      'pin IOThreads, e.g. "iothread0=0;iothread1=1", or "auto": on the CPUs that take the image\'s disk interrupts',
      cpuMap,
    )
    .option("--stats-file <file>", "write per-IOThread and per-queue counters here as JSON at exit")
    .option("--debug", "log every vhost-user message", false)
    .option("--print-capabilities", "print the vhost-user back-end capabilities as JSON and exit", false)
    .action(async (o: Record<string, unknown>) => {
      if (o.printCapabilities) {
        io.out(`${JSON.stringify({ type: "block", features: ["blk-file", "read-only"] })}\n`);
        return;
      }
      if (o.serial !== undefined && Buffer.byteLength(String(o.serial)) > 20)
        throw new InvalidArgumentError("--serial is at most 20 bytes");
      const log = (m: string) => io.err(`[vblk serve] ${m}\n`);
      const opts: ServeOptions = {
        socket: String(o.socket),
        ...(o.image !== undefined ? { image: String(o.image) } : {}),
        ...(o.size !== undefined ? { sizeBytes: o.size as number } : {}),
        numQueues: o.numQueues as number,
        queueSize: o.queueSize as number,
        ...(o.iothreads !== undefined ? { iothreads: o.iothreads as number } : {}),
        ...(o.iothreadVqMapping !== undefined
          ? { iothreadVqMapping: o.iothreadVqMapping as IOThreadVirtqueueMapping[] }
          : {}),
        engine: o.engine as EngineName,
        cache: o.cache as "none" | "writeback",
        readOnly: o.readonly === true,
        serial: String(o.serial),
        ...(o.pollMaxNs !== undefined ? { pollMaxNs: o.pollMaxNs as number } : {}),
        ...(o.iothreadCpus !== undefined
          ? { iothreadCpus: o.iothreadCpus as Record<string, number[]> | "auto" }
          : {}),
        debug: o.debug === true,
        log,
      };
      running = await startServe(opts);
      const r = running;
      log(
        `serving ${opts.image ?? `${opts.engine} disk`} (${r.device.capacityBytes} bytes${opts.readOnly ? ", read-only" : ""}) on ${opts.socket}: engine ${r.device.engineName}, ${r.device.numQueues} queue(s) of up to ${r.device.queueMaxSize}`,
      );
      for (const line of r.device.describeMapping().split("\n")) log(line);
      if (io.process) installSignals(r, o.statsFile as string | undefined, io);
    });
  try {
    await program.parseAsync(argv, { from: "user" });
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === "commander.helpDisplayed" || code === "commander.help" || code === "commander.version")
      return;
    if (code?.startsWith("commander.")) throw new CliError((e as Error).message, 1);
    throw new CliError(`vblk serve: ${(e as Error).message}`, 1);
  }
  return running;
}

export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

function installSignals(r: RunningServe, statsFile: string | undefined, io: CliIo): void {
  let stopping = false;
  const finish = (code: number, why: string) => {
    const s = r.stats();
    io.err(formatStats(s));
    io.err(`VBLK-STATS ${JSON.stringify(s)}\n`);
    if (statsFile) {
      try {
        writeStatsFile(statsFile, s);
      } catch (e) {
        io.err(`[vblk serve] cannot write ${statsFile}: ${(e as Error).message}\n`);
      }
    }
    io.err(`[vblk serve] ${why}\n`);
    process.exit(code);
  };
  const onSignal = (sig: NodeJS.Signals) => {
    if (stopping) {
      finish(1, `${sig} again: exiting without waiting`);
      return;
    }
    stopping = true;
    io.err(`[vblk serve] ${sig}: stopping (in-flight requests complete first)\n`);
    // QEMU's management conventions: SIGKILL follows after a few seconds.
    const guard = setTimeout(() => finish(1, "stop took over 4 s: exiting"), 4000);
    r.stop().then(
      () => {
        clearTimeout(guard);
        finish(0, "stopped");
      },
      (e: Error) => {
        clearTimeout(guard);
        finish(1, `stop failed: ${e.message}`);
      },
    );
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
}

function defaultIo(): CliIo {
  return {
    err: (s) => process.stderr.write(s),
    out: (s) => process.stdout.write(s),
    process: true,
  };
}

function isEntry(): boolean {
  const a = process.argv[1];
  if (!a) return false;
  try {
    return realpathSync(a) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntry()) {
  let args = process.argv.slice(2);
  if (args[0] === "--") args = args.slice(1); // `pnpm run serve -- ...`
  if (args.length > 1 && args[0] === "serve" && args[1] === "--") args = ["serve", ...args.slice(2)];
  main(args).then(
    () => {
      // Serving keeps the event loop alive; anything else ends once output is flushed.
    },
    (e: Error) => {
      process.stderr.write(`${e.message}\n`);
      process.exitCode = e instanceof CliError ? e.exitCode : 1;
    },
  );
}

/**
 * `vblk serve` without the command line: build the device (IOThreads that
 * sleep in epoll on the front-end's kick eventfds), listen, and report
 * per-IOThread / per-queue counters when the server stops.
 */
import { writeFileSync } from "node:fs";
import { irqAutoPlacement, nativeAvailable, nativeLoadError, probeEngines } from "@vblk/backend-libaio";
import { GuestMemory } from "@vblk/core";
import {
  assertEngineName,
  type EngineName,
  type IOThreadVirtqueueMapping,
  type IoThreadCounters,
  type QueueCounters,
  VirtioBlkDevice,
} from "@vblk/iothread";
import { VhostUserBlkServer } from "./server.js";

export interface ServeOptions {
  socket: string;
  /** Image file or block device (file engines). */
  image?: string;
  /** Disk size for the null and memory engines (bytes). */
  sizeBytes?: number;
  numQueues?: number;
  queueSize?: number;
  iothreads?: number;
  iothreadVqMapping?: IOThreadVirtqueueMapping[];
  engine?: EngineName;
  readOnly?: boolean;
  serial?: string;
  pollMaxNs?: number;
  cache?: "none" | "writeback";
  /**
   * Pin IOThreads: a CPU list per IOThread name, or "auto": every IOThread on
   * the CPUs that take the image's disk interrupts (they sleep until a
   * completion wakes them there; docs/BENCHMARKS.md, "Polling and the disk's
   * IRQ"), unpinned when those are not a subset of the CPUs.
   */
  iothreadCpus?: Record<string, number[]> | "auto";
  debug?: boolean;
  log?: (msg: string) => void;
}

/** What `vblk serve` prints / writes (--stats-file) when it stops. */
export interface ServeStats {
  engine: string;
  socket: string;
  numQueues: number;
  queueSize: number;
  mapping: { iothread: string; vqs: number[] }[];
  connections: number;
  /** Connections closed on a protocol error. */
  errors: number;
  /** Per IOThread: its loop counters plus the sums of its queues' counters. */
  iothreads: (IoThreadCounters &
    Pick<
      QueueCounters,
      | "requests"
      | "reads"
      | "writes"
      | "flushes"
      | "others"
      | "bytesRead"
      | "bytesWritten"
      | "interrupts"
      | "kicks"
    >)[];
  queues: QueueCounters[];
}

export const THREADS_ENGINE_REFUSED =
  'engine "threads" cannot serve vhost-user: the front-end kicks queues through eventfds, so IOThreads must sleep in epoll (useEventfd), and the threads engine completes on an Atomics doorbell instead. Use --engine io_uring, native (libaio), null or memory (or auto with the native addon built)';

/** Pick and check the engine before spawning anything, with messages a user can act on. */
export function checkServeEngine(engine: EngineName, image: string | undefined): void {
  assertEngineName(engine);
  if (engine === "threads") throw new Error(THREADS_ENGINE_REFUSED);
  if (!nativeAvailable())
    throw new Error(
      `vhost-user needs the native addon (unix sockets with fd passing, epoll): ${nativeLoadError()}`,
    );
  if (engine === "null" || engine === "memory") return;
  if (image === undefined) throw new Error(`--image is required with engine "${engine}"`);
  if (engine === "auto") {
    const p = probeEngines();
    if (p.io_uring !== true && p.libaio !== true)
      throw new Error(
        `engine auto: neither io_uring (${p.io_uring}) nor libaio (${p.libaio}) works here, and the threads engine cannot serve vhost-user`,
      );
  }
}

/** What --iothread-cpus=auto resolves to for this image: the CPUs, and a line for the log. */
export function autoIothreadCpus(
  engine: EngineName,
  image: string | undefined,
): { cpus: number[] | undefined; note: string } {
  if (engine === "null" || engine === "memory" || image === undefined)
    return { cpus: undefined, note: "IOThreads unpinned (auto: no disk)" };
  const { irq, note } = irqAutoPlacement(image);
  return { cpus: irq?.cpus, note };
}

export async function createServeDevice(o: ServeOptions): Promise<VirtioBlkDevice> {
  const engine = o.engine ?? "auto";
  checkServeEngine(engine, o.image);
  let pin: Record<string, number[]> | number[] | undefined;
  if (o.iothreadCpus === "auto") {
    const a = autoIothreadCpus(engine, o.image);
    pin = a.cpus;
    o.log?.(a.note);
  } else pin = o.iothreadCpus;
  return VirtioBlkDevice.create({
    // Placeholder: the front-end's memory replaces it (SET_MEM_TABLE) before any queue starts.
    memory: new GuestMemory([{ gpa: 0, size: 4096, buffer: new SharedArrayBuffer(4096) }]),
    numQueues: o.numQueues ?? 1,
    queueSize: o.queueSize ?? 256,
    ...(o.iothreads !== undefined ? { iothreads: o.iothreads } : {}),
    ...(o.iothreadVqMapping !== undefined ? { iothreadVqMapping: o.iothreadVqMapping } : {}),
    engine,
    ...(o.image !== undefined ? { path: o.image } : {}),
    ...(o.sizeBytes !== undefined ? { sizeBytes: o.sizeBytes } : {}),
    readOnly: o.readOnly ?? false,
    serial: o.serial ?? "vblk",
    ...(o.pollMaxNs !== undefined ? { pollMaxNs: o.pollMaxNs } : {}),
    ...(o.cache !== undefined ? { cache: o.cache } : {}),
    ...(pin !== undefined ? { iothreadCpus: pin } : {}),
    useEventfd: true,
  });
}

export interface RunningServe {
  server: VhostUserBlkServer;
  device: VirtioBlkDevice;
  /** Counters so far. */
  stats(): ServeStats;
  /** Stop serving (in-flight I/O completes), close the device; returns the final counters. */
  stop(): Promise<ServeStats>;
}

export async function startServe(o: ServeOptions): Promise<RunningServe> {
  const device = await createServeDevice(o);
  let server: VhostUserBlkServer;
  try {
    server = VhostUserBlkServer.listen({
      socketPath: o.socket,
      device,
      ...(o.log ? { log: o.log } : {}),
      ...(o.debug ? { debug: true } : {}),
    });
  } catch (e) {
    await device.close();
    throw e;
  }
  const stats = () => collectStats(device, server, o);
  let stopping: Promise<ServeStats> | null = null;
  return {
    server,
    device,
    stats,
    stop() {
      stopping ??= (async () => {
        await server.close();
        const s = stats();
        await device.close();
        return s;
      })();
      return stopping;
    },
  };
}

export function collectStats(
  device: VirtioBlkDevice,
  server: VhostUserBlkServer,
  o: ServeOptions,
): ServeStats {
  const c = device.counters();
  const m = device.mapping;
  return {
    engine: device.engineName,
    socket: o.socket,
    numQueues: device.numQueues,
    queueSize: device.queueMaxSize,
    mapping: m.iothreads.map((name, i) => ({ iothread: name, vqs: [...(m.iothreadQueues[i] ?? [])] })),
    connections: server.stats.connections,
    errors: server.stats.errors,
    iothreads: c.iothreads.map((t) => {
      const qs = c.queues.filter((q) => q.iothread === t.name);
      const sum = (k: keyof QueueCounters) => qs.reduce((a, q) => a + (q[k] as number), 0);
      return {
        ...t,
        requests: sum("requests"),
        reads: sum("reads"),
        writes: sum("writes"),
        flushes: sum("flushes"),
        others: sum("others"),
        bytesRead: sum("bytesRead"),
        bytesWritten: sum("bytesWritten"),
        interrupts: sum("interrupts"),
        kicks: sum("kicks"),
      };
    }),
    queues: c.queues,
  };
}

/** A small table of the counters, for humans (stderr at exit). */
export function formatStats(s: ServeStats): string {
  const lines = [
    `vblk serve: ${s.connections} connection(s), ${s.errors} closed on errors; engine ${s.engine}`,
    "iothread     vqs        requests      reads     writes    flushes   busy ms  wakeups  poll hits",
  ];
  for (const t of s.iothreads) {
    lines.push(
      `${t.name.padEnd(12)} ${t.queues.join(",").padEnd(10)} ${String(t.requests).padStart(8)} ${String(t.reads).padStart(10)} ${String(t.writes).padStart(10)} ${String(t.flushes).padStart(10)} ${(t.busyNs / 1e6).toFixed(0).padStart(9)} ${String(t.wakeups).padStart(8)} ${String(t.pollHits).padStart(10)}`,
    );
  }
  lines.push("vq  iothread     requests  batches  interrupts  kicks");
  for (const q of s.queues)
    lines.push(
      `${String(q.queue).padStart(2)}  ${q.iothread.padEnd(12)} ${String(q.requests).padStart(8)} ${String(q.batches).padStart(8)} ${String(q.interrupts).padStart(11)} ${String(q.kicks).padStart(6)}`,
    );
  return `${lines.join("\n")}\n`;
}

export function writeStatsFile(path: string, s: ServeStats): void {
  writeFileSync(path, `${JSON.stringify(s, null, 2)}\n`);
}

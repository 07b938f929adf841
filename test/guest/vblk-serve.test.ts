// Real-guest tests of `vblk serve` (packages/vhost-user) as QEMU's vhost-user-blk
// back-end: the standard checks (info, fs, fio-verify with 2 jobs, flush-discard),
// then num-queues=4 over 2 IOThreads with the server's counters, the write cache
// flushes and discards as counted by the server, and a read-only export.
// Needs the workspace built (packages/vhost-user/dist/cli.js).
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  createImage,
  type GuestRunOptions,
  imageDir,
  runGuest,
  sectionJson,
  type VhostUserContext,
  type VhostUserServer,
} from "./guest.mjs";
import { availability, checkFioVerifyImage, defineGuestSuite } from "./suite.js";

const ROOT = new URL("../..", import.meta.url).pathname;
const CLI = join(ROOT, "packages/vhost-user/dist/cli.js");
const skipReason = existsSync(CLI)
  ? undefined
  : `${CLI} not built (npx tsc -b tsconfig.build.json, or pnpm run build)`;
const MiB = 1024 * 1024;

/** `vblk serve` as the harness's vhost-user server command. */
function vblk(extra: string[] = []): VhostUserServer {
  return {
    command: (c: VhostUserContext) => [
      process.execPath,
      CLI,
      "serve",
      ...["--socket", c.socket, "--image", c.image],
      ...["--num-queues", String(c.numQueues), "--queue-size", String(c.queueSize), "--serial", c.serial],
      ...(c.readonly ? ["--readonly"] : []),
      ...extra,
    ],
  };
}

// The standard checks, like every other backend.
defineGuestSuite({
  backend: "vhost-user",
  name: "guest vblk serve q2",
  numQueues: 2,
  vhostUser: vblk(),
  expectSerial: "vblk-guest",
  expectWriteCache: "write back",
  expectFeatures: ["MQ", "FLUSH", "CONFIG_WCE", "DISCARD", "WRITE_ZEROES", "EVENT_IDX", "INDIRECT_DESC"],
  ...(skipReason ? { skipReason } : {}),
});

const skip = skipReason !== undefined || !availability.ok;

interface Stats {
  engine: string;
  connections: number;
  errors: number;
  mapping: { iothread: string; vqs: number[] }[];
  iothreads: {
    name: string;
    queues: number[];
    requests: number;
    busyNs: number;
    flushes: number;
    others: number;
  }[];
  queues: { queue: number; iothread: string; requests: number; flushes: number; others: number }[];
}

/** Boot a guest against `vblk serve` with a --stats-file; returns the run and the server's counters. */
async function withStats(
  sizeMiB: number,
  fill: "sparse" | "zero",
  extra: string[],
  opts: Partial<GuestRunOptions>,
  check: (r: Awaited<ReturnType<typeof runGuest>>, stats: Stats, image: string) => void,
): Promise<void> {
  if (!availability.ok) throw new Error(availability.reason);
  const dir = imageDir();
  const statsDir = mkdtempSync(join(dir, "stats-"));
  const statsFile = join(statsDir, "stats.json");
  try {
    const image = createImage(join(dir, "disk.img"), sizeMiB * MiB, fill);
    const r = await runGuest({
      backend: "vhost-user",
      image,
      assets: availability.assets,
      vhostUser: vblk([...extra, "--stats-file", statsFile]),
      ...opts,
    });
    if (!r.ok)
      throw new Error(
        `guest run failed: ${r.error ?? `exit ${r.exitCode}`}; logs ${r.logDir}\n${Object.entries(r.sections)
          .map(([k, v]) => `--- ${k}\n${v.text.slice(0, 1500)}`)
          .join("\n")}`,
      );
    expect(existsSync(statsFile), `vblk serve wrote no stats (see ${r.backendLog})`).toBe(true);
    const stats = JSON.parse(readFileSync(statsFile, "utf8")) as Stats;
    console.info(
      `[vblk serve] ${r.accel}, ${r.durationMs} ms; per IOThread: ${stats.iothreads
        .map((t) => `${t.name} vqs ${t.queues} requests ${t.requests} busy ${(t.busyNs / 1e6).toFixed(0)} ms`)
        .join("; ")}; per vq: ${stats.queues.map((q) => `${q.queue}:${q.requests}`).join(" ")}`,
    );
    expect(stats.connections).toBe(1);
    expect(stats.errors).toBe(0);
    check(r, stats, image);
  } finally {
    if (process.env.VBLK_GUEST_KEEP !== "1") rmSync(dir, { recursive: true, force: true });
  }
}

// fio-verify.sh with 4 jobs, each pinned to its own vCPU (so each submits on its own
// virtqueue: blk-mq maps one hardware queue per CPU), after the info workload.
const Q4_SCRIPT = `
sh /workload/info.sh || exit 1
. /workload/lib.sh
engine=$(fio_engine)
size=$(blockdev --getsize64 "$DEV")
slice=$((size / 4 / 4096 * 4096))
fio --name=verify --filename="$DEV" --direct=1 --ioengine="$engine" --rw=randwrite --bs=4k \\
  --iodepth=16 --numjobs=4 --size="$slice" --offset_increment="$slice" \\
  --cpus_allowed=0-3 --cpus_allowed_policy=split \\
  --verify=crc32c --do_verify=1 --verify_fatal=1 --verify_dump=0 \\
  --output-format=json --output=/tmp/fio.json >/tmp/fio.log 2>&1
rc=$?
[ $rc = 0 ] || cat /tmp/fio.log
result fio /tmp/fio.json
exit $rc
`;

describe("guest vblk serve: IOThreads, counters, read-only", () => {
  it.skipIf(skip)(
    "num-queues=4 on 4 vCPUs over 2 IOThreads: the guest uses 4 queues, fio verifies 4 jobs, both IOThreads busy",
    async () => {
      await withStats(
        64,
        "zero",
        ["--iothread-vq-mapping", '[{"iothread":"io-a","vqs":[0,2]},{"iothread":"io-b","vqs":[1,3]}]'],
        { numQueues: 4, smp: 4, script: Q4_SCRIPT, timeoutMs: 280_000 },
        (r, stats, image) => {
          const info = sectionJson(r, "info");
          expect(info.queues).toBe(4);
          const fio = sectionJson(r, "fio");
          expect(fio.jobs).toHaveLength(4);
          let written = 0;
          for (const j of fio.jobs) {
            expect(j.error).toBe(0);
            written += j.write.io_bytes;
          }
          expect(written).toBe(64 * MiB);
          expect(checkFioVerifyImage(image, 64 * MiB)).toEqual({ bad: 0, firstBad: [] });
          expect(stats.mapping).toEqual([
            { iothread: "io-a", vqs: [0, 2] },
            { iothread: "io-b", vqs: [1, 3] },
          ]);
          // 64 MiB written and read back in 4 KiB blocks: 32768 requests in all
          const total = stats.iothreads.reduce((a, t) => a + t.requests, 0);
          expect(total).toBeGreaterThanOrEqual(32768);
          for (const t of stats.iothreads) {
            expect(t.requests, `${t.name} served`).toBeGreaterThan(total / 8);
            expect(t.busyNs).toBeGreaterThan(0);
          }
          for (const q of stats.queues) expect(q.requests, `vq ${q.queue} served`).toBeGreaterThan(0);
        },
      );
    },
    300_000,
  );

  it.skipIf(skip)(
    "flushes, discards and write-zeroes reach vblk (server counters) and the image",
    async () => {
      await withStats(64, "zero", [], { workload: "flush-discard" }, (r, stats, image) => {
        const fd = sectionJson(r, "flush-discard");
        expect(fd).toMatchObject({ write: 0, fsync: 0, discard: 0, zeroout: 0 });
        const flushes = stats.queues.reduce((a, q) => a + q.flushes, 0);
        const others = stats.queues.reduce((a, q) => a + q.others, 0);
        expect(flushes, "FLUSH requests seen by vblk").toBeGreaterThan(0);
        expect(others, "DISCARD + WRITE_ZEROES (+ GET_ID) requests seen by vblk").toBeGreaterThanOrEqual(2);
        // the discarded and zeroed regions read back as zeros from the image
        const buf = readFileSync(image);
        const [dOff, dLen] = fd.regions.d as [number, number];
        const [zOff, zLen] = fd.regions.z as [number, number];
        expect(buf.subarray(dOff, dOff + dLen).every((b) => b === 0)).toBe(true);
        expect(buf.subarray(zOff, zOff + zLen).every((b) => b === 0)).toBe(true);
        const [kOff] = fd.regions.k as [number, number];
        expect(buf.subarray(kOff, kOff + 16).toString()).toBe("VBLKPATTERN-0123");
      });
    },
    300_000,
  );

  it.skipIf(skip)(
    "--readonly: the guest sees ro=1 and RO, a write fails, the image is untouched",
    async () => {
      const script = `
sh /workload/info.sh || exit 1
dd if=/dev/urandom of=/dev/vda bs=4096 count=1 oflag=direct conv=notrunc 2>/tmp/dd.err; rc=$?
echo "{\\"ddRc\\": $rc}" | (. /workload/lib.sh; result ro-write)
exit 0
`;
      await withStats(16, "zero", [], { readonly: true, numQueues: 1, script }, (r, _stats, image) => {
        const info = sectionJson(r, "info");
        expect(info.ro).toBe(1);
        expect(info.queues).toBe(1);
        expect(sectionJson(r, "ro-write").ddRc).not.toBe(0);
        expect(readFileSync(image).every((b) => b === 0)).toBe(true);
      });
    },
    300_000,
  );
});

// One `vblk serve` process outliving two QEMUs (what a VM restart looks like to the
// back-end): the harness starts a stand-in "server" that only links its socket path to
// the long-lived server's socket, so each guest's QEMU connects to the same process.
const WRITE_SCRIPT = `
. /workload/lib.sh
dd if=/dev/urandom of=/tmp/blob bs=1M count=2 2>/dev/null
dd if=/tmp/blob of="$DEV" bs=1M seek=4 count=2 oflag=direct conv=notrunc,fsync 2>/dev/null; rc=$?
echo "{\\"rc\\": $rc, \\"md5\\": \\"$(md5sum </tmp/blob | cut -d' ' -f1)\\"}" | result blob
exit $rc
`;
const READ_SCRIPT = `
. /workload/lib.sh
echo "{\\"md5\\": \\"$(md5_range 4194304 2097152)\\"}" | result blob
`;

describe("guest vblk serve: one server, two QEMUs", () => {
  it.skipIf(skip)(
    "QEMU exits and a new one connects: the same vblk serve process serves both; data written by the first is read by the second",
    async () => {
      if (!availability.ok) throw new Error(availability.reason);
      const assets = availability.assets;
      const dir = imageDir();
      const image = createImage(join(dir, "disk.img"), 32 * MiB, "zero");
      const socket = join(dir, "vblk.sock");
      const server = spawn(
        process.execPath,
        [CLI, "serve", "--socket", socket, "--image", image, "--num-queues", "2", "--iothreads", "2"],
        { stdio: ["ignore", "ignore", "pipe"] },
      );
      server.stderr!.setEncoding("utf8");
      let log = "";
      server.stderr!.on("data", (d: string) => {
        log += d;
      });
      const exited = new Promise<number | null>((r) => server.on("exit", (c) => r(c)));
      try {
        const t0 = Date.now();
        while (!existsSync(socket)) {
          if (Date.now() - t0 > 20_000) throw new Error(`vblk serve did not listen: ${log}`);
          await new Promise((r) => setTimeout(r, 50));
        }
        const link: VhostUserServer = {
          command: (c: VhostUserContext) => ["sh", "-c", `ln -s ${socket} ${c.socket} && exec sleep 600`],
        };
        const guest = (script: string) =>
          runGuest({ backend: "vhost-user", image, assets, vhostUser: link, script });
        const a = await guest(WRITE_SCRIPT);
        expect(a.ok, `first guest: ${a.error} (${a.logDir})`).toBe(true);
        const b = await guest(READ_SCRIPT);
        expect(b.ok, `second guest: ${b.error} (${b.logDir})`).toBe(true);
        const written = sectionJson(a, "blob");
        expect(written.rc).toBe(0);
        expect(sectionJson(b, "blob").md5).toBe(written.md5);
        const host = createHash("md5")
          .update(readFileSync(image).subarray(4 * MiB, 6 * MiB))
          .digest("hex");
        expect(host).toBe(written.md5);
        server.kill("SIGTERM");
        expect(await exited).toBe(0);
        const stats = JSON.parse(/VBLK-STATS (.*)/.exec(log)![1]!) as Stats;
        expect(stats.connections).toBe(2);
        expect(stats.errors).toBe(0);
        expect(log).toMatch(/connection 1: closed/);
        expect(log).toMatch(/connection 2: front-end connected/);
      } finally {
        if (server.exitCode === null) server.kill("SIGKILL");
        if (process.env.VBLK_GUEST_KEEP !== "1") rmSync(dir, { recursive: true, force: true });
      }
    },
    300_000,
  );
});

// The standard real-guest checks, parameterized by backend, for vitest files under
// test/guest/. One call registers a describe() with one test per workload:
//
//   defineGuestSuite({ backend: "qsd" });
//   defineGuestSuite({
//     backend: "vhost-user",
//     vhostUser: { command: ["node", "bench/dist/cli.js", "serve", "--socket", "{socket}",
//                            "--image", "{image}", "--num-queues", "{numQueues}"] },
//   });
//
// Each test makes its own small image in test/guest/cache/images, boots a guest, checks
// what the guest reports AND what the host then finds in the image.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { closeSync, openSync, readSync, rmSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  createImage,
  type GuestBackend,
  type GuestResult,
  type GuestRunOptions,
  guestAvailability,
  imageDir,
  runGuest,
  sectionJson,
  type VhostUserServer,
} from "./guest.mjs";

export type GuestCheck = "info" | "fs" | "fio-verify" | "flush-discard" | "readonly";
/** The default checks; "readonly" (the disk exported read-only) is opt-in. */
export const ALL_CHECKS: GuestCheck[] = ["info", "fs", "fio-verify", "flush-discard"];

export interface GuestSuiteOptions {
  backend: GuestBackend;
  /** describe() title (default: backend[+iothread] qN) */
  name?: string;
  /** default 2 */
  numQueues?: number;
  /** builtin only */
  iothread?: boolean;
  /** required for backend "vhost-user" */
  vhostUser?: VhostUserServer;
  /** which checks to register (default: ALL_CHECKS; add "readonly" to test a read-only export) */
  checks?: GuestCheck[];
  /** image size for info / fio-verify / flush-discard (default 64 MiB) */
  imageMiB?: number;
  /** image size for fs (default 128 MiB) */
  fsImageMiB?: number;
  /** expected /sys/block/vda/serial; builtin gets serial= from the harness (default "vblk-guest") */
  expectSerial?: string;
  /** discarded ranges read back as zeros in the guest and in the image (default true) */
  expectDiscardZeroes?: boolean;
  /** guest sees discard_max_bytes > 0 / write_zeroes_max_bytes > 0 (default true) */
  expectDiscard?: boolean;
  expectWriteZeroes?: boolean;
  /** expected /sys/block/vda/queue/write_cache: "write back" (FLUSH + wce=1) or "write through";
   * default "write back" for builtin, unchecked otherwise (qemu-storage-daemon 7.2 reports wce=0) */
  expectWriteCache?: "write back" | "write through";
  /** virtio feature names the guest must have negotiated, e.g. ["MQ", "EVENT_IDX", "FLUSH"] */
  expectFeatures?: string[];
  /** skip the whole suite with this reason (e.g. "bench/dist/cli.js not built") */
  skipReason?: string;
  /** per-test vitest timeout (default 300 000 ms) */
  testTimeoutMs?: number;
  /** extra runGuest options (accel, smp, aio, ...) */
  run?: Partial<GuestRunOptions>;
}

/** Guest availability, decided once per test file (builds the initramfs if needed). */
export const availability = await guestAvailability();
const REQUIRED = process.env.VBLK_GUEST_REQUIRED === "1";
let warned = false;

function skipReasonFor(opts: GuestSuiteOptions): string | null {
  if (opts.skipReason) return opts.skipReason;
  if (!availability.ok) return REQUIRED ? null : `real guest unavailable: ${availability.reason}`;
  return null;
}

const MiB = 1024 * 1024;

function withImage<T>(sizeMiB: number, fill: "sparse" | "zero", fn: (img: string) => Promise<T>): Promise<T> {
  const dir = imageDir();
  const img = createImage(join(dir, "disk.img"), sizeMiB * MiB, fill);
  return fn(img).finally(() => {
    if (process.env.VBLK_GUEST_KEEP !== "1") rmSync(dir, { recursive: true, force: true });
  });
}

function explain(r: GuestResult): string {
  const sec = Object.entries(r.sections)
    .map(([k, v]) => `--- ${k}\n${v.text.slice(0, 1500)}`)
    .join("\n");
  return `guest run failed: ${r.error ?? `workload exit ${r.exitCode}`}; accel ${r.accel}; logs ${r.logDir}\n${sec}`;
}

function expectOk(r: GuestResult): void {
  if (!r.ok) throw new Error(explain(r));
}

function readRange(img: string, off: number, len: number): Buffer {
  const fd = openSync(img, "r");
  try {
    const b = Buffer.alloc(len);
    let done = 0;
    while (done < len) {
      const n = readSync(fd, b, done, len - done, off + done);
      if (n === 0) break;
      done += n;
    }
    return b;
  } finally {
    closeSync(fd);
  }
}

const md5 = (b: Buffer | string) => createHash("md5").update(b).digest("hex");

/** Expected content of /known.txt written by the fs workload. */
export function knownText(): string {
  let s = "";
  for (let i = 1; i <= 2000; i++) s += `vblk known line ${i}\n`;
  return s;
}

/**
 * Host-side check of an image written by the fio-verify workload: every 4 KiB block
 * carries fio's verify header (magic 0xacca, len 4096, offset = the block's offset).
 * Returns the offsets of the blocks that do not (first 20) and their count.
 */
export function checkFioVerifyImage(img: string, sizeBytes: number): { bad: number; firstBad: number[] } {
  const firstBad: number[] = [];
  let bad = 0;
  const chunk = 4 * MiB;
  for (let off = 0; off < sizeBytes; off += chunk) {
    const b = readRange(img, off, Math.min(chunk, sizeBytes - off));
    for (let i = 0; i + 4096 <= b.length; i += 4096) {
      const magic = b.readUInt16LE(i);
      const len = b.readUInt32LE(i + 4);
      const hdrOff = Number(b.readBigUInt64LE(i + 16));
      if (magic !== 0xacca || len !== 4096 || hdrOff !== off + i) {
        bad++;
        if (firstBad.length < 20) firstBad.push(off + i);
      }
    }
  }
  return { bad, firstBad };
}

const PATTERN = Buffer.from("VBLKPATTERN-0123");

const FEATURE_NAMES: Record<number, string> = {
  0: "BARRIER",
  1: "SIZE_MAX",
  2: "SEG_MAX",
  4: "GEOMETRY",
  5: "RO",
  6: "BLK_SIZE",
  7: "SCSI",
  9: "FLUSH",
  10: "TOPOLOGY",
  11: "CONFIG_WCE",
  12: "MQ",
  13: "DISCARD",
  14: "WRITE_ZEROES",
  15: "LIFETIME",
  16: "SECURE_ERASE",
  17: "ZONED",
  24: "NOTIFY_ON_EMPTY",
  27: "ANY_LAYOUT",
  28: "INDIRECT_DESC",
  29: "EVENT_IDX",
  32: "VERSION_1",
  33: "ACCESS_PLATFORM",
  34: "RING_PACKED",
  35: "IN_ORDER",
  36: "ORDER_PLATFORM",
  37: "SR_IOV",
  38: "NOTIFICATION_DATA",
  39: "NOTIF_CONFIG_DATA",
  40: "RING_RESET",
};

/** Names of the bits set in /sys/bus/virtio/devices/virtioN/features (a '0'/'1' string, bit 0 first). */
export function decodeVirtioBlkFeatures(bits: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < bits.length; i++) if (bits[i] === "1") out.push(FEATURE_NAMES[i] ?? `bit${i}`);
  return out;
}

/**
 * Register the standard real-guest tests for one backend configuration.
 * @returns the describe() title
 */
export function defineGuestSuite(opts: GuestSuiteOptions): string {
  const q = opts.numQueues ?? 2;
  const title = opts.name ?? `guest ${opts.backend}${opts.iothread ? "+iothread" : ""} q${q}`;
  const checks = opts.checks ?? ALL_CHECKS;
  const skip = skipReasonFor(opts);
  if (skip && !warned && !opts.skipReason) {
    console.warn(`[test/guest] SKIPPING real-guest tests: ${skip}`);
    warned = true;
  } else if (opts.skipReason) console.warn(`[test/guest] SKIPPING ${title}: ${opts.skipReason}`);
  const timeout = opts.testTimeoutMs ?? 300_000;
  const imageMiB = opts.imageMiB ?? 64;
  const fsMiB = opts.fsImageMiB ?? 128;
  const expectSerial = opts.expectSerial ?? (opts.backend === "builtin" ? "vblk-guest" : undefined);
  const discardZeroes = opts.expectDiscardZeroes ?? true;

  const runOn = (
    image: string,
    workload: string,
    env: Record<string, string | number> = {},
    extra: Partial<GuestRunOptions> = {},
  ) => {
    if (!availability.ok) throw new Error(`real guest unavailable: ${availability.reason}`);
    return runGuest({
      backend: opts.backend,
      image,
      workload,
      env,
      numQueues: q,
      iothread: opts.iothread,
      vhostUser: opts.vhostUser,
      assets: availability.assets,
      ...opts.run,
      ...extra,
    });
  };

  describe(title, () => {
    if (checks.includes("info"))
      it.skipIf(!!skip)(
        "info: size, queues, serial, flags",
        async () => {
          await withImage(imageMiB, "sparse", async (img) => {
            const r = await runOn(img, "info");
            expectOk(r);
            const info = sectionJson(r, "info");
            console.info(`[${title}] info (${r.accel}, ${r.durationMs} ms):`, JSON.stringify(info));
            expect(info.sectors).toBe((imageMiB * MiB) / 512);
            expect(info.sizeBytes).toBe(imageMiB * MiB);
            // Linux's virtio_blk uses at most one queue per vCPU
            expect(info.queues).toBe(Math.min(q, opts.run?.smp ?? 2));
            expect(info.ro).toBe(0);
            expect(info.logicalBlockSize).toBe(512);
            if (expectSerial !== undefined) expect(info.serial).toBe(expectSerial);
            if (opts.expectDiscard ?? true) expect(info.discardMaxBytes).toBeGreaterThan(0);
            if (opts.expectWriteZeroes ?? true) expect(info.writeZeroesMaxBytes).toBeGreaterThan(0);
            const wc = opts.expectWriteCache ?? (opts.backend === "builtin" ? "write back" : undefined);
            if (wc !== undefined) expect(info.writeCache).toBe(wc);
            const features = decodeVirtioBlkFeatures(info.virtioFeatures);
            console.info(`[${title}] negotiated features: ${features.join(" ")}`);
            expect(features).toContain("VERSION_1");
            if (q > 1) expect(features).toContain("MQ");
            for (const f of opts.expectFeatures ?? []) expect(features).toContain(f);
          });
        },
        timeout,
      );

    if (checks.includes("fs"))
      it.skipIf(!!skip)(
        "fs: mkfs.ext4, write, sync, fsck clean, verify after remount; host sees the files",
        async () => {
          await withImage(fsMiB, "sparse", async (img) => {
            const r = await runOn(img, "fs");
            const fs = sectionJson(r, "fs");
            console.info(`[${title}] fs (${r.accel}, ${r.durationMs} ms):`, JSON.stringify(fs));
            expectOk(r);
            expect(fs).toMatchObject({ mkfs: 0, mount1: 0, write: 0, sync: 0, umount1: 0, fsck: 0 });
            expect(fs).toMatchObject({ mount2: 0, verify: 0, cmp: 0, umount2: 0 });
            expect(fs.files).toBe(52);
            // host: the image is a clean ext4 holding what the guest wrote
            const fsck = spawnSync("fsck.ext4", ["-f", "-n", img], { encoding: "utf8" });
            expect(fsck.status, fsck.stdout + fsck.stderr).toBe(0);
            const known = spawnSync("debugfs", ["-R", "cat /known.txt", img], {
              encoding: "buffer",
              maxBuffer: 64 * MiB,
            });
            expect(known.status).toBe(0);
            expect(known.stdout.toString()).toBe(knownText());
            expect(fs.knownMd5).toBe(md5(knownText()));
            const rand = spawnSync("debugfs", ["-R", "cat /rand.bin", img], {
              encoding: "buffer",
              maxBuffer: 64 * MiB,
            });
            expect(rand.status).toBe(0);
            expect(rand.stdout.length).toBe(fs.randMiB * MiB);
            expect(md5(rand.stdout)).toBe(fs.randMd5);
          });
        },
        timeout,
      );

    if (checks.includes("fio-verify"))
      it.skipIf(!!skip)(
        "fio-verify: random 4k writes over the whole disk by 2 jobs, crc32c verified; host sees every block",
        async () => {
          await withImage(imageMiB, "zero", async (img) => {
            const r = await runOn(img, "fio-verify", { NUMJOBS: 2, IODEPTH: 16 });
            const params = sectionJson(r, "params");
            const fio = sectionJson(r, "fio");
            console.info(`[${title}] fio-verify (${r.accel}, ${r.durationMs} ms):`, JSON.stringify(params));
            expectOk(r);
            expect(params.rc).toBe(0);
            expect(fio.jobs).toHaveLength(2);
            let written = 0;
            let verified = 0;
            for (const j of fio.jobs) {
              expect(j.error).toBe(0);
              written += j.write.io_bytes;
              verified += j.read.io_bytes;
            }
            expect(written).toBe(imageMiB * MiB);
            expect(verified).toBe(imageMiB * MiB);
            const host = checkFioVerifyImage(img, imageMiB * MiB);
            expect(host, `blocks without a valid fio header in ${img}`).toEqual({ bad: 0, firstBad: [] });
          });
        },
        timeout,
      );

    if (checks.includes("flush-discard"))
      it.skipIf(!!skip)(
        "flush-discard: pattern persists after fsync; discard and write-zeroes ranges read as zeros in guest and image",
        async () => {
          await withImage(imageMiB, "zero", async (img) => {
            const r = await runOn(img, "flush-discard");
            const fd = sectionJson(r, "flush-discard");
            console.info(`[${title}] flush-discard (${r.accel}, ${r.durationMs} ms):`, JSON.stringify(fd));
            expectOk(r);
            expect(fd).toMatchObject({ write: 0, fsync: 0, zeroout: 0 });
            expect(fd.before).toEqual(fd.patternMd5);
            expect(fd.after.k).toBe(fd.patternMd5.k);
            expect(fd.after.z).toBe(fd.zeroMd5.z);
            if (discardZeroes) {
              expect(fd.discard).toBe(0);
              expect(fd.after.d).toBe(fd.zeroMd5.d);
            }
            // host view of the image: zeros everywhere except the pattern in region K
            // (region D is left out when the backend is not expected to zero discards)
            const [kOff, kLen] = fd.regions.k as [number, number];
            const [dOff, dLen] = fd.regions.d as [number, number];
            const expected = Buffer.alloc(imageMiB * MiB);
            for (let i = 0; i < kLen; i += PATTERN.length) PATTERN.copy(expected, kOff + i);
            const actual = readRange(img, 0, imageMiB * MiB);
            if (!discardZeroes) actual.fill(0, dOff, dOff + dLen);
            if (!actual.equals(expected)) {
              let first = 0;
              while (first < actual.length && actual[first] === expected[first]) first++;
              throw new Error(`image differs from the expected content first at byte ${first} (${img})`);
            }
          });
        },
        timeout,
      );

    if (checks.includes("readonly"))
      it.skipIf(!!skip)(
        "readonly: the guest sees ro=1 and the RO feature, a write fails, the image is unchanged",
        async () => {
          const dir = imageDir();
          try {
            const img = createImage(join(dir, "ro.img"), imageMiB * MiB, "random");
            const before = md5(readRange(img, 0, imageMiB * MiB));
            const r = await runOn(img, "readonly", {}, { readonly: true });
            const ro = sectionJson(r, "readonly");
            console.info(`[${title}] readonly (${r.accel}, ${r.durationMs} ms):`, JSON.stringify(ro));
            expectOk(r);
            expect(ro.ro).toBe(1);
            expect(decodeVirtioBlkFeatures(ro.virtioFeatures)).toContain("RO");
            expect(ro.writeRc).not.toBe(0);
            expect(ro.after).toBe(ro.before);
            expect(ro.before).toBe(md5(readRange(img, 0, MiB)));
            expect(md5(readRange(img, 0, imageMiB * MiB))).toBe(before);
          } finally {
            if (process.env.VBLK_GUEST_KEEP !== "1") rmSync(dir, { recursive: true, force: true });
          }
        },
        timeout,
      );
  });
  return title;
}

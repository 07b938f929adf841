/**
 * IOThreads + the native engines (real io_uring / libaio on a real file,
 * O_DIRECT into page-aligned guest RAM) + driver threads, with verification.
 */
import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  allocGuestMemory,
  nativeAvailable,
  probeEngines,
  setProbeOverrideForTests,
} from "@vblk/backend-libaio";
import { GuestMemory } from "@vblk/core";
import { connectDriver, VirtioBlkDevice } from "@vblk/iothread";
import { afterAll, describe, expect, it } from "vitest";
import { runJobs } from "./helpers/jobs.js";

const MiB = 1 << 20;
const dir = mkdtempSync(join(tmpdir(), "vblk-native-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const haveNative = nativeAvailable();
const probe = haveNative ? probeEngines() : { io_uring: "addon not built", libaio: "addon not built" };
if (!haveNative) console.warn("SKIP native device tests: the native addon is not built");

function guestRam(bytes: number): GuestMemory {
  const { buffer } = allocGuestMemory(bytes);
  return new GuestMemory([{ gpa: 0, size: bytes, buffer }]);
}

for (const engine of ["io_uring", "libaio"] as const) {
  const ok = probe[engine] === true;
  if (haveNative && !ok) console.warn(`SKIP ${engine} device test: ${probe[engine]}`);
  describe.skipIf(!ok)(`device + ${engine} engine`, () => {
    it("10^5 random 4 KiB writes then reads over 2 queues / 2 IOThreads, every block verified, file matches", async () => {
      const path = join(dir, `${engine}.img`);
      writeFileSync(path, Buffer.alloc(64 * MiB));
      const memory = guestRam(64 * MiB);
      const device = await VirtioBlkDevice.create({
        memory,
        engine,
        path,
        numQueues: 2,
        iothreads: 2,
        cache: "none",
      });
      try {
        expect(device.engineName).toBe(engine);
        const per = 25_000; // x 2 queues x (write + read) = 10^5
        const spec = (
          conn: Awaited<ReturnType<typeof connectDriver>>,
          i: number,
          mode: "write" | "verify",
        ) => ({
          desc: conn.queues[i]!,
          dataGpa: conn.end + i * 8 * MiB,
          depth: 32,
          count: per,
          mode,
          firstSector: i * 32 * 2048, // each queue owns a 32 MiB half
          span: 8191, // 8191 blocks of 4 KiB, visited in a scattered order
          bs: 4096,
          tag: 17 + i,
          scatter: true,
        });
        let conn = await connectDriver(device);
        const w = await runJobs([spec(conn, 0, "write"), spec(conn, 1, "write")]);
        for (const r of w) {
          expect(r.completed).toBe(per);
          expect(r.errors).toBe(0);
        }
        conn = await connectDriver(device);
        const v = await runJobs([spec(conn, 0, "verify"), spec(conn, 1, "verify")]);
        for (const r of v) {
          expect(r.completed).toBe(per);
          expect(r.errors).toBe(0);
          expect(r.badData).toBe(0);
        }
        const c = device.counters();
        expect(c.queues.map((q) => q.requests)).toEqual([2 * per, 2 * per]);
        // Straight from the file, bypassing the device.
        const fd = openSync(path, "r");
        const buf = Buffer.alloc(4096);
        const k = 1234;
        const sector = 32 * 2048 + ((k * 7919) % 8191) * 8;
        readSync(fd, buf, 0, 4096, sector * 512);
        closeSync(fd);
        const w32 = new Uint32Array(buf.buffer, buf.byteOffset, 1024);
        expect(w32[3]).toBe((sector * 2654435761 + 3 * 40503 + 18) >>> 0);
      } finally {
        await device.close();
      }
    });
  });
}

describe.skipIf(!haveNative)("engine fallback chain", () => {
  it("auto picks io_uring when it works, libaio when io_uring is unavailable, threads when neither", async () => {
    const path = join(dir, "auto.img");
    writeFileSync(path, Buffer.alloc(4 * MiB));
    const memory = guestRam(4 * MiB);
    const pick = async () => {
      const d = await VirtioBlkDevice.create({ memory, engine: "auto", path });
      const name = d.engineName;
      await d.close();
      return name;
    };
    try {
      setProbeOverrideForTests({ io_uring: true, libaio: true });
      expect(await pick()).toBe("io_uring");
      setProbeOverrideForTests({ io_uring: "EPERM (forced by the test)", libaio: true });
      expect(await pick()).toBe("libaio");
      setProbeOverrideForTests({ io_uring: "EPERM (forced)", libaio: "EPERM (forced)" });
      expect(await pick()).toBe("threads");
      // Asking for io_uring explicitly when it is unavailable is an error that names it.
      await expect(VirtioBlkDevice.create({ memory, engine: "io_uring", path })).rejects.toThrow(
        /io_uring.*forced/,
      );
    } finally {
      setProbeOverrideForTests(undefined);
    }
  });
});

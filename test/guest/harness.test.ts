// Fast checks of the harness itself (no guest boot): serial parsing, feature decoding,
// the host-side fio header check, and how a broken vhost-user server is reported.
import { rmSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createImage, imageDir, parseSerial, runGuest } from "./guest.mjs";
import { availability, checkFioVerifyImage, decodeVirtioBlkFeatures } from "./suite.js";

const dirs: string[] = [];
/** A fresh image directory, removed after the test. */
function tmpDir(): string {
  const d = imageDir();
  dirs.push(d);
  return d;
}

describe("guest harness", () => {
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it("parses markers and result sections (JSON after warning lines, CRLF, kernel noise)", () => {
    const text = [
      "[    1.0] Run /init as init process",
      "VBLK-INIT-BEGIN 6.1.0 cpus=2",
      "VBLK-INIT-READY vda",
      "VBLK-WORKLOAD-BEGIN /workload/run.sh\r",
      "VBLK-RESULT-BEGIN params\r",
      '{"a": 1}\r',
      "\r",
      "VBLK-RESULT-END params\r",
      "VBLK-RESULT-BEGIN fio",
      "fio: multiple writers may overwrite blocks",
      '{"jobs": [{"error": 0}]}',
      "",
      "VBLK-RESULT-END fio",
      "VBLK-RESULT-BEGIN plain",
      "hello world",
      "VBLK-RESULT-END plain",
      "VBLK-EXIT 0",
      "[    9.0] reboot: Power down",
    ].join("\n");
    const p = parseSerial(text);
    expect(p.markers).toEqual({ init: true, ready: "vda", workload: true, exit: true });
    expect(p.exitCode).toBe(0);
    expect(p.errors).toEqual([]);
    expect(p.sections.params?.json).toEqual({ a: 1 });
    expect(p.sections.fio?.json).toEqual({ jobs: [{ error: 0 }] });
    expect(p.sections.plain).toEqual({ text: "hello world" });
  });

  it("reports an unclosed section, init errors and a missing exit", () => {
    const p = parseSerial("VBLK-INIT-BEGIN x\nVBLK-INIT-ERROR insmod virtio_blk\nVBLK-RESULT-BEGIN a\n{");
    expect(p.markers.exit).toBe(false);
    expect(p.exitCode).toBeNull();
    expect(p.errors).toEqual(["VBLK-INIT-ERROR insmod virtio_blk", "section a not closed"]);
  });

  it("decodes the virtio feature bit string from sysfs", () => {
    const bits = "0010101001111110000000000000110010000000100000000000000000000000";
    expect(decodeVirtioBlkFeatures(bits)).toEqual([
      "SEG_MAX",
      "GEOMETRY",
      "BLK_SIZE",
      "FLUSH",
      "TOPOLOGY",
      "CONFIG_WCE",
      "MQ",
      "DISCARD",
      "WRITE_ZEROES",
      "INDIRECT_DESC",
      "EVENT_IDX",
      "VERSION_1",
      "RING_RESET",
    ]);
  });

  it("checkFioVerifyImage finds blocks without a valid fio verify header", () => {
    const dir = tmpDir();
    const img = createImage(join(dir, "h.img"), 64 * 1024, "zero");
    const r = checkFioVerifyImage(img, 64 * 1024);
    expect(r.bad).toBe(16);
    expect(r.firstBad.slice(0, 2)).toEqual([0, 4096]);
  });

  it.skipIf(!availability.ok)(
    "a vhost-user server that exits at once is reported, not waited for",
    async () => {
      const dir = tmpDir();
      const img = createImage(join(dir, "v.img"), 1024 * 1024);
      const t0 = Date.now();
      const r = await runGuest({
        backend: "vhost-user",
        image: img,
        workload: "info",
        vhostUser: { command: ["sh", "-c", "echo no server here; exit 3"], socketTimeoutMs: 10_000 },
        accel: "tcg",
      });
      expect(r.ok).toBe(false);
      expect(r.error).toMatch(/exited \(code 3/);
      expect(Date.now() - t0).toBeLessThan(10_000);
    },
  );

  it.skipIf(!availability.ok)("a failing workload is reported with its exit status and dmesg", async () => {
    const dir = tmpDir();
    const img = createImage(join(dir, "f.img"), 1024 * 1024);
    const r = await runGuest({
      backend: "builtin",
      image: img,
      script: "echo VBLK-RESULT-BEGIN partial; echo some output; echo VBLK-RESULT-END partial; exit 3",
    });
    expect(r.ok).toBe(false);
    expect(r.exitCode).toBe(3);
    expect(r.error).toBeNull();
    expect(r.markers).toMatchObject({ init: true, ready: "vda", workload: true, exit: true });
    expect(r.sections.partial?.text).toBe("some output");
    expect(r.sections.dmesg?.text).toMatch(/virtio_blk/);
  });

  it.skipIf(!availability.ok)("a guest that does not finish is killed at the hard timeout", async () => {
    const dir = tmpDir();
    const img = createImage(join(dir, "t.img"), 1024 * 1024);
    const t0 = Date.now();
    const r = await runGuest({ backend: "builtin", image: img, script: "sleep 600", timeoutMs: 6_000 });
    expect(r.ok).toBe(false);
    expect(r.timedOut).toBe(true);
    expect(r.error).toMatch(/timed out after 6000 ms/);
    expect(Date.now() - t0).toBeLessThan(30_000);
  });
});

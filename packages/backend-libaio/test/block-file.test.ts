// openBlockFile on regular files.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { closeFd, nativeAvailable, nativeLoadError, openBlockFile } from "../dist/index.js";
import { makeTmpDir } from "./helpers.js";

const native = nativeAvailable();
if (!native)
  console.warn(`[backend-libaio] native addon not loaded, openBlockFile tests SKIPPED: ${nativeLoadError()}`);

describe.skipIf(!native)("openBlockFile", () => {
  let tmp: ReturnType<typeof makeTmpDir>;
  beforeAll(() => {
    tmp = makeTmpDir("blockfile");
  });
  afterAll(() => tmp?.cleanup());

  it("reports size and block sizes of an image file", () => {
    const path = join(tmp.dir, "a.img");
    writeFileSync(path, Buffer.alloc(3 * 1024 * 1024));
    for (const direct of [true, false]) {
      for (const readOnly of [true, false]) {
        const f = openBlockFile(path, { direct, readOnly });
        expect(f.sizeBytes).toBe(3 * 1024 * 1024);
        expect(f.isBlockDevice).toBe(false);
        expect([512, 4096]).toContain(f.logicalBlockSize);
        expect(f.physicalBlockSize).toBeGreaterThanOrEqual(f.logicalBlockSize);
        expect(f.physicalBlockSize & (f.physicalBlockSize - 1)).toBe(0);
        expect(f.direct).toBe(direct); // ext4/xfs/tmpfs>=6.6 all do O_DIRECT
        expect(f.fd).toBeGreaterThan(2);
        closeFd(f.fd);
      }
    }
    const empty = join(tmp.dir, "empty.img");
    writeFileSync(empty, "");
    const e = openBlockFile(empty, { direct: true, readOnly: true });
    expect(e.sizeBytes).toBe(0);
    closeFd(e.fd);
  });

  it("refuses an image whose size is not a multiple of the logical block size", () => {
    const path = join(tmp.dir, "odd.img");
    writeFileSync(path, Buffer.alloc(1000));
    let err: Error | undefined;
    try {
      openBlockFile(path, { direct: false, readOnly: true });
    } catch (e) {
      err = e as Error;
    }
    expect(err).toBeInstanceOf(Error);
    expect(err!.message).toContain(path);
    expect(err!.message).toContain("1000 bytes");
    expect(err!.message).toContain("not a multiple of the logical block size (512 bytes)");
  });

  it("names the path and the errno text when it cannot open", () => {
    const path = join(tmp.dir, "does", "not", "exist.img");
    let err: (Error & { code?: string; errno?: number }) | undefined;
    try {
      openBlockFile(path, { direct: true, readOnly: false });
    } catch (e) {
      err = e as Error;
    }
    expect(err?.message).toContain(path);
    expect(err?.message).toContain("No such file or directory");
    expect(err?.code).toBe("ENOENT");
    expect(err?.errno).toBe(2);
    const dir = join(tmp.dir, "adir");
    mkdirSync(dir);
    expect(() => openBlockFile(dir, { direct: false, readOnly: true })).toThrow(dir);
  });
});

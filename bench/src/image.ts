/**
 * The disk image a run works on.
 *
 *   --filename given, exists    used as is (file or block device), never removed
 *   --filename given, missing   created with --size of random data, kept (like fio)
 *   no --filename               a temporary image of --size (default 256M) of random
 *                               data in --directory (default: the OS temp dir),
 *                               removed at exit, on error and on SIGINT/SIGTERM
 *
 * Sizes are rounded down to a multiple of max(4096, bs) so O_DIRECT works.
 */
import { randomBytes, randomFillSync } from "node:crypto";
import { closeSync, existsSync, openSync, readFileSync, rmSync, statSync } from "node:fs";
import { open } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { OptionError } from "./options.js";
import { formatSize } from "./units.js";

export interface PreparedImage {
  path: string;
  /** Bytes of the file or device. */
  sizeBytes: number;
  temp: boolean;
  created: boolean;
  isBlockDevice: boolean;
  /** Remove the image if it is temporary (idempotent). */
  remove(): void;
}

const tempFiles = new Set<string>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", removeAllTempImages);
}

/** Remove every temporary image still registered (sync: safe in 'exit' handlers). */
export function removeAllTempImages(): void {
  for (const p of tempFiles) {
    try {
      rmSync(p, { force: true });
    } catch {
      // best effort at exit
    }
  }
  tempFiles.clear();
}

/** Temporary images not yet removed (for tests). */
export function liveTempImages(): string[] {
  return [...tempFiles];
}

function blockDeviceSize(rdev: number): number {
  const major = ((rdev >>> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff);
  const minor = (rdev & 0xff) | ((rdev >>> 12) & 0xfff00);
  const sectors = Number(readFileSync(`/sys/dev/block/${major}:${minor}/size`, "utf8").trim());
  return sectors * 512;
}

export interface ImageRequest {
  filename: string | undefined;
  directory: string | undefined;
  /** Requested size (undefined = whole file, or 256M for a new one). */
  size: number | undefined;
  bs: number;
  signal?: AbortSignal;
}

const CHUNK = 1 << 20;

async function fillRandom(path: string, size: number, signal: AbortSignal | undefined): Promise<void> {
  const fh = await open(path, "w", 0o644);
  try {
    const buf = Buffer.allocUnsafe(CHUNK);
    for (let off = 0; off < size; off += CHUNK) {
      if (signal?.aborted) throw new Error("interrupted while creating the image");
      const n = Math.min(CHUNK, size - off);
      randomFillSync(buf, 0, n);
      await fh.write(buf, 0, n, off);
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export async function prepareImage(req: ImageRequest): Promise<PreparedImage> {
  const align = Math.max(4096, req.bs);
  if (req.filename !== undefined) {
    const path = req.filename;
    if (existsSync(path)) {
      const st = statSync(path);
      const isBlockDevice = st.isBlockDevice();
      if (!isBlockDevice && !st.isFile())
        throw new OptionError("filename", `--filename: ${path} is neither a regular file nor a block device`);
      const sizeBytes = isBlockDevice ? blockDeviceSize(st.rdev) : st.size;
      if (req.size !== undefined && req.size > sizeBytes)
        throw new OptionError(
          "size",
          `--size: ${formatSize(req.size)} is larger than ${path} (${sizeBytes} bytes); allowed: a size <= the file's`,
        );
      if (sizeBytes < req.bs)
        throw new OptionError(
          "filename",
          `--filename: ${path} has ${sizeBytes} bytes, less than one block (--bs)`,
        );
      return { path, sizeBytes, temp: false, created: false, isBlockDevice, remove() {} };
    }
    const size = Math.floor((req.size ?? 256 << 20) / align) * align;
    if (size === 0)
      throw new OptionError("size", `--size: must be at least ${align} bytes to create ${path}`);
    try {
      await fillRandom(path, size, req.signal);
    } catch (e) {
      rmSync(path, { force: true });
      throw e;
    }
    return { path, sizeBytes: size, temp: false, created: true, isBlockDevice: false, remove() {} };
  }
  const dir = req.directory ?? tmpdir();
  if (!existsSync(dir) || !statSync(dir).isDirectory())
    throw new OptionError("directory", `--directory: ${dir} is not a directory`);
  const size = Math.floor((req.size ?? 256 << 20) / align) * align;
  if (size === 0) throw new OptionError("size", `--size: must be at least ${align} bytes`);
  const path = join(dir, `vblk-bench-${process.pid}-${randomBytes(4).toString("hex")}.img`);
  installExitHook();
  tempFiles.add(path);
  const remove = () => {
    rmSync(path, { force: true });
    tempFiles.delete(path);
  };
  try {
    // Create it first so a failure to write leaves nothing behind either.
    closeSync(openSync(path, "wx", 0o600));
    await fillRandom(path, size, req.signal);
  } catch (e) {
    remove();
    throw e;
  }
  return { path, sizeBytes: size, temp: true, created: true, isBlockDevice: false, remove };
}

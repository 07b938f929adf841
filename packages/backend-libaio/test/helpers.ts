// Shared helpers for the backend-libaio tests (not a test file itself).
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type EngineKind, IOV_STRIDE, NativeEngine, openBlockFile, SQ_STRIDE } from "../dist/index.js";

/** file:// URL of the built package entry, for worker threads to import. */
export const distUrl = new URL("../dist/index.js", import.meta.url).href;

export function makeTmpDir(prefix: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `vblk-${prefix}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A file of `size` bytes filled with `fill` (default: a byte pattern of the offset). */
export function makeImage(path: string, size: number, fill?: number): Buffer {
  const b = Buffer.alloc(size);
  if (fill === undefined) for (let i = 0; i < size; i++) b[i] = (i * 7 + (i >> 12)) & 0xff;
  else b.fill(fill);
  writeFileSync(path, b);
  return b;
}

/**
 * A NativeEngine over `path` (a file or block device, O_DIRECT unless
 * direct: false), owning the fd, with the file's block size and kind.
 */
export function engineOn(
  kind: EngineKind,
  path: string,
  regions: Uint8Array[],
  opts: { direct?: boolean; readOnly?: boolean; depth?: number; drainOnReap?: boolean } = {},
): NativeEngine {
  const f = openBlockFile(path, { direct: opts.direct ?? true, readOnly: opts.readOnly ?? false });
  return new NativeEngine({
    kind,
    fd: f.fd,
    ownsFd: true,
    direct: f.direct,
    blockSize: f.logicalBlockSize,
    isBlockDevice: f.isBlockDevice,
    regions,
    ...(opts.depth !== undefined ? { depth: opts.depth } : {}),
    ...(opts.drainOnReap !== undefined ? { drainOnReap: opts.drainOnReap } : {}),
  });
}

export type Seg = [region: number, offset: number, length: number];

/** Builds a batch in an engine's sq/iov buffers. */
export class Batch {
  count = 0;
  iovNext = 0;
  constructor(readonly e: NativeEngine) {}

  add(op: number, tag: number, offset: number, segs: Seg[] = [], length?: number): this {
    const r = this.count * SQ_STRIDE;
    const sq = this.e.sq;
    sq[r] = op;
    sq[r + 1] = tag;
    sq[r + 2] = offset;
    sq[r + 3] = length ?? segs.reduce((a, s) => a + s[2], 0);
    sq[r + 4] = segs.length;
    sq[r + 5] = this.iovNext;
    for (const s of segs) {
      const i = this.iovNext * IOV_STRIDE;
      this.e.iov[i] = s[0];
      this.e.iov[i + 1] = s[1];
      this.e.iov[i + 2] = s[2];
      this.iovNext++;
    }
    this.count++;
    return this;
  }

  submit(): void {
    this.e.submit(this.count);
    this.count = 0;
    this.iovNext = 0;
  }
}

/** Collects completions until `n` arrived (or throws after timeoutMs). Returns [tag, result] in completion order. */
export function collect(e: NativeEngine, n: number, timeoutMs = 20_000): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  const deadline = Date.now() + timeoutMs;
  while (out.length < n) {
    if (Date.now() > deadline) throw new Error(`timed out: ${out.length}/${n} completions`);
    const k = e.waitCompletions(n - out.length, 1000);
    for (let i = 0; i < k; i++) out.push([e.cq[2 * i]! >>> 0, e.cq[2 * i + 1]!]);
  }
  return out;
}

/** Submit one batch and wait for all of it; results by tag. */
export function run(b: Batch): Map<number, number> {
  const n = b.count;
  b.submit();
  return new Map(collect(b.e, n));
}

export function pattern(len: number, seed: number): Uint8Array {
  const u = new Uint8Array(len);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    u[i] = x & 0xff;
  }
  return u;
}

export function allZero(u: Uint8Array): boolean {
  for (let i = 0; i < u.length; i++) if (u[i] !== 0) return false;
  return true;
}

/** Fast byte equality (vitest's toEqual walks elements one by one). */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return (
    Buffer.compare(
      Buffer.from(a.buffer, a.byteOffset, a.byteLength),
      Buffer.from(b.buffer, b.byteOffset, b.byteLength),
    ) === 0
  );
}

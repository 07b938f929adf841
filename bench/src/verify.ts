/**
 * --verify=crc32c block format (in the spirit of fio's verify header).
 * Every block written in the write phase is self-describing:
 *
 *   offset  size  field
 *   0       4     magic 0x4b4c4256 ("VBLK" little endian)
 *   4       4     crc32c of bytes [8, bs)  (the rest of the header + payload)
 *   8       8     byte offset of the block in the file (u64 LE)
 *   16      4     block size
 *   20      4     seed of the run
 *   24      4     job index that wrote it
 *   28      4     reserved (0)
 *   32      bs-32 payload: xorshift bytes seeded by (seed, offset)
 *
 * The read-back phase checks, in order: magic, crc32c, offset, size. A
 * flipped byte anywhere fails the crc; a block written to the wrong place
 * passes its crc but carries another offset ("misplaced").
 */
import { crc32c } from "./crc32c.js";
import { XorShift128 } from "./prng.js";

export const VERIFY_MAGIC = 0x4b4c4256;
export const VERIFY_HEADER_BYTES = 32;
const TWO_32 = 0x1_0000_0000;

function payloadSeed(seed: number, offset: number): number {
  return (Math.imul(seed ^ 0x5bd1e995, 0x9e3779b1) ^ (offset / 512) ^ Math.floor(offset / TWO_32)) >>> 0;
}

/** Fill `block` (bs bytes) with the verify pattern for `offset`. */
export function fillVerifyBlock(block: Uint8Array, offset: number, seed: number, job: number): void {
  const bs = block.length;
  const dv = new DataView(block.buffer, block.byteOffset, bs);
  const rng = new XorShift128(payloadSeed(seed, offset));
  let i = VERIFY_HEADER_BYTES;
  for (; i + 4 <= bs; i += 4) dv.setUint32(i, rng.nextU32(), true);
  for (; i < bs; i++) block[i] = rng.nextU32() & 0xff;
  dv.setUint32(0, VERIFY_MAGIC, true);
  dv.setUint32(8, offset % TWO_32, true);
  dv.setUint32(12, Math.floor(offset / TWO_32), true);
  dv.setUint32(16, bs, true);
  dv.setUint32(20, seed >>> 0, true);
  dv.setUint32(24, job >>> 0, true);
  dv.setUint32(28, 0, true);
  dv.setUint32(4, crc32c(block, 0, 8, bs), true);
}

const hex = (n: number) => `0x${n.toString(16)}`;

/** Check a block read back from `offset`. Returns undefined when good, else what is wrong. */
export function checkVerifyBlock(block: Uint8Array, offset: number): string | undefined {
  const bs = block.length;
  const dv = new DataView(block.buffer, block.byteOffset, bs);
  const where = `offset ${offset} (${hex(offset)}), block ${bs} bytes`;
  const magic = dv.getUint32(0, true);
  if (magic !== VERIFY_MAGIC)
    return `verify: bad magic at ${where}: found ${hex(magic)}, expected ${hex(VERIFY_MAGIC)} (block never written or overwritten)`;
  const stored = dv.getUint32(4, true);
  const computed = crc32c(block, 0, 8, bs);
  if (stored !== computed)
    return `verify: crc32c mismatch at ${where}: stored ${hex(stored)}, computed ${hex(computed)}`;
  const hdrOffset = dv.getUint32(8, true) + dv.getUint32(12, true) * TWO_32;
  if (hdrOffset !== offset)
    return `verify: misplaced block at ${where}: it carries the data written for offset ${hdrOffset} (${hex(hdrOffset)})`;
  const hdrBs = dv.getUint32(16, true);
  if (hdrBs !== bs) return `verify: block size mismatch at ${where}: header says ${hdrBs}`;
  return undefined;
}

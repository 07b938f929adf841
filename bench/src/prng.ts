/**
 * A small, fast, seeded PRNG (xorshift128, Marsaglia 2003) for offsets,
 * read/write mixing and verify payloads. Not for anything cryptographic.
 */
export class XorShift128 {
  private x: number;
  private y: number;
  private z: number;
  private w: number;

  constructor(seed: number) {
    // splitmix32 to spread a small seed over the state; never all zero.
    let s = seed >>> 0;
    const next = () => {
      s = (s + 0x9e3779b9) >>> 0;
      let t = s;
      t = Math.imul(t ^ (t >>> 16), 0x85ebca6b);
      t = Math.imul(t ^ (t >>> 13), 0xc2b2ae35);
      return (t ^ (t >>> 16)) >>> 0;
    };
    this.x = next();
    this.y = next();
    this.z = next();
    this.w = next() | 1;
  }

  /** Next 32-bit unsigned value. */
  nextU32(): number {
    const t = this.x ^ (this.x << 11);
    this.x = this.y;
    this.y = this.z;
    this.z = this.w;
    this.w = (this.w ^ (this.w >>> 19) ^ (t ^ (t >>> 8))) >>> 0;
    return this.w;
  }

  /** Uniform integer in [0, n) for n up to 2^53 (two draws above 2^32). */
  below(n: number): number {
    if (n <= 0x1_0000_0000) return Math.floor((this.nextU32() / 0x1_0000_0000) * n);
    const hi = this.nextU32() & 0x1f_ffff; // 21 bits
    const r = hi * 0x1_0000_0000 + this.nextU32(); // 53 bits
    return r % n;
  }
}

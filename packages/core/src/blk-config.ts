/**
 * virtio-blk device options, the feature bits they offer and the device
 * configuration space (`struct virtio_blk_config`, virtio 1.2, 5.2.4).
 *
 *   off  size  field                         feature that makes it valid
 *   0x00  8    capacity (512-byte sectors)   always
 *   0x08  4    size_max                      SIZE_MAX
 *   0x0c  4    seg_max                       SEG_MAX
 *   0x10  2    geometry.cylinders            GEOMETRY
 *   0x12  1    geometry.heads                GEOMETRY
 *   0x13  1    geometry.sectors              GEOMETRY
 *   0x14  4    blk_size                      BLK_SIZE
 *   0x18  1    topology.physical_block_exp   TOPOLOGY
 *   0x19  1    topology.alignment_offset     TOPOLOGY
 *   0x1a  2    topology.min_io_size          TOPOLOGY
 *   0x1c  4    topology.opt_io_size          TOPOLOGY
 *   0x20  1    writeback  (the one writable  CONFIG_WCE
 *              field)
 *   0x21  1    unused0
 *   0x22  2    num_queues                    MQ
 *   0x24  4    max_discard_sectors           DISCARD
 *   0x28  4    max_discard_seg               DISCARD
 *   0x2c  4    discard_sector_alignment      DISCARD
 *   0x30  4    max_write_zeroes_sectors      WRITE_ZEROES
 *   0x34  4    max_write_zeroes_seg          WRITE_ZEROES
 *   0x38  1    write_zeroes_may_unmap        WRITE_ZEROES
 *   0x39  3    unused1
 *   (0x3c: secure erase and zoned fields follow; we offer neither feature,
 *    so the space ends here, as QEMU's does without them.)
 *
 * Everything is little-endian. Fields of features we do not offer read 0.
 */
import { BlkFeature, SECTOR_SIZE } from "./blk-constants.js";
import { featureBit, hasFeature, VirtioFeature } from "./virtio.js";

/** Byte offsets of the fields of struct virtio_blk_config. */
export const BlkConfigOffset = {
  CAPACITY: 0x00,
  SIZE_MAX: 0x08,
  SEG_MAX: 0x0c,
  GEOMETRY_CYLINDERS: 0x10,
  GEOMETRY_HEADS: 0x12,
  GEOMETRY_SECTORS: 0x13,
  BLK_SIZE: 0x14,
  PHYSICAL_BLOCK_EXP: 0x18,
  ALIGNMENT_OFFSET: 0x19,
  MIN_IO_SIZE: 0x1a,
  OPT_IO_SIZE: 0x1c,
  WRITEBACK: 0x20,
  UNUSED0: 0x21,
  NUM_QUEUES: 0x22,
  MAX_DISCARD_SECTORS: 0x24,
  MAX_DISCARD_SEG: 0x28,
  DISCARD_SECTOR_ALIGNMENT: 0x2c,
  MAX_WRITE_ZEROES_SECTORS: 0x30,
  MAX_WRITE_ZEROES_SEG: 0x34,
  WRITE_ZEROES_MAY_UNMAP: 0x38,
  UNUSED1: 0x39,
} as const;

/** Size of our configuration space: up to and including unused1. */
export const BLK_CONFIG_SIZE = 0x3c;

/** QEMU's largest queue size (VIRTQUEUE_MAX_SIZE). */
export const BLK_MAX_QUEUE_SIZE = 1024;
/** num_queues is a 16-bit field. */
export const BLK_MAX_QUEUES = 0xffff;
/** QEMU accepts logical/physical block sizes up to 2 MiB. */
export const BLK_MAX_BLOCK_SIZE = 2 * 1024 * 1024;
/**
 * QEMU's default max-discard-sectors / max-write-zeroes-sectors
 * (BDRV_REQUEST_MAX_SECTORS: INT_MAX >> 9, just under 2 GiB). We round it
 * down to a whole number of logical blocks.
 */
export const BLK_DEFAULT_MAX_DWZ_SECTORS = 0x3f_ffff;

export interface BlkGeometry {
  cylinders: number;
  heads: number;
  sectors: number;
}

export interface BlkDeviceOptions {
  /** Disk size in bytes: a multiple of logicalBlockSize. */
  capacityBytes: number;
  /** Power of two in 512..2 MiB; default 512. Offered through BLK_SIZE. */
  logicalBlockSize?: number;
  /** Power of two, >= logicalBlockSize, <= 2 MiB; default logicalBlockSize. */
  physicalBlockSize?: number;
  /** topology.min_io_size, in bytes (a multiple of logicalBlockSize, <= 65535 blocks); default 0. */
  minIoSize?: number;
  /** topology.opt_io_size, in bytes (a multiple of logicalBlockSize); default 0. */
  optIoSize?: number;
  /** 1..65535. MQ is offered when > 1. */
  numQueues: number;
  /** Power of two in 4..1024. */
  queueSize: number;
  /** Data segments per request, 1..queueSize - 2; default queueSize - 2. */
  segMax?: number;
  /** Largest single segment in bytes (SIZE_MAX offered only when given), 512..2^32-1. */
  sizeMax?: number;
  /** Offer RO: every write fails. */
  readOnly?: boolean;
  /** Write cache enabled at reset (writeback = 1); default true (QEMU's default). */
  writeback?: boolean;
  /** Let the driver toggle the cache through `writeback` (CONFIG_WCE); default true. */
  configWce?: boolean;
  /** Offer DISCARD; default false (the backend must be able to drop ranges). */
  discard?: boolean;
  /** Offer WRITE_ZEROES; default true. */
  writeZeroes?: boolean;
  /** 1..2^32-1, in 512-byte sectors; default ~2 GiB (QEMU), rounded to whole logical blocks. */
  maxDiscardSectors?: number;
  maxWriteZeroesSectors?: number;
  /** Segments per DISCARD / WRITE_ZEROES request: must be 1 (as QEMU; the parser handles one). */
  maxDiscardSeg?: number;
  maxWriteZeroesSeg?: number;
  /** write_zeroes_may_unmap; default true (QEMU). */
  writeZeroesMayUnmap?: boolean;
  /** Offer VIRTIO_F_RING_EVENT_IDX; default true. */
  eventIdx?: boolean;
  /** Offer VIRTIO_F_RING_INDIRECT_DESC; default true. */
  indirect?: boolean;
  /** Offer GEOMETRY with these values (cylinders u16, heads u8, sectors u8). */
  geometry?: BlkGeometry;
}

/** Options with every default filled in. */
export interface ResolvedBlkOptions {
  capacityBytes: number;
  logicalBlockSize: number;
  physicalBlockSize: number;
  minIoSize: number;
  optIoSize: number;
  numQueues: number;
  queueSize: number;
  segMax: number;
  sizeMax: number | undefined;
  readOnly: boolean;
  writeback: boolean;
  configWce: boolean;
  discard: boolean;
  writeZeroes: boolean;
  maxDiscardSectors: number;
  maxWriteZeroesSectors: number;
  maxDiscardSeg: number;
  maxWriteZeroesSeg: number;
  writeZeroesMayUnmap: boolean;
  eventIdx: boolean;
  indirect: boolean;
  geometry: BlkGeometry | undefined;
}

const U32_MAX = 0xffff_ffff;

function isPow2(n: number): boolean {
  return Number.isInteger(n) && n > 0 && n <= 2 ** 31 && (n & (n - 1)) === 0;
}

function intIn(name: string, v: number, lo: number, hi: number, extra = ""): void {
  if (!Number.isInteger(v) || v < lo || v > hi) {
    throw new Error(`${name} must be an integer in ${lo}..${hi}${extra}, got ${v}`);
  }
}

/**
 * Fill in the defaults and check every option. Throws an Error naming the
 * option, the allowed values and the value given.
 */
export function resolveBlkOptions(opts: BlkDeviceOptions): ResolvedBlkOptions {
  const lbs = opts.logicalBlockSize ?? SECTOR_SIZE;
  if (!isPow2(lbs) || lbs < SECTOR_SIZE || lbs > BLK_MAX_BLOCK_SIZE) {
    throw new Error(`logicalBlockSize must be a power of two in 512..${BLK_MAX_BLOCK_SIZE}, got ${lbs}`);
  }
  const pbs = opts.physicalBlockSize ?? lbs;
  if (!isPow2(pbs) || pbs < lbs || pbs > BLK_MAX_BLOCK_SIZE) {
    throw new Error(
      `physicalBlockSize must be a power of two in ${lbs} (logicalBlockSize)..${BLK_MAX_BLOCK_SIZE}, got ${pbs}`,
    );
  }
  const cap = opts.capacityBytes;
  if (!Number.isSafeInteger(cap) || cap < 0 || cap % lbs !== 0) {
    throw new Error(
      `capacityBytes must be a non-negative safe integer and a multiple of the logical block size (${lbs}), got ${cap}`,
    );
  }
  const minIo = opts.minIoSize ?? 0;
  if (!Number.isSafeInteger(minIo) || minIo < 0 || minIo % lbs !== 0 || minIo / lbs > 0xffff) {
    throw new Error(
      `minIoSize must be a multiple of the logical block size (${lbs}) of at most 65535 blocks, got ${minIo}`,
    );
  }
  const optIo = opts.optIoSize ?? 0;
  if (!Number.isSafeInteger(optIo) || optIo < 0 || optIo % lbs !== 0 || optIo / lbs > U32_MAX) {
    throw new Error(
      `optIoSize must be a multiple of the logical block size (${lbs}) of at most 2^32-1 blocks, got ${optIo}`,
    );
  }

  // QEMU's rules (virtio_blk_device_realize).
  const nq = opts.numQueues;
  if (!Number.isInteger(nq) || nq < 1 || nq > BLK_MAX_QUEUES) {
    throw new Error(`numQueues must be an integer in 1..${BLK_MAX_QUEUES} (0 queues is an error), got ${nq}`);
  }
  const qs = opts.queueSize;
  if (!isPow2(qs) || qs <= 2 || qs > BLK_MAX_QUEUE_SIZE) {
    throw new Error(`queueSize must be a power of two in 4..${BLK_MAX_QUEUE_SIZE} (QEMU's cap), got ${qs}`);
  }
  // A request takes seg_max data descriptors plus the header and the status.
  const segMax = opts.segMax ?? qs - 2;
  intIn("segMax", segMax, 1, qs - 2, " (queueSize - 2: room for the header and the status)");
  if (opts.sizeMax !== undefined) intIn("sizeMax", opts.sizeMax, SECTOR_SIZE, U32_MAX);

  const blkSectors = lbs / SECTOR_SIZE;
  const defMax = BLK_DEFAULT_MAX_DWZ_SECTORS - (BLK_DEFAULT_MAX_DWZ_SECTORS % blkSectors);
  const maxDiscardSectors = opts.maxDiscardSectors ?? defMax;
  intIn("maxDiscardSectors", maxDiscardSectors, 1, U32_MAX);
  const maxWriteZeroesSectors = opts.maxWriteZeroesSectors ?? defMax;
  intIn("maxWriteZeroesSectors", maxWriteZeroesSectors, 1, U32_MAX);
  const maxDiscardSeg = opts.maxDiscardSeg ?? 1;
  intIn("maxDiscardSeg", maxDiscardSeg, 1, 1, " (one segment per request, as QEMU)");
  const maxWriteZeroesSeg = opts.maxWriteZeroesSeg ?? 1;
  intIn("maxWriteZeroesSeg", maxWriteZeroesSeg, 1, 1, " (one segment per request, as QEMU)");

  const g = opts.geometry;
  if (g !== undefined) {
    intIn("geometry.cylinders", g.cylinders, 0, 0xffff);
    intIn("geometry.heads", g.heads, 0, 0xff);
    intIn("geometry.sectors", g.sectors, 0, 0xff);
  }

  return {
    capacityBytes: cap,
    logicalBlockSize: lbs,
    physicalBlockSize: pbs,
    minIoSize: minIo,
    optIoSize: optIo,
    numQueues: nq,
    queueSize: qs,
    segMax,
    sizeMax: opts.sizeMax,
    readOnly: opts.readOnly ?? false,
    writeback: opts.writeback ?? true,
    configWce: opts.configWce ?? true,
    discard: opts.discard ?? false,
    writeZeroes: opts.writeZeroes ?? true,
    maxDiscardSectors,
    maxWriteZeroesSectors,
    maxDiscardSeg,
    maxWriteZeroesSeg,
    writeZeroesMayUnmap: opts.writeZeroesMayUnmap ?? true,
    eventIdx: opts.eventIdx ?? true,
    indirect: opts.indirect ?? true,
    geometry: g === undefined ? undefined : { ...g },
  };
}

/** Throws an Error naming the first invalid option; returns nothing. */
export function validateBlkOptions(opts: BlkDeviceOptions): void {
  resolveBlkOptions(opts);
}

/**
 * The feature bits a device with these options offers. Split ring only (no
 * RING_PACKED). FLUSH follows QEMU (x-enable-wce-if-config-wce, on by
 * default) and the spec's rule that a device offering CONFIG_WCE must offer
 * FLUSH: it is offered when the write cache is on or CONFIG_WCE is offered.
 */
export function offeredFeatures(opts: BlkDeviceOptions): bigint {
  const o = resolveBlkOptions(opts);
  let f = featureBit(VirtioFeature.VERSION_1);
  f |= featureBit(BlkFeature.SEG_MAX) | featureBit(BlkFeature.BLK_SIZE) | featureBit(BlkFeature.TOPOLOGY);
  if (o.writeback || o.configWce) f |= featureBit(BlkFeature.FLUSH);
  if (o.configWce) f |= featureBit(BlkFeature.CONFIG_WCE);
  if (o.readOnly) f |= featureBit(BlkFeature.RO);
  if (o.numQueues > 1) f |= featureBit(BlkFeature.MQ);
  if (o.discard) f |= featureBit(BlkFeature.DISCARD);
  if (o.writeZeroes) f |= featureBit(BlkFeature.WRITE_ZEROES);
  if (o.sizeMax !== undefined) f |= featureBit(BlkFeature.SIZE_MAX);
  if (o.geometry !== undefined) f |= featureBit(BlkFeature.GEOMETRY);
  if (o.eventIdx) f |= featureBit(VirtioFeature.RING_EVENT_IDX);
  if (o.indirect) f |= featureBit(VirtioFeature.RING_INDIRECT_DESC);
  return f;
}

export interface BlkConfigCallbacks {
  /** The cache mode changed (driver write, negotiation or reset): true = writeback. */
  onWritebackChange?(writeback: boolean): void;
  /** The device changed the space on its own (resize): the transport should raise a config interrupt. */
  onConfigChange?(): void;
  /** A driver access was ignored; the message says why. */
  onWarning?(msg: string): void;
}

/**
 * The configuration space of one virtio-blk device. Reads return the
 * little-endian struct; the only writable field is `writeback`, and only
 * once CONFIG_WCE has been negotiated.
 *
 * Wiring: the device calls {@link negotiate} when the driver sets
 * FEATURES_OK and {@link reset} on a device reset, exposes
 * {@link generation} as its config generation, and routes
 * `onConfigChange` to the transport's `signalConfigChange()`.
 */
export class BlkConfigSpace {
  readonly options: ResolvedBlkOptions;
  /** The feature bits this device offers. */
  readonly offered: bigint;
  private readonly buf = new Uint8Array(BLK_CONFIG_SIZE);
  private readonly view = new DataView(this.buf.buffer);
  private readonly cb: BlkConfigCallbacks;
  private capBytes: number;
  private wb: boolean;
  private negotiated = 0n;
  private gen = 0;

  constructor(opts: BlkDeviceOptions, callbacks: BlkConfigCallbacks = {}) {
    this.options = resolveBlkOptions(opts);
    this.offered = offeredFeatures(opts);
    this.cb = callbacks;
    this.capBytes = this.options.capacityBytes;
    this.wb = this.initialWriteback();
    this.build();
  }

  /** Config generation: changes whenever a field changes. */
  get generation(): number {
    return this.gen;
  }
  get capacityBytes(): number {
    return this.capBytes;
  }
  /** capacity in 512-byte sectors. */
  get capacitySectors(): number {
    return this.capBytes / SECTOR_SIZE;
  }
  /** Current cache mode: true = writeback (flushes needed), false = writethrough. */
  get writeback(): boolean {
    return this.wb;
  }
  get negotiatedFeatures(): bigint {
    return this.negotiated;
  }

  /** A copy of the whole struct as the driver sees it now. */
  bytes(): Uint8Array {
    return this.buf.slice();
  }

  /**
   * A 1, 2 or 4-byte little-endian read at any byte offset. Bytes past the
   * end of the space read as 0. Returns a uint32.
   */
  read(offset: number, size: 1 | 2 | 4): number {
    if (size !== 1 && size !== 2 && size !== 4) {
      this.warn(`config read of size ${size} at ${offset} ignored: sizes are 1, 2 and 4`);
      return 0;
    }
    if (!Number.isInteger(offset) || offset < 0) return 0;
    if (offset + size <= BLK_CONFIG_SIZE) {
      if (size === 1) return this.buf[offset]!;
      if (size === 2) return this.view.getUint16(offset, true);
      return this.view.getUint32(offset, true);
    }
    let v = 0;
    for (let i = 0; i < size; i++) {
      const at = offset + i;
      if (at < BLK_CONFIG_SIZE) v += this.buf[at]! * 2 ** (8 * i);
    }
    return v >>> 0;
  }

  /** A 64-bit little-endian read (capacity); bytes past the end read as 0. */
  read64(offset: number): bigint {
    const lo = BigInt(this.read(offset, 4));
    const hi = BigInt(this.read(offset + 4, 4));
    return (hi << 32n) | lo;
  }

  /**
   * A driver write. Only `writeback` (1 byte at 0x20) is writable, and only
   * when CONFIG_WCE was negotiated; everything else is ignored and reported
   * through onWarning. Any non-zero value means writeback (as QEMU). Turning
   * writeback on is refused when FLUSH was not negotiated: that driver could
   * never make its writes durable.
   */
  write(offset: number, size: 1 | 2 | 4, value: number): void {
    if (offset !== BlkConfigOffset.WRITEBACK || size !== 1) {
      this.warn(
        `config write of ${size} byte(s) at 0x${offset.toString(16)} ignored: only writeback (1 byte at 0x20) is writable`,
      );
      return;
    }
    if (!hasFeature(this.negotiated, BlkFeature.CONFIG_WCE)) {
      this.warn("config write to writeback ignored: VIRTIO_BLK_F_CONFIG_WCE was not negotiated");
      return;
    }
    const v = value & 0xff;
    if (v > 1) this.warn(`writeback written with ${v}: the spec defines 0 and 1, taking it as 1 (writeback)`);
    const want = v !== 0;
    if (want && !hasFeature(this.negotiated, BlkFeature.FLUSH)) {
      this.warn("writeback=1 refused: VIRTIO_BLK_F_FLUSH was not negotiated, the driver could not flush");
      return;
    }
    this.setWriteback(want);
  }

  /**
   * The driver set FEATURES_OK with these features. A driver that did not
   * accept FLUSH cannot flush, so the cache goes writethrough (the spec's
   * rule for CONFIG_WCE without FLUSH; QEMU applies it without CONFIG_WCE too).
   */
  negotiate(features: bigint): void {
    this.negotiated = features;
    if (!hasFeature(features, BlkFeature.FLUSH)) this.setWriteback(false);
  }

  /** Device reset: forget the negotiation and restore the cache mode the device started with. */
  reset(): void {
    this.negotiated = 0n;
    this.setWriteback(this.initialWriteback());
  }

  /**
   * Resize. The new size must be a multiple of the logical block size. Bumps
   * the generation and calls onConfigChange (the config interrupt).
   */
  setCapacity(bytes: number): void {
    const lbs = this.options.logicalBlockSize;
    if (!Number.isSafeInteger(bytes) || bytes < 0 || bytes % lbs !== 0) {
      throw new Error(
        `capacity must be a non-negative safe integer and a multiple of the logical block size (${lbs}), got ${bytes}`,
      );
    }
    if (bytes === this.capBytes) return;
    this.capBytes = bytes;
    this.view.setBigUint64(BlkConfigOffset.CAPACITY, BigInt(bytes / SECTOR_SIZE), true);
    this.gen = (this.gen + 1) >>> 0;
    this.cb.onConfigChange?.();
  }

  private initialWriteback(): boolean {
    // CONFIG_WCE without FLUSH is impossible here (FLUSH comes with CONFIG_WCE).
    return this.options.writeback;
  }

  private setWriteback(on: boolean): void {
    if (on === this.wb) return;
    this.wb = on;
    this.buf[BlkConfigOffset.WRITEBACK] = on ? 1 : 0;
    this.gen = (this.gen + 1) >>> 0;
    this.cb.onWritebackChange?.(on);
  }

  private warn(msg: string): void {
    this.cb.onWarning?.(msg);
  }

  private build(): void {
    const o = this.options;
    const f = this.offered;
    const v = this.view;
    const O = BlkConfigOffset;
    this.buf.fill(0);
    v.setBigUint64(O.CAPACITY, BigInt(this.capBytes / SECTOR_SIZE), true);
    if (o.sizeMax !== undefined) v.setUint32(O.SIZE_MAX, o.sizeMax, true);
    v.setUint32(O.SEG_MAX, o.segMax, true);
    if (o.geometry !== undefined) {
      v.setUint16(O.GEOMETRY_CYLINDERS, o.geometry.cylinders, true);
      v.setUint8(O.GEOMETRY_HEADS, o.geometry.heads);
      v.setUint8(O.GEOMETRY_SECTORS, o.geometry.sectors);
    }
    v.setUint32(O.BLK_SIZE, o.logicalBlockSize, true);
    v.setUint8(O.PHYSICAL_BLOCK_EXP, Math.log2(o.physicalBlockSize / o.logicalBlockSize));
    v.setUint8(O.ALIGNMENT_OFFSET, 0);
    v.setUint16(O.MIN_IO_SIZE, o.minIoSize / o.logicalBlockSize, true);
    v.setUint32(O.OPT_IO_SIZE, o.optIoSize / o.logicalBlockSize, true);
    v.setUint8(O.WRITEBACK, this.wb ? 1 : 0);
    // num_queues is always filled in (QEMU does); it is meaningful with MQ.
    v.setUint16(O.NUM_QUEUES, o.numQueues, true);
    if (hasFeature(f, BlkFeature.DISCARD)) {
      v.setUint32(O.MAX_DISCARD_SECTORS, o.maxDiscardSectors, true);
      v.setUint32(O.MAX_DISCARD_SEG, o.maxDiscardSeg, true);
      v.setUint32(O.DISCARD_SECTOR_ALIGNMENT, o.logicalBlockSize / SECTOR_SIZE, true);
    }
    if (hasFeature(f, BlkFeature.WRITE_ZEROES)) {
      v.setUint32(O.MAX_WRITE_ZEROES_SECTORS, o.maxWriteZeroesSectors, true);
      v.setUint32(O.MAX_WRITE_ZEROES_SEG, o.maxWriteZeroesSeg, true);
      v.setUint8(O.WRITE_ZEROES_MAY_UNMAP, o.writeZeroesMayUnmap ? 1 : 0);
    }
  }
}

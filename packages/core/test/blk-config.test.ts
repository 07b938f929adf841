import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  BLK_CONFIG_SIZE,
  BlkConfigOffset,
  BlkConfigSpace,
  type BlkDeviceOptions,
  offeredFeatures,
  resolveBlkOptions,
  validateBlkOptions,
} from "../dist/blk-config.js";
import { BlkFeature } from "../dist/blk-constants.js";
import { featureBit, featuresOf, hasFeature, VirtioFeature } from "../dist/virtio.js";

const base: BlkDeviceOptions = { capacityBytes: 1 << 20, numQueues: 1, queueSize: 256 };

/** A device with every optional field in use; expected bytes computed by hand below. */
const full: BlkDeviceOptions = {
  capacityBytes: 0x1_2345_6000, // 0x91a2b0 sectors, a multiple of 4096
  logicalBlockSize: 4096,
  physicalBlockSize: 16384, // exp 2
  minIoSize: 8192, // 2 blocks
  optIoSize: 65536, // 16 blocks
  numQueues: 4,
  queueSize: 256, // seg_max defaults to 254
  sizeMax: 0x10000,
  geometry: { cylinders: 0x1234, heads: 16, sectors: 63 },
  writeback: true,
  discard: true, // max_discard_sectors defaults to 0x3fffff rounded down to 8 sectors: 0x3ffff8
  maxWriteZeroesSectors: 0x10000,
};

// biome-ignore format: one line per field
const fullBytes = [
  0xb0, 0xa2, 0x91, 0x00, 0x00, 0x00, 0x00, 0x00, // 0x00 capacity
  0x00, 0x00, 0x01, 0x00, //                         0x08 size_max
  0xfe, 0x00, 0x00, 0x00, //                         0x0c seg_max
  0x34, 0x12, 0x10, 0x3f, //                         0x10 cylinders, heads, sectors
  0x00, 0x10, 0x00, 0x00, //                         0x14 blk_size
  0x02, 0x00, 0x02, 0x00, //                         0x18 physical_block_exp, alignment_offset, min_io_size
  0x10, 0x00, 0x00, 0x00, //                         0x1c opt_io_size
  0x01, 0x00, 0x04, 0x00, //                         0x20 writeback, unused0, num_queues
  0xf8, 0xff, 0x3f, 0x00, //                         0x24 max_discard_sectors
  0x01, 0x00, 0x00, 0x00, //                         0x28 max_discard_seg
  0x08, 0x00, 0x00, 0x00, //                         0x2c discard_sector_alignment
  0x00, 0x00, 0x01, 0x00, //                         0x30 max_write_zeroes_sectors
  0x01, 0x00, 0x00, 0x00, //                         0x34 max_write_zeroes_seg
  0x01, 0x00, 0x00, 0x00, //                         0x38 write_zeroes_may_unmap, unused1[3]
];

const bit = featureBit;
const F = BlkFeature;
const V = VirtioFeature;

describe("struct virtio_blk_config layout", () => {
  it("puts every field at the spec's offset, little-endian", () => {
    const cfg = new BlkConfigSpace(full);
    expect(BLK_CONFIG_SIZE).toBe(60);
    expect(Array.from(cfg.bytes())).toEqual(fullBytes);
  });

  it("field reads of 1, 2 and 4 bytes agree with the struct", () => {
    const cfg = new BlkConfigSpace(full);
    const O = BlkConfigOffset;
    expect(cfg.read(O.CAPACITY, 4)).toBe(0x91a2b0);
    expect(cfg.read(O.CAPACITY + 4, 4)).toBe(0);
    expect(cfg.read64(O.CAPACITY)).toBe(0x91a2b0n);
    expect(cfg.read(O.SIZE_MAX, 4)).toBe(0x10000);
    expect(cfg.read(O.SEG_MAX, 4)).toBe(254);
    expect(cfg.read(O.GEOMETRY_CYLINDERS, 2)).toBe(0x1234);
    expect(cfg.read(O.GEOMETRY_HEADS, 1)).toBe(16);
    expect(cfg.read(O.GEOMETRY_SECTORS, 1)).toBe(63);
    expect(cfg.read(O.BLK_SIZE, 4)).toBe(4096);
    expect(cfg.read(O.PHYSICAL_BLOCK_EXP, 1)).toBe(2);
    expect(cfg.read(O.MIN_IO_SIZE, 2)).toBe(2);
    expect(cfg.read(O.OPT_IO_SIZE, 4)).toBe(16);
    expect(cfg.read(O.WRITEBACK, 1)).toBe(1);
    expect(cfg.read(O.NUM_QUEUES, 2)).toBe(4);
    expect(cfg.read(O.MAX_DISCARD_SECTORS, 4)).toBe(0x3ffff8);
    expect(cfg.read(O.MAX_DISCARD_SEG, 4)).toBe(1);
    expect(cfg.read(O.DISCARD_SECTOR_ALIGNMENT, 4)).toBe(8);
    expect(cfg.read(O.MAX_WRITE_ZEROES_SECTORS, 4)).toBe(0x10000);
    expect(cfg.read(O.MAX_WRITE_ZEROES_SEG, 4)).toBe(1);
    expect(cfg.read(O.WRITE_ZEROES_MAY_UNMAP, 1)).toBe(1);
  });

  it("a capacity above 2^32 sectors splits into two 32-bit halves", () => {
    const cfg = new BlkConfigSpace({ ...base, capacityBytes: 3 * 2 ** 40 }); // 3 * 2^31 sectors
    expect(cfg.read(0, 4)).toBe(0x8000_0000);
    expect(cfg.read(4, 4)).toBe(1);
    expect(cfg.read64(0)).toBe(0x1_8000_0000n);
    expect(cfg.capacitySectors).toBe(3 * 2 ** 31);
  });

  it("fields of features not offered read 0; padding is 0", () => {
    const cfg = new BlkConfigSpace({ ...base, writeZeroes: false });
    const b = cfg.bytes();
    for (let i = BlkConfigOffset.SIZE_MAX; i < BlkConfigOffset.SEG_MAX; i++) expect(b[i]).toBe(0);
    for (let i = BlkConfigOffset.GEOMETRY_CYLINDERS; i < BlkConfigOffset.BLK_SIZE; i++) expect(b[i]).toBe(0);
    for (let i = BlkConfigOffset.MAX_DISCARD_SECTORS; i < BLK_CONFIG_SIZE; i++) expect(b[i]).toBe(0);
    expect(b[BlkConfigOffset.UNUSED0]).toBe(0);
  });

  it("reads past the end return 0, partly-past reads keep the in-range bytes", () => {
    const cfg = new BlkConfigSpace(full);
    expect(cfg.read(BLK_CONFIG_SIZE, 4)).toBe(0);
    expect(cfg.read(0x1000, 1)).toBe(0);
    expect(cfg.read(BLK_CONFIG_SIZE - 2, 4)).toBe(0); // unused1 bytes are 0
    expect(cfg.read(BlkConfigOffset.WRITE_ZEROES_MAY_UNMAP, 4)).toBe(1);
    expect(cfg.read(-1, 4)).toBe(0);
  });

  it("writeback reflects the cache mode at reset", () => {
    expect(new BlkConfigSpace({ ...base, writeback: false }).read(BlkConfigOffset.WRITEBACK, 1)).toBe(0);
    expect(new BlkConfigSpace({ ...base, writeback: true }).read(BlkConfigOffset.WRITEBACK, 1)).toBe(1);
    expect(new BlkConfigSpace(base).writeback).toBe(true); // QEMU's default
  });
});

describe("feature offer", () => {
  it("a default device offers QEMU's set, split ring only", () => {
    const f = offeredFeatures(base);
    expect(f).toBe(
      featuresOf(
        V.VERSION_1,
        F.SEG_MAX,
        F.BLK_SIZE,
        F.TOPOLOGY,
        F.FLUSH,
        F.CONFIG_WCE,
        F.WRITE_ZEROES,
        V.RING_EVENT_IDX,
        V.RING_INDIRECT_DESC,
      ),
    );
    for (const b of [F.MQ, F.RO, F.DISCARD, F.SIZE_MAX, F.GEOMETRY, V.RING_PACKED]) {
      expect(hasFeature(f, b)).toBe(false);
    }
  });

  it("options switch their bits on and off", () => {
    expect(hasFeature(offeredFeatures({ ...base, numQueues: 2 }), F.MQ)).toBe(true);
    expect(hasFeature(offeredFeatures({ ...base, readOnly: true }), F.RO)).toBe(true);
    expect(hasFeature(offeredFeatures({ ...base, discard: true }), F.DISCARD)).toBe(true);
    expect(hasFeature(offeredFeatures({ ...base, writeZeroes: false }), F.WRITE_ZEROES)).toBe(false);
    expect(hasFeature(offeredFeatures({ ...base, eventIdx: false }), V.RING_EVENT_IDX)).toBe(false);
    expect(hasFeature(offeredFeatures({ ...base, indirect: false }), V.RING_INDIRECT_DESC)).toBe(false);
    expect(hasFeature(offeredFeatures({ ...base, sizeMax: 65536 }), F.SIZE_MAX)).toBe(true);
    const g = { cylinders: 1, heads: 2, sectors: 3 };
    expect(hasFeature(offeredFeatures({ ...base, geometry: g }), F.GEOMETRY)).toBe(true);
    const all = offeredFeatures(full);
    for (const b of [F.MQ, F.DISCARD, F.SIZE_MAX, F.GEOMETRY, F.WRITE_ZEROES])
      expect(hasFeature(all, b)).toBe(true);
  });

  it("FLUSH: with the write cache on, or whenever CONFIG_WCE is offered (spec + QEMU)", () => {
    const flushWce = (o: Partial<BlkDeviceOptions>) => {
      const f = offeredFeatures({ ...base, ...o });
      return [hasFeature(f, F.FLUSH), hasFeature(f, F.CONFIG_WCE)];
    };
    expect(flushWce({ writeback: true })).toEqual([true, true]);
    expect(flushWce({ writeback: false })).toEqual([true, true]);
    expect(flushWce({ writeback: true, configWce: false })).toEqual([true, false]);
    expect(flushWce({ writeback: false, configWce: false })).toEqual([false, false]);
  });

  it("property: never RING_PACKED, VERSION_1 always, CONFIG_WCE implies FLUSH, MQ iff numQueues > 1", () => {
    fc.assert(
      fc.property(
        fc.record({
          numQueues: fc.integer({ min: 1, max: 64 }),
          readOnly: fc.boolean(),
          writeback: fc.boolean(),
          configWce: fc.boolean(),
          discard: fc.boolean(),
          writeZeroes: fc.boolean(),
          eventIdx: fc.boolean(),
          indirect: fc.boolean(),
        }),
        (o) => {
          const f = offeredFeatures({ ...base, ...o });
          expect(hasFeature(f, V.RING_PACKED)).toBe(false);
          expect(hasFeature(f, V.VERSION_1)).toBe(true);
          if (hasFeature(f, F.CONFIG_WCE)) expect(hasFeature(f, F.FLUSH)).toBe(true);
          expect(hasFeature(f, F.MQ)).toBe(o.numQueues > 1);
          expect(hasFeature(f, F.RO)).toBe(o.readOnly);
          expect(new BlkConfigSpace({ ...base, ...o }).offered).toBe(f);
        },
      ),
    );
  });
});

describe("option validation", () => {
  const bad = (o: Partial<BlkDeviceOptions>) => () => validateBlkOptions({ ...base, ...o });

  it("queueSize: a power of two in 4..1024", () => {
    expect(bad({ queueSize: 3 })).toThrow("queueSize must be a power of two in 4..1024 (QEMU's cap), got 3");
    expect(bad({ queueSize: 2 })).toThrow(/queueSize .* got 2$/);
    expect(bad({ queueSize: 0 })).toThrow(/queueSize/);
    expect(bad({ queueSize: 2048 })).toThrow(/queueSize .* got 2048/);
    expect(bad({ queueSize: 96 })).toThrow(/queueSize/);
    expect(bad({ queueSize: 4, segMax: 2 })).not.toThrow();
    expect(bad({ queueSize: 1024 })).not.toThrow();
  });

  it("numQueues: 1..65535", () => {
    expect(bad({ numQueues: 0 })).toThrow(
      "numQueues must be an integer in 1..65535 (0 queues is an error), got 0",
    );
    expect(bad({ numQueues: 65536 })).toThrow(/numQueues .* got 65536/);
    expect(bad({ numQueues: 1.5 })).toThrow(/numQueues/);
    expect(bad({ numQueues: 65535 })).not.toThrow();
  });

  it("capacity must be a multiple of the logical block size", () => {
    expect(bad({ capacityBytes: 1000 })).toThrow(
      "capacityBytes must be a non-negative safe integer and a multiple of the logical block size (512), got 1000",
    );
    expect(bad({ capacityBytes: 4096 + 512, logicalBlockSize: 4096 })).toThrow(/\(4096\), got 4608/);
    expect(bad({ capacityBytes: -512 })).toThrow(/capacityBytes/);
    expect(bad({ capacityBytes: 2 ** 60 })).toThrow(/capacityBytes/);
    expect(bad({ capacityBytes: 0 })).not.toThrow();
  });

  it("block sizes, topology, segments, geometry", () => {
    expect(bad({ logicalBlockSize: 256 })).toThrow(
      "logicalBlockSize must be a power of two in 512..2097152, got 256",
    );
    expect(bad({ logicalBlockSize: 1000 })).toThrow(/logicalBlockSize .* got 1000/);
    expect(bad({ logicalBlockSize: 4096, physicalBlockSize: 512, capacityBytes: 4096 })).toThrow(
      "physicalBlockSize must be a power of two in 4096 (logicalBlockSize)..2097152, got 512",
    );
    expect(bad({ minIoSize: 100 })).toThrow(/minIoSize .* got 100/);
    expect(bad({ minIoSize: 512 * 65536 })).toThrow(/minIoSize/);
    expect(bad({ optIoSize: 700 })).toThrow(/optIoSize/);
    expect(bad({ segMax: 255 })).toThrow(/segMax must be an integer in 1\.\.254 .* got 255/);
    expect(bad({ segMax: 0 })).toThrow(/segMax/);
    expect(bad({ sizeMax: 100 })).toThrow(/sizeMax must be an integer in 512\.\.4294967295, got 100/);
    expect(bad({ maxDiscardSectors: 0 })).toThrow(/maxDiscardSectors/);
    expect(bad({ maxWriteZeroesSectors: 2 ** 32 })).toThrow(/maxWriteZeroesSectors/);
    expect(bad({ maxDiscardSeg: 2 })).toThrow(/maxDiscardSeg must be an integer in 1\.\.1 .* got 2/);
    expect(bad({ maxWriteZeroesSeg: 0 })).toThrow(/maxWriteZeroesSeg/);
    expect(bad({ geometry: { cylinders: 70000, heads: 1, sectors: 1 } })).toThrow(
      /geometry\.cylinders .* got 70000/,
    );
    expect(bad({ geometry: { cylinders: 1, heads: 256, sectors: 1 } })).toThrow(/geometry\.heads/);
    expect(bad({ geometry: { cylinders: 1, heads: 1, sectors: -1 } })).toThrow(/geometry\.sectors/);
  });

  it("fills QEMU's defaults", () => {
    const o = resolveBlkOptions(base);
    expect(o.logicalBlockSize).toBe(512);
    expect(o.physicalBlockSize).toBe(512);
    expect(o.segMax).toBe(254);
    expect(o.maxDiscardSectors).toBe(0x3fffff);
    expect(o.maxWriteZeroesSectors).toBe(0x3fffff);
    expect(o.maxDiscardSeg).toBe(1);
    expect(o.writeZeroes).toBe(true);
    expect(o.discard).toBe(false);
    expect(
      resolveBlkOptions({ ...base, logicalBlockSize: 4096, capacityBytes: 4096 }).maxDiscardSectors,
    ).toBe(0x3ffff8);
  });

  it("the constructor validates too", () => {
    expect(() => new BlkConfigSpace({ ...base, queueSize: 3 })).toThrow(/queueSize/);
  });
});

describe("writes, negotiation, generation", () => {
  const WB = BlkConfigOffset.WRITEBACK;
  const wceFlush = featuresOf(V.VERSION_1, F.CONFIG_WCE, F.FLUSH);

  function make(o: Partial<BlkDeviceOptions> = {}) {
    const log = { warnings: [] as string[], wb: [] as boolean[], changes: 0 };
    const cfg = new BlkConfigSpace(
      { ...base, ...o },
      {
        onWarning: (m) => log.warnings.push(m),
        onWritebackChange: (w) => log.wb.push(w),
        onConfigChange: () => log.changes++,
      },
    );
    return { cfg, log };
  }

  it("writeback is read-only until CONFIG_WCE is negotiated", () => {
    const { cfg, log } = make();
    cfg.write(WB, 1, 0);
    expect(cfg.read(WB, 1)).toBe(1);
    expect(log.warnings.join()).toMatch(/CONFIG_WCE was not negotiated/);
    expect(cfg.generation).toBe(0);
  });

  it("with CONFIG_WCE the driver toggles the cache; generation moves, callback fires", () => {
    const { cfg, log } = make();
    cfg.negotiate(wceFlush);
    cfg.write(WB, 1, 0);
    expect(cfg.writeback).toBe(false);
    expect(cfg.read(WB, 1)).toBe(0);
    expect(cfg.generation).toBe(1);
    cfg.write(WB, 1, 1);
    expect(cfg.writeback).toBe(true);
    expect(cfg.generation).toBe(2);
    cfg.write(WB, 1, 1); // no change, no bump
    expect(cfg.generation).toBe(2);
    expect(log.wb).toEqual([false, true]);
    expect(log.changes).toBe(0); // a driver write is no config-change interrupt
  });

  it("any non-zero value means writeback (as QEMU), with a warning", () => {
    const { cfg, log } = make({ writeback: false });
    cfg.negotiate(wceFlush);
    cfg.write(WB, 1, 7);
    expect(cfg.writeback).toBe(true);
    expect(log.warnings.join()).toMatch(/defines 0 and 1/);
  });

  it("writes anywhere else, or wider than a byte, are ignored and reported", () => {
    const { cfg, log } = make();
    cfg.negotiate(wceFlush);
    const before = cfg.bytes();
    cfg.write(BlkConfigOffset.CAPACITY, 4, 0xdead);
    cfg.write(BlkConfigOffset.NUM_QUEUES, 2, 9);
    cfg.write(WB, 2, 0);
    cfg.write(WB, 4, 0);
    expect(cfg.bytes()).toEqual(before);
    expect(log.warnings).toHaveLength(4);
    expect(cfg.generation).toBe(0);
  });

  it("a driver without FLUSH gets writethrough and cannot turn writeback on", () => {
    const { cfg, log } = make();
    cfg.negotiate(featuresOf(V.VERSION_1, F.CONFIG_WCE));
    expect(cfg.writeback).toBe(false);
    expect(cfg.read(WB, 1)).toBe(0);
    cfg.write(WB, 1, 1);
    expect(cfg.writeback).toBe(false);
    expect(log.warnings.join()).toMatch(/FLUSH was not negotiated/);
    // Same without CONFIG_WCE (QEMU): no FLUSH, no write cache.
    const b = make();
    b.cfg.negotiate(bit(V.VERSION_1));
    expect(b.cfg.writeback).toBe(false);
  });

  it("FLUSH without CONFIG_WCE keeps the configured cache mode", () => {
    const { cfg } = make();
    cfg.negotiate(featuresOf(V.VERSION_1, F.FLUSH));
    expect(cfg.writeback).toBe(true);
  });

  it("reset restores the cache mode the device started with and forgets the negotiation", () => {
    const { cfg, log } = make();
    cfg.negotiate(wceFlush);
    cfg.write(WB, 1, 0);
    cfg.reset();
    expect(cfg.writeback).toBe(true);
    expect(cfg.negotiatedFeatures).toBe(0n);
    expect(log.wb).toEqual([false, true]);
    cfg.write(WB, 1, 0);
    expect(cfg.writeback).toBe(true);
  });

  it("setCapacity resizes, bumps the generation and asks for a config interrupt", () => {
    const { cfg, log } = make({ logicalBlockSize: 4096, capacityBytes: 4096 });
    cfg.setCapacity(2 ** 33);
    expect(cfg.capacityBytes).toBe(2 ** 33);
    expect(cfg.read64(0)).toBe(BigInt(2 ** 24));
    expect(cfg.generation).toBe(1);
    expect(log.changes).toBe(1);
    cfg.setCapacity(2 ** 33); // unchanged
    expect(cfg.generation).toBe(1);
    expect(log.changes).toBe(1);
    expect(() => cfg.setCapacity(4096 + 512)).toThrow(
      /multiple of the logical block size \(4096\), got 4608/,
    );
    expect(() => cfg.setCapacity(-4096)).toThrow(/capacity/);
    expect(cfg.capacityBytes).toBe(2 ** 33);
  });

  it("bytes() is a copy", () => {
    const { cfg } = make();
    const b = cfg.bytes();
    b[0] = 0xff;
    expect(cfg.read(0, 1)).toBe(((1 << 20) / 512) & 0xff);
  });
});

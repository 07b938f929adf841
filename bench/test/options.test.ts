import { describe, expect, it } from "vitest";
import { crc32c } from "../dist/crc32c.js";
import {
  DEFAULT_JOB_ARGS,
  DEVICE_SPECS,
  JOB_SPECS,
  normalizeArgv,
  OptionError,
  parseMapping,
  resolveOptions,
} from "../dist/options.js";
import { XorShift128 } from "../dist/prng.js";
import { escapeXml, niceTicks, renderBarChart } from "../dist/svg.js";
import {
  DEFAULT_PERCENTILES,
  formatEta,
  num2str,
  parseCpuList,
  parsePercentiles,
  parseSize,
  parseTimeMs,
} from "../dist/units.js";
import { checkVerifyBlock, fillVerifyBlock } from "../dist/verify.js";
import { cli } from "./cli.js";
import { parseXml } from "./xml.js";

describe("sizes, times, percentiles, cpu lists", () => {
  it("parses fio sizes with base 1024", () => {
    expect(parseSize("4k")).toBe(4096);
    expect(parseSize("4K")).toBe(4096);
    expect(parseSize("4KiB")).toBe(4096);
    expect(parseSize("256M")).toBe(256 << 20);
    expect(parseSize("1g")).toBe(1 << 30);
    expect(parseSize("1.5m")).toBe(1.5 * 1024 * 1024);
    expect(parseSize("512")).toBe(512);
    expect(parseSize("2t")).toBe(2 * 1024 ** 4);
    for (const bad of ["", "k", "1x", "-4k", "4 kk", "1e3"]) expect(parseSize(bad)).toBeNaN();
  });

  it("parses fio times (bare = seconds)", () => {
    expect(parseTimeMs("10")).toBe(10_000);
    expect(parseTimeMs("10s")).toBe(10_000);
    expect(parseTimeMs("500ms")).toBe(500);
    expect(parseTimeMs("2m")).toBe(120_000);
    expect(parseTimeMs("1h")).toBe(3_600_000);
    expect(parseTimeMs("250us")).toBeCloseTo(0.25);
    expect(parseTimeMs("1.5")).toBe(1500);
    for (const bad of ["", "abc", "10 parsecs", "-1"]) expect(parseTimeMs(bad)).toBeNaN();
  });

  it("parses fio percentile lists", () => {
    expect(parsePercentiles("1:5:50:99:99.9")).toEqual([1, 5, 50, 99, 99.9]);
    expect(parsePercentiles("100")).toEqual([100]);
    expect(() => parsePercentiles("0")).toThrow(/not in \(0, 100\]/);
    expect(() => parsePercentiles("1:101")).toThrow(/101/);
    expect(() => parsePercentiles("1:x")).toThrow(/"x" is not a number/);
    expect(() => parsePercentiles(Array.from({ length: 21 }, (_, i) => i + 1).join(":"))).toThrow(
      /at most 20/,
    );
    expect(DEFAULT_PERCENTILES).toHaveLength(17);
  });

  it("parses cpu lists", () => {
    expect(parseCpuList("0-3,6", 8)).toEqual([0, 1, 2, 3, 6]);
    expect(parseCpuList("1", 2)).toEqual([1]);
    expect(() => parseCpuList("0-9", 2)).toThrow(/CPU 9 does not exist/);
    expect(() => parseCpuList("3-1", 8)).toThrow(/reversed/);
    expect(() => parseCpuList("a", 8)).toThrow(/not a CPU/);
  });

  it("formats numbers like fio's num2str", () => {
    expect(num2str(6543)).toBe("6543");
    expect(num2str(97_300)).toBe("97.3k");
    expect(num2str(18_285)).toBe("18.3k");
    expect(num2str(168_000)).toBe("168k");
    expect(num2str(1_400_000)).toBe("1400k");
    expect(num2str(380 * 1024 * 1024, 1024)).toBe("380Mi");
    expect(num2str(71.5 * 1024 * 1024, 1024)).toBe("71.5Mi");
    expect(formatEta(6_000)).toBe("00m:06s");
    expect(formatEta(3_723_000)).toBe("1h:02m:03s");
  });
});

describe("option resolution", () => {
  it("gives fio's defaults", () => {
    const o = resolveOptions({}, 2);
    expect(o).toMatchObject({
      name: "vblk",
      rw: "read",
      rwmixread: 50,
      bs: 4096,
      iodepth: 1,
      numjobs: 1,
      numQueues: 1,
      queueSize: 256,
      direct: true,
      ioengine: "auto",
      outputFormat: "normal",
      seed: 137,
      pollMaxNs: 32768,
      pollEngine: false,
      iothreadWait: "ring",
      iothreadCpus: "auto",
      eventIdx: true,
      driverPollNs: 200_000,
      driverPollMaxNs: 2_000_000,
      iodepthBatchSubmit: 32,
      timeBased: false,
      rampMs: 0,
      warmupMs: 300,
    });
    expect(o.runtimeMs).toBeUndefined();
    expect(o.percentiles).toEqual(DEFAULT_PERCENTILES);
  });

  it("reads --iothread-cpus and --poll-engine", () => {
    expect(resolveOptions({ iothreadCpus: "1" }, 2).iothreadCpus).toEqual([1]);
    expect(resolveOptions({ iothreadCpus: "none" }, 2).iothreadCpus).toBe("none");
    expect(resolveOptions({ pollEngine: "1" }, 2).pollEngine).toBe(true);
    expect(resolveOptions({ iothreadWait: "epoll" }, 2).iothreadWait).toBe("epoll");
  });

  it("maps engine aliases and rw aliases", () => {
    expect(resolveOptions({ ioengine: "psync" }, 2).ioengine).toBe("threads");
    expect(resolveOptions({ ioengine: "sync" }, 2).ioengine).toBe("threads");
    expect(resolveOptions({ ioengine: "native" }, 2).ioengine).toBe("libaio");
    expect(resolveOptions({ rw: "readwrite" }, 2).rw).toBe("rw");
  });

  it("defaults num-queues to numjobs and grows queue-size for deep iodepths", () => {
    const o = resolveOptions({ numjobs: "3", iodepth: "128" }, 2);
    expect(o.numQueues).toBe(3);
    expect(o.queueSize).toBe(512);
    expect(resolveOptions({ iodepth: "64" }, 2).queueSize).toBe(256);
  });

  it("normalizes - and _ in option names, and aliases", () => {
    const specs = [...JOB_SPECS, ...DEVICE_SPECS];
    expect(
      normalizeArgv(["--ramp-time=1", "--num_queues", "4", "--randseed=5", "--time-based", "--bogus"], specs),
    ).toEqual(["--ramp_time=1", "--num-queues", "4", "--seed=5", "--time_based", "--bogus"]);
    expect(normalizeArgv(["--", "--ramp-time=1"], specs)).toEqual(["--", "--ramp-time=1"]);
  });

  it("parses --iothread-vq-mapping JSON", () => {
    expect(parseMapping('[{"iothread":"a","vqs":[0,2]},{"iothread":"b","vqs":[1]}]')).toEqual([
      { iothread: "a", vqs: [0, 2] },
      { iothread: "b", vqs: [1] },
    ]);
    expect(parseMapping('[{"iothread":"a"},{"iothread":"b"}]')).toEqual([
      { iothread: "a" },
      { iothread: "b" },
    ]);
    expect(() => parseMapping("{")).toThrow(OptionError);
    expect(() => parseMapping('[{"iothread":"a","vqz":[0]}]')).toThrow(/unknown key "vqz"/);
  });

  it("uses the default job when given no options", () => {
    expect(DEFAULT_JOB_ARGS).toEqual(
      expect.arrayContaining([
        "--rw=randread",
        "--bs=4k",
        "--iodepth=64",
        "--numjobs=2",
        "--ioengine=auto",
        "--size=256M",
      ]),
    );
  });
});

describe("bad options: exit 1, a message naming the option and what is allowed", () => {
  const cases: [string[], string, RegExp][] = [
    [["--rw=foo"], "rw", /read, write, randread, randwrite, rw, readwrite, randrw/],
    [["--bs=1000"], "bs", /multiple of 512/],
    [["--bs=64m"], "bs", /multiple of 512 from 512 to 16M/],
    [["--ioengine=spdk"], "ioengine", /null, memory, threads .*io_uring, libaio .*auto/],
    [["--iodepth=0"], "iodepth", /integer from 1 to 341/],
    [["--iodepth=x"], "iodepth", /integer from 1 to 341/],
    [["--numjobs=0"], "numjobs", /integer from 1 to 256/],
    [["--rwmixread=101"], "rwmixread", /integer from 0 to 100/],
    [["--size=12q"], "size", /optional suffix k, m, g/],
    [["--size=1k", "--bs=4k"], "size", /size >= bs/],
    [["--runtime=0"], "runtime", /positive duration/],
    [["--runtime=soon"], "runtime", /duration/],
    [["--ramp_time=abc"], "ramp_time", /duration/],
    [["--time_based"], "time_based", /--runtime/],
    [["--time_based=maybe", "--runtime=1"], "time_based", /0 or 1/],
    [["--direct=2"], "direct", /0 or 1/],
    [["--output-format=xml"], "output-format", /normal, json, terse/],
    [["--percentile_list=1:200"], "percentile_list", /numbers in \(0, 100\]/],
    [["--verify=md5"], "verify", /crc32c/],
    [["--verify=crc32c", "--ioengine=null"], "verify", /memory, threads, io_uring, libaio or auto/],
    [["--number_ios=0"], "number_ios", /positive integer/],
    [["--seed=-1"], "seed", /integer from 0/],
    [["--cpus_allowed=0-99"], "cpus_allowed", /CPU numbers and ranges/],
    [["--num-queues=1", "--numjobs=2"], "num-queues", /integer >= numjobs/],
    [["--queue-size=100"], "queue-size", /power of two from 4 to 1024/],
    [["--queue-size=64", "--iodepth=32"], "iodepth", /iodepth <= 21/],
    [["--iothreads=0"], "iothreads", /integer from 1 to 64/],
    [["--iothreads=2", '--iothread-vq-mapping=[{"iothread":"a"}]'], "iothread-vq-mapping", /one of the two/],
    [["--iothread-vq-mapping=nope"], "iothread-vq-mapping", /JSON array/],
    [['--iothread-vq-mapping=[{"iothread":"a","vqs":[0,5]}]'], "iothread-vq-mapping", /vq 5.*allowed:/],
    [
      ['--iothread-vq-mapping=[{"iothread":"a","vqs":[0]},{"iothread":"a","vqs":[1]}]', "--num-queues=2"],
      "iothread-vq-mapping",
      /allowed:/,
    ],
    [["--poll-max-ns=-5"], "poll-max-ns", /integer from 0/],
    [["--event-idx=2"], "event-idx", /0 or 1/],
    [["--driver-poll-ns=x"], "driver-poll-ns", /integer from 0/],
    [["--poll-engine=2"], "poll-engine", /0 or 1/],
    [["--iothread-wait=spin"], "iothread-wait", /allowed: ring, epoll/],
    [["--driver-poll-max-ns=-1"], "driver-poll-max-ns", /integer from 0/],
    [["--iodepth_batch=-1"], "iodepth_batch_submit", /integer from 0 to 1024/],
    [["--iothread-cpus=7"], "iothread-cpus", /auto, none, or CPU numbers and ranges 0-/],
    [["--iothread-cpus=fast"], "iothread-cpus", /auto, none, or CPU numbers/],
    [["--repeat=0"], "repeat", /integer from 1 to 100/],
    [["--compare-fio", "--ioengine=memory"], "compare-fio", /null, threads .*io_uring, libaio or auto/],
    [["sweep", "--iodepths=1,0"], "iodepths", /comma-separated integers from 1 to 341/],
    [["sweep", "--iothreads-list=a"], "iothreads-list", /comma-separated integers from 1 to 64/],
  ];
  for (const [args, opt, allowed] of cases) {
    it(`${args.join(" ")}`, async () => {
      const r = await cli(args);
      expect(r.code).toBe(1);
      expect(r.out).toBe("");
      expect(r.err).toContain(`--${opt}`);
      expect(r.err).toMatch(/allowed/);
      expect(r.err).toMatch(allowed);
    });
  }

  it("unknown options are named", async () => {
    const r = await cli(["--frobnicate=1"]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/unknown option '--frobnicate/);
    expect(r.err).toMatch(/--help/);
  });

  it("--help exits 0 and lists the options", async () => {
    const r = await cli(["--help"]);
    expect(r.code).toBe(0);
    for (const o of [
      "--rw",
      "--iodepth",
      "--iothread-vq-mapping",
      "--driver-poll-ns",
      "--compare-fio",
      "--verify",
    ])
      expect(r.out).toContain(o);
  });
});

describe("crc32c, PRNG and the verify block format", () => {
  it("matches the CRC-32C check value", () => {
    expect(crc32c(new TextEncoder().encode("123456789"))).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(0))).toBe(0);
    const data = new Uint8Array(1000).map((_, i) => (i * 7) & 0xff);
    // incremental = one shot, whatever the split
    expect(crc32c(data, crc32c(data, 0, 0, 333), 333)).toBe(crc32c(data));
    expect(crc32c(new Uint8Array(32))).toBe(0x8a9136aa); // iSCSI test vector: 32 zero bytes
  });

  it("PRNG is seeded and spreads", () => {
    const a = new XorShift128(1);
    const b = new XorShift128(1);
    const c = new XorShift128(2);
    const xs = Array.from({ length: 5 }, () => a.nextU32());
    expect(Array.from({ length: 5 }, () => b.nextU32())).toEqual(xs);
    expect(c.nextU32()).not.toBe(xs[0]);
    const r = new XorShift128(7);
    const hits = new Array(10).fill(0);
    for (let i = 0; i < 10_000; i++) hits[r.below(10)]++;
    for (const h of hits) expect(h).toBeGreaterThan(800);
    for (let i = 0; i < 100; i++) expect(r.below(2 ** 40)).toBeLessThan(2 ** 40);
  });

  it("a filled block checks; a flipped byte or a misplaced block is caught with its offset", () => {
    const bs = 4096;
    const blk = new Uint8Array(bs);
    fillVerifyBlock(blk, 8192, 137, 0);
    expect(checkVerifyBlock(blk, 8192)).toBeUndefined();
    const bad = blk.slice();
    bad[1000]! ^= 0x40;
    expect(checkVerifyBlock(bad, 8192)).toMatch(/crc32c mismatch at offset 8192 \(0x2000\)/);
    expect(checkVerifyBlock(blk, 12288)).toMatch(/misplaced block at offset 12288.*written for offset 8192/);
    expect(checkVerifyBlock(new Uint8Array(bs), 0)).toMatch(/bad magic at offset 0/);
    // a different offset gives different payload bytes
    const other = new Uint8Array(bs);
    fillVerifyBlock(other, 12288, 137, 0);
    expect(Buffer.compare(Buffer.from(other.subarray(32)), Buffer.from(blk.subarray(32)))).not.toBe(0);
  });
});

describe("SVG bar chart", () => {
  it("picks nice ticks", () => {
    expect(niceTicks(95)).toEqual([0, 20, 40, 60, 80, 100]);
    expect(niceTicks(0)).toEqual([0, 1]);
    expect(niceTicks(1_234_567).at(-1)).toBeGreaterThanOrEqual(1_234_567);
  });

  it("renders well-formed XML, escaping text", () => {
    const svg = renderBarChart({
      title: 'IOPS <by> "iodepth" & IOThreads',
      xLabel: "iodepth",
      yLabel: "IOPS",
      categories: ["iodepth 1", "iodepth 64"],
      series: [
        { name: "1 IOThread", values: [147_000, 238_000] },
        { name: "2 IOThreads", values: [235_000, 405_000] },
        { name: "4 IOThreads", values: [282_000, 505_000] },
      ],
      format: (v) => num2str(v),
    });
    const names = parseXml(svg);
    expect(names[0]).toBe("svg");
    expect(names.filter((n) => n === "rect").length).toBeGreaterThanOrEqual(1 + 6 + 3);
    expect(svg).toContain(escapeXml('IOPS <by> "iodepth" & IOThreads'));
    expect(svg).toContain("505k");
    expect(() => parseXml("<svg><g></svg>")).toThrow();
    expect(() => parseXml('<svg a="1" a="2"/>')).toThrow();
    expect(() => parseXml("<svg>&nope;</svg>")).toThrow();
  });
});

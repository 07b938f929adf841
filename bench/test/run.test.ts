/**
 * Real (short) runs: every engine, the JSON shape, verify (clean and with a
 * corrupted block), sweep outputs, --compare-fio, and SIGINT cleanup.
 * Kept to about a second per run: the machine has 2 shared cores.
 */
import { spawn } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { diskIrqCpus, nativeAvailable, probeEngines } from "@vblk/backend-libaio";
import { afterAll, describe, expect, it } from "vitest";
import { findFio } from "../dist/compare.js";
import { liveTempImages } from "../dist/image.js";
import { resolveOptions } from "../dist/options.js";
import { runBench } from "../dist/runner.js";
import { cli } from "./cli.js";
import { parseXml } from "./xml.js";

const CLI = fileURLToPath(new URL("../dist/cli.js", import.meta.url));
const work = mkdtempSync(join(tmpdir(), "vblk-bench-test-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function nativeEngine(kind: "io_uring" | "libaio"): true | string {
  if (!nativeAvailable()) return "native addon not loaded";
  const p = probeEngines()[kind];
  return p === true ? true : String(p);
}

const QUICK = ["--runtime=1", "--time_based", "--size=16M", "--iodepth=8"];

// biome-ignore lint/suspicious/noExplicitAny: parsed JSON, checked field by field
type Json = Record<string, any>;

function checkLat(l: Json, withPercentiles: boolean) {
  for (const k of ["min", "max", "mean", "stddev", "N"]) expect(typeof l[k], k).toBe("number");
  if (l.N > 0) {
    expect(l.min).toBeGreaterThan(0);
    expect(l.max).toBeGreaterThanOrEqual(l.min);
    expect(l.mean).toBeGreaterThanOrEqual(l.min);
    expect(l.mean).toBeLessThanOrEqual(l.max);
  }
  if (withPercentiles) {
    expect(Object.keys(l.percentile)).toContain("99.000000");
    const vals = Object.values(l.percentile) as number[];
    for (let i = 1; i < vals.length; i++) expect(vals[i]).toBeGreaterThanOrEqual(vals[i - 1]!);
  }
}

function checkDir(d: Json) {
  for (const k of [
    "io_bytes",
    "io_kbytes",
    "bw_bytes",
    "bw",
    "iops",
    "runtime",
    "total_ios",
    "short_ios",
    "drop_ios",
    "bw_min",
    "bw_max",
    "bw_agg",
    "bw_mean",
    "bw_dev",
    "bw_samples",
    "iops_min",
    "iops_max",
    "iops_mean",
    "iops_stddev",
    "iops_samples",
  ])
    expect(typeof d[k], k).toBe("number");
  checkLat(d.slat_ns, false);
  checkLat(d.clat_ns, true);
  checkLat(d.lat_ns, false);
  if (d.total_ios > 0) {
    // iops x runtime = total_ios (within 5%), bytes consistent with ios
    expect(Math.abs((d.iops * d.runtime) / 1000 - d.total_ios) / d.total_ios).toBeLessThan(0.05);
    expect(d.io_bytes).toBe(d.total_ios * 4096);
    expect(Math.abs(d.bw_bytes - d.iops * 4096) / d.bw_bytes).toBeLessThan(0.01);
    expect(d.clat_ns.N).toBe(d.total_ios);
    expect(d.lat_ns.N).toBe(d.total_ios);
  }
}

describe("real runs", () => {
  it("null engine: fio-shaped JSON with consistent numbers", async () => {
    const r = await cli([
      "--ioengine=null",
      "--rw=randread",
      "--numjobs=2",
      ...QUICK,
      "--output-format=json",
    ]);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out) as Json;
    expect(j["fio version"]).toBe("vblk-bench-0.1");
    expect(j.jobs).toHaveLength(1);
    const job = j.jobs[0];
    expect(job).toMatchObject({ jobname: "vblk", groupid: 0, error: 0 });
    expect(job["job options"]).toMatchObject({ ioengine: "null", rw: "randread", numjobs: "2" });
    for (const k of ["usr_cpu", "sys_cpu", "ctx", "majf", "minf", "job_runtime"])
      expect(typeof job[k], k).toBe("number");
    checkDir(job.read);
    checkDir(job.write);
    expect(job.read.total_ios).toBeGreaterThan(100);
    expect(job.write.total_ios).toBe(0);
    expect(job.read.runtime).toBeGreaterThan(900);
    expect(job.read.runtime).toBeLessThan(1500);
    const v = j.vblk;
    expect(v.engine).toBe("null");
    // a time-based run warms the JIT up for 300 ms outside the measured window
    expect(v.warmup_ms).toBe(300);
    expect(v.placement).toMatchObject({ iothread_cpus: null, job_cpus: null });
    expect(v.placement.note).toMatch(/IOThreads unpinned \(auto: no native engine\)/);
    expect(v.num_queues).toBe(2);
    expect(v.mapping).toEqual([{ iothread: "iothread0", vqs: [0, 1] }]);
    expect(v.iothreads).toHaveLength(1);
    expect(v.queues).toHaveLength(2);
    expect(v.per_job).toHaveLength(2);
    for (const pj of v.per_job) checkDir(pj.read);
    const sum = v.per_job.reduce((a: number, p: Json) => a + p.read.total_ios, 0);
    expect(sum).toBe(job.read.total_ios);
    // the device served (about) what the jobs completed in the window
    const served = v.queues.reduce((a: number, q: Json) => a + q.requests, 0);
    expect(served).toBeGreaterThan(job.read.total_ios * 0.9);
    for (const k of ["requests", "batches", "interrupts", "kicks", "pollHits", "pollMisses", "busyPct"])
      expect(typeof v.iothreads[0][k], k).toBe("number");
  });

  it("memory engine: terse line with fio's v3 field layout (up to CPU)", async () => {
    const r = await cli([
      "--ioengine=memory",
      "--rw=randrw",
      "--rwmixread=70",
      ...QUICK,
      "--output-format=terse",
    ]);
    expect(r.code).toBe(0);
    const f = r.out.trim().split(";");
    expect(f).toHaveLength(5 + 3 * 41 + 5);
    expect(f.slice(0, 5)).toEqual(["3", "vblk-bench-0.1", "vblk", "0", "0"]);
    const readIos = Number(f[7]);
    const writeIos = Number(f[48]);
    expect(readIos).toBeGreaterThan(0);
    expect(writeIos).toBeGreaterThan(0);
    expect(readIos).toBeGreaterThan(writeIos); // rwmixread=70
    expect(f[17]).toMatch(/^1\.000000%=\d+$/);
    expect(f[129]).toMatch(/%$/); // usr cpu
  });

  it("threads engine (psync): normal report; the temporary image is removed", async () => {
    const dir = mkdtempSync(join(work, "img-"));
    const r = await cli([
      "--ioengine=psync",
      "--rw=randread",
      `--directory=${dir}`,
      ...QUICK,
      "--percentile_list=50:99",
    ]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^vblk: \(g=0\): rw=randread, bs=\(R\) 4096B-4096B/);
    expect(r.out).toMatch(/read: IOPS=[\d.]+k?, BW=/);
    expect(r.out).toMatch(
      /clat percentiles \((nsec|usec|msec)\):\n\s+\| 50\.00th=\[\s*\d+\], 99\.00th=\[\s*\d+\]/,
    );
    expect(r.out).toContain("Run status group 0 (all jobs):");
    expect(r.out).toMatch(/vblk: engine=threads \(asked: psync\)/);
    expect(r.out).toMatch(/IOThread virtqueue mapping/);
    expect(r.out).toMatch(/iothread0\s+0\s+\d+/);
    expect(readdirSync(dir)).toEqual([]);
    expect(liveTempImages()).toEqual([]);
  });

  const uring = nativeEngine("io_uring");
  it.skipIf(uring !== true)(
    "io_uring IOThreads sleeping in epoll (--iothread-wait=epoll) serve a verified run",
    async () => {
      const img = join(work, "epoll-wait.img");
      const fd = openSync(img, "w");
      writeSync(fd, Buffer.alloc(4 << 20, 0), 0, 4 << 20, 0);
      closeSync(fd);
      const opts = resolveOptions({
        ioengine: "io_uring",
        filename: img,
        rw: "randwrite",
        iodepth: "4",
        numjobs: "2",
        verify: "crc32c",
        iothreadWait: "epoll",
      });
      const r = await runBench(opts);
      expect(r.error).toBe(0);
      expect(r.device.iothreadWait).toBe("epoll");
      expect(r.verify).toEqual({ blocks: 1024, errors: 0 });
    },
  );

  for (const kind of ["io_uring", "libaio"] as const) {
    const ok = nativeEngine(kind);
    if (ok !== true) console.warn(`skipping the ${kind} run: ${ok}`);
    it.skipIf(ok !== true)(`${kind} engine on an existing file, 2 IOThreads`, async () => {
      const img = join(work, `${kind}.img`);
      const fd = openSync(img, "w");
      writeSync(fd, Buffer.alloc(8 << 20, 0xab), 0, 8 << 20, 0);
      closeSync(fd);
      const r = await cli([
        `--ioengine=${kind}`,
        `--filename=${img}`,
        "--rw=randrw",
        "--numjobs=2",
        "--iothreads=2",
        "--runtime=1",
        "--time_based",
        "--iodepth=8",
        "--output-format=json",
      ]);
      expect(r.code, r.err).toBe(0);
      const j = JSON.parse(r.out) as Json;
      expect(j.vblk.engine).toBe(kind);
      expect(j.vblk.guest_memory_aligned).toBe(true);
      // --iothread-cpus=auto: IOThreads where the disk's interrupts land, jobs elsewhere
      const irq = diskIrqCpus(img);
      expect(j.vblk.placement.iothread_cpus).toEqual(irq?.cpus ?? null);
      expect(j.vblk.placement.job_cpus).toEqual(irq ? irq.online.filter((c) => !irq.cpus.includes(c)) : null);
      expect(j.vblk.poll_engine).toBe(false);
      expect(j.vblk.iothread_wait).toBe("ring");
      expect(j.vblk.mapping).toEqual([
        { iothread: "iothread0", vqs: [0] },
        { iothread: "iothread1", vqs: [1] },
      ]);
      checkDir(j.jobs[0].read);
      checkDir(j.jobs[0].write);
      expect(j.jobs[0].read.total_ios + j.jobs[0].write.total_ios).toBeGreaterThan(50);
      expect(readFileSync(img).length).toBe(8 << 20); // the user's file is kept
    });
  }
});

describe("--verify=crc32c", () => {
  it("passes on a clean run (threads engine, every block written then read back)", async () => {
    const opts = resolveOptions({
      ioengine: "threads",
      rw: "randwrite",
      size: "4M",
      iodepth: "8",
      numjobs: "2",
      verify: "crc32c",
      direct: "0",
      directory: work,
    });
    const r = await runBench(opts);
    expect(r.error).toBe(0);
    expect(r.verify).toEqual({ blocks: 1024, errors: 0 });
    expect(r.device.warmupMs).toBe(0); // no warm-up outside a timed window
    expect(r.group.write.total_ios).toBe(1024);
    expect(r.group.read.total_ios).toBe(1024);
  });

  it("passes when requests are published in chunks of 3 and one by one (--iodepth_batch_submit)", async () => {
    for (const batch of ["3", "1"]) {
      const opts = resolveOptions({
        ioengine: "memory",
        rw: "randwrite",
        size: "1M",
        iodepth: "8",
        verify: "crc32c",
        iodepth_batch_submit: batch,
      });
      expect(opts.iodepthBatchSubmit).toBe(Number(batch));
      const r = await runBench(opts);
      expect(r.error, batch).toBe(0);
      expect(r.verify, batch).toEqual({ blocks: 256, errors: 0 });
    }
  });

  it("catches a byte flipped in the image file between the phases, naming the offset", async () => {
    const opts = resolveOptions({
      ioengine: "threads",
      rw: "write",
      size: "2M",
      iodepth: "4",
      verify: "crc32c",
      direct: "0",
      directory: work,
    });
    const victim = 5 * 4096;
    const r = await runBench(opts, {
      betweenVerifyPhases: ({ path, ranges }) => {
        expect(ranges).toEqual([{ job: 0, start: 0, bytes: 2 << 20 }]);
        const fd = openSync(path!, "r+");
        const b = Buffer.alloc(1);
        // flip one payload byte of the sixth block
        const off = victim + 100;
        const rfd = readFileSync(path!);
        b[0] = rfd[off]! ^ 0xff;
        writeSync(fd, b, 0, 1, off);
        closeSync(fd);
      },
    });
    expect(r.verify).toEqual({ blocks: 512, errors: 1 });
    expect(r.error).toBe(84);
    expect(r.errorMessages.join("\n")).toMatch(/crc32c mismatch at offset 20480 \(0x5000\)/);
  });

  it("catches a misplaced block in the memory engine's disk", async () => {
    const opts = resolveOptions({
      ioengine: "memory",
      rw: "randwrite",
      size: "1M",
      iodepth: "4",
      verify: "crc32c",
    });
    const r = await runBench(opts, {
      betweenVerifyPhases: ({ disk, bs }) => {
        const d = new Uint8Array(disk!);
        d.copyWithin(3 * bs, 7 * bs, 8 * bs); // block 7's data lands at block 3
      },
    });
    expect(r.verify?.errors).toBe(1);
    expect(r.errorMessages.join("\n")).toMatch(/misplaced block at offset 12288 .*written for offset 28672/);
  });

  it("the CLI reports the verify pass and exits 0", async () => {
    const ok = await cli(["--ioengine=memory", "--rw=write", "--size=1M", "--verify=crc32c"]);
    expect(ok.code).toBe(0);
    expect(ok.out).toMatch(/verify {7}: crc32c, 256 blocks read back, 0 bad/);
  });
});

describe("sweep", () => {
  it("writes a valid SVG, CSV and JSON", async () => {
    const out = join(work, "sweep");
    const r = await cli([
      "sweep",
      "--ioengine=null",
      "--iodepths=1,4",
      "--iothreads-list=1,2",
      "--numjobs=1",
      "--runtime=300ms",
      `--out=${out}`,
    ]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/iodepth\s+iothreads=1\s+iothreads=2/);
    const j = JSON.parse(readFileSync(`${out}.json`, "utf8")) as Json;
    expect(j.points).toHaveLength(4);
    for (const p of j.points) {
      expect(p.iops).toBeGreaterThan(0);
      expect(p.numQueues).toBe(Math.max(1, p.iothreads));
    }
    const csv = readFileSync(`${out}.csv`, "utf8").trim().split("\n");
    expect(csv[0]).toMatch(/^iodepth,iothreads,numjobs,num_queues,engine,iops,/);
    expect(csv).toHaveLength(5);
    const svg = readFileSync(`${out}.svg`, "utf8");
    const names = parseXml(svg);
    expect(names[0]).toBe("svg");
    expect(svg).toContain("iodepth 4");
    expect(svg).toContain("2 IOThreads");
  });
});

describe("--compare-fio", () => {
  const fio = findFio();
  if (!fio) console.warn("skipping the --compare-fio run: no fio on PATH");
  it.skipIf(!fio)("runs vblk and fio alternately and prints the ratio", async () => {
    const r = await cli([
      "--compare-fio",
      "--repeat=2",
      "--ioengine=null",
      "--rw=randread",
      "--runtime=300ms",
      "--time_based",
      "--size=16M",
      "--output-format=json",
    ]);
    expect(r.code, r.err).toBe(0);
    const j = JSON.parse(r.out) as Json;
    expect(j.compare.runs).toHaveLength(2);
    // the order swaps: a drifting disk does not always favour the second
    expect(j.compare.runs.map((x: Json) => x.first)).toEqual(["vblk", "fio"]);
    expect(j.vblk_runs).toHaveLength(2);
    expect(j.fio_runs).toHaveLength(2);
    expect(j.compare.fio_ioengine).toBe("null");
    expect(j.compare.runs[0].vblk_iops).toBeGreaterThan(0);
    expect(j.compare.runs[0].fio_iops).toBeGreaterThan(0);
    expect(j.compare.runs[1].ratio).toBeCloseTo(j.compare.runs[1].vblk_iops / j.compare.runs[1].fio_iops);
    expect(j.compare.ratio_median).toBeCloseTo((j.compare.runs[0].ratio + j.compare.runs[1].ratio) / 2);
    expect(j.vblk_runs[0].jobs[0].read.total_ios).toBeGreaterThan(0);
    expect(j.fio_runs[0].jobs[0].read.iops).toBeGreaterThan(0);
  });

  it("says so and exits 1 when fio is missing", async () => {
    const path = process.env.PATH;
    process.env.PATH = "/nonexistent";
    try {
      const r = await cli(["--compare-fio", "--ioengine=null"]);
      expect(r.code).toBe(1);
      expect(r.err).toMatch(/needs fio on PATH/);
    } finally {
      process.env.PATH = path;
    }
  });
});

describe("the CLI process", () => {
  function run(
    args: string[],
    ready?: () => boolean,
    signalAfterMs = 0,
  ): Promise<{ code: number | null; out: string; err: string }> {
    return new Promise((resolve) => {
      const c = spawn(process.execPath, [CLI, ...args], { stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      let err = "";
      c.stdout.on("data", (d: Buffer) => {
        out += d;
      });
      c.stderr.on("data", (d: Buffer) => {
        err += d;
      });
      let poll: NodeJS.Timeout | undefined;
      if (ready)
        poll = setInterval(() => {
          if (!ready()) return;
          clearInterval(poll);
          poll = undefined;
          setTimeout(() => c.kill("SIGINT"), signalAfterMs);
        }, 50);
      c.on("close", (code) => {
        if (poll) clearInterval(poll);
        resolve({ code, out, err });
      });
    });
  }

  it("SIGINT stops the jobs, prints the partial report, removes the temp image and exits 130", async () => {
    const dir = mkdtempSync(join(work, "sig-"));
    const t0 = Date.now();
    // SIGINT once the temporary image exists and the jobs had time to start
    const r = await run(
      [
        "--ioengine=threads",
        "--rw=randread",
        "--size=8M",
        "--runtime=60",
        "--time_based",
        `--directory=${dir}`,
      ],
      () => readdirSync(dir).length > 0,
      1500,
    );
    expect(Date.now() - t0).toBeLessThan(30_000);
    expect(r.code).toBe(130);
    expect(r.err).toMatch(/SIGINT: stopping jobs/);
    expect(r.out).toMatch(/\(groupid=0, jobs=1\)/);
    expect(r.out).toMatch(/interrupted/);
    expect(readdirSync(dir)).toEqual([]);
  });

  it("a bad option exits 1 and leaves nothing behind", async () => {
    const dir = mkdtempSync(join(work, "bad-"));
    const r = await run(["--ioengine=threads", `--directory=${dir}`, "--rw=sideways"]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/--rw: invalid value "sideways"; allowed: read, write/);
    expect(readdirSync(dir)).toEqual([]);
  });
});

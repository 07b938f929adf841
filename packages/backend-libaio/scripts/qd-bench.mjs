#!/usr/bin/env node
// Random-read speed check for the native engines (not a test).
//
//   node packages/backend-libaio/scripts/qd-bench.mjs --engine io_uring --depth 64 --seconds 10
//
// Keeps `depth` random O_DIRECT reads of `bs` bytes in flight against a file,
// polling reap() in a loop (or sleeping in waitCompletions with --mode wait),
// refilling every completed slot with one submit() per reap. Prints IOPS,
// latency and syscalls per request. With --fio it then runs fio with the same
// engine / depth / block size / file for comparison (apt-get install fio).
//
// Options: --engine io_uring|libaio  --depth N  --seconds S  --bs BYTES
//          (--mode epoll: sleep in epoll_wait on the engine's completion eventfd, like an IOThread)
//          --file PATH (default: $TMPDIR/vblk-qd-bench.img, created with random data)
//          --size BYTES (when creating the file; default 1 GiB)  --mode poll|wait  --fio
//          --buffered (no O_DIRECT: with a cached file this measures the software path,
//            submit + reap, rather than the disk)
//          --json (one JSON line instead of text)
import { spawnSync } from "node:child_process";
import { randomFillSync } from "node:crypto";
import { closeSync, existsSync, openSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const args = process.argv.slice(2);
function opt(name, dflt) {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return dflt;
  const v = args[i + 1];
  return v === undefined || v.startsWith("--") ? true : v;
}
const engineKind = String(opt("engine", "io_uring"));
const depth = Number(opt("depth", 1));
const seconds = Number(opt("seconds", 5));
const bs = Number(opt("bs", 4096));
const file = String(opt("file", join(tmpdir(), "vblk-qd-bench.img")));
const size = Number(opt("size", 1024 * 1024 * 1024));
const mode = String(opt("mode", "poll"));
const runFio = opt("fio", false) === true;
const json = opt("json", false) === true;
const buffered = opt("buffered", false) === true;

const m = await import(new URL("../dist/index.js", import.meta.url).href);
if (!m.nativeAvailable()) {
  console.error(`native addon not available: ${m.nativeLoadError()}`);
  process.exit(1);
}

if (!existsSync(file)) {
  if (!json) console.error(`creating ${file} (${size} bytes of random data)...`);
  const fd = openSync(file, "w");
  const chunk = Buffer.alloc(64 * 1024 * 1024);
  for (let off = 0; off < size; off += chunk.length) {
    randomFillSync(chunk);
    writeSync(fd, chunk, 0, Math.min(chunk.length, size - off), off);
  }
  closeSync(fd);
}

const f = m.openBlockFile(file, { direct: !buffered, readOnly: true });
const blocks = Math.floor(f.sizeBytes / bs);
const g = m.allocGuestMemory(depth * bs);
const mem = new Uint8Array(g.buffer);
const e = new m.NativeEngine({
  kind: engineKind,
  fd: f.fd,
  ownsFd: true,
  direct: f.direct,
  blockSize: f.logicalBlockSize,
  isBlockDevice: f.isBlockDevice,
  regions: [mem],
  depth,
});
const { sq, iov, cq } = e;
// --mode epoll: sleep in epoll on the completion eventfd (as the IOThread does)
const poller = mode === "epoll" ? new m.Poller() : null;
if (poller) poller.add(e.completionFd, 1);
const SQ = m.SQ_STRIDE;
const IOV = m.IOV_STRIDE;

let rng = 0x9e3779b9;
function nextBlock() {
  rng ^= rng << 13;
  rng ^= rng >>> 17;
  rng ^= rng << 5;
  return (rng >>> 0) % blocks;
}

// iovec i always points at slot i's buffer
for (let i = 0; i < depth; i++) {
  iov[i * IOV] = 0;
  iov[i * IOV + 1] = i * bs;
  iov[i * IOV + 2] = bs;
}
const started = new Float64Array(depth);
const hist = new Uint32Array(100_001); // latency in us, last bucket = overflow
let n = 0;
function queue(slot) {
  const r = n * SQ;
  sq[r] = m.OP_READ;
  sq[r + 1] = slot;
  sq[r + 2] = nextBlock() * bs;
  sq[r + 3] = bs;
  sq[r + 4] = 1;
  sq[r + 5] = slot;
  n++;
  started[slot] = performance.now();
}

for (let s = 0; s < depth; s++) queue(s);
e.submit(n);
n = 0;
let done = 0;
let errors = 0;
let emptyReaps = 0;
const cpu0 = process.cpuUsage();
const t0 = performance.now();
const tEnd = t0 + seconds * 1000;
let now = t0;
while (now < tEnd) {
  let k;
  if (mode === "wait") k = e.waitCompletions(1, 100);
  else if (mode === "epoll") {
    k = e.reap();
    if (k === 0) {
      poller.wait(100);
      k = e.reap();
    }
  } else k = e.reap();
  if (k === 0) {
    emptyReaps++;
    if ((emptyReaps & 255) === 0) now = performance.now();
    continue;
  }
  now = performance.now();
  for (let i = 0; i < k; i++) {
    const slot = cq[2 * i];
    if (cq[2 * i + 1] !== bs) errors++;
    const us = Math.round((now - started[slot]) * 1000);
    hist[Math.min(us, 100_000)]++;
    queue(slot);
  }
  done += k;
  e.submit(n);
  n = 0;
}
const elapsed = (performance.now() - t0) / 1000;
const cpu = process.cpuUsage(cpu0);
while (e.inflight() > 0) e.waitCompletions(e.inflight(), 1000);
const st = e.stats();
const desc = e.describe();
e.close();
m.closeFd(g.fd);

function pct(p) {
  const want = done * p;
  let acc = 0;
  for (let i = 0; i < hist.length; i++) {
    acc += hist[i];
    if (acc >= want) return i;
  }
  return hist.length - 1;
}
let sum = 0;
for (let i = 0; i < hist.length; i++) sum += i * hist[i];
const result = {
  engine: engineKind,
  mode,
  direct: f.direct,
  depth,
  bs,
  seconds: Number(elapsed.toFixed(2)),
  iops: Math.round(done / elapsed),
  avgLatUs: Number((sum / Math.max(1, done)).toFixed(1)),
  p50Us: pct(0.5),
  p99Us: pct(0.99),
  cpuUsPerReq: Number(((cpu.user + cpu.system) / Math.max(1, done)).toFixed(2)),
  syscallsPerReq: Number((st.submitCalls / Math.max(1, st.submitted)).toFixed(3)),
  errors,
  describe: desc,
};
if (json) console.log(JSON.stringify(result));
else {
  console.log(
    `vblk ${engineKind} (${mode}${buffered ? ", buffered" : ""}) qd=${depth} bs=${bs}: ${result.iops} IOPS, lat avg ${result.avgLatUs} us p50 ${result.p50Us} us p99 ${result.p99Us} us, ` +
      `cpu ${result.cpuUsPerReq} us/req, ${result.syscallsPerReq} submit syscalls/req, errors ${errors}  [${desc}]`,
  );
}

if (runFio) {
  const fio = spawnSync("fio", ["--version"], { encoding: "utf8" });
  if (fio.status !== 0) {
    console.error("fio not installed (apt-get install -y fio)");
    process.exit(0);
  }
  const r = spawnSync(
    "fio",
    [
      "--name=qd",
      `--filename=${file}`,
      "--rw=randread",
      `--bs=${bs}`,
      `--direct=${buffered ? 0 : 1}`,
      ...(buffered ? ["--invalidate=0"] : []),
      `--ioengine=${engineKind}`,
      `--iodepth=${depth}`,
      `--runtime=${seconds}`,
      "--time_based",
      "--output-format=json",
    ],
    { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 },
  );
  if (r.status !== 0) {
    console.error(`fio failed: ${r.stderr}`);
    process.exit(0);
  }
  const j = JSON.parse(r.stdout.slice(r.stdout.indexOf("{")));
  const rd = j.jobs[0].read;
  const fr = {
    engine: `fio-${engineKind}`,
    depth,
    bs,
    iops: Math.round(rd.iops),
    avgLatUs: Number((rd.clat_ns.mean / 1000).toFixed(1)),
    p50Us: Math.round(rd.clat_ns.percentile["50.000000"] / 1000),
    p99Us: Math.round(rd.clat_ns.percentile["99.000000"] / 1000),
    cpuUsPerReq: Number(
      (
        (((j.jobs[0].usr_cpu + j.jobs[0].sys_cpu) / 100) * j.jobs[0].job_runtime * 1000) /
        Math.max(1, rd.total_ios)
      ).toFixed(2),
    ),
  };
  if (json) console.log(JSON.stringify(fr));
  else
    console.log(
      `fio  ${engineKind}${buffered ? " (buffered)" : ""} qd=${depth} bs=${bs}: ${fr.iops} IOPS, clat avg ${fr.avgLatUs} us p50 ${fr.p50Us} us p99 ${fr.p99Us} us, cpu ${fr.cpuUsPerReq} us/req` +
        `  (vblk/fio = ${(result.iops / fr.iops).toFixed(2)})`,
    );
}

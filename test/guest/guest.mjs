#!/usr/bin/env node
// Real-guest harness: boots a Debian kernel + busybox initramfs in QEMU (TCG, or KVM
// when it works) with one virtio-blk disk served by QEMU itself ("builtin"), by
// qemu-storage-daemon over vhost-user ("qsd"), or by a caller-given vhost-user-blk
// server ("vhost-user", e.g. `vblk serve`), runs a workload script in the guest and
// returns what it printed between VBLK-RESULT markers on the serial console.
//
// Plain ESM with JSDoc so it runs on Node 20 without a build; types for TypeScript
// callers are in guest.d.mts. CLI: `node test/guest/guest.mjs help`.
import { spawn, spawnSync } from "node:child_process";
import { randomBytes, randomFillSync } from "node:crypto";
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

export const GUEST_DIR = dirname(fileURLToPath(import.meta.url));
export const CACHE_DIR = process.env.VBLK_GUEST_CACHE
  ? resolve(process.env.VBLK_GUEST_CACHE)
  : join(GUEST_DIR, "cache");
export const WORKLOAD_DIR = join(GUEST_DIR, "workloads");
export const BUILD_SCRIPT = join(GUEST_DIR, "build-initramfs.sh");
/** Names of the workloads shipped in test/guest/workloads/. */
export const WORKLOADS = ["info", "fs", "fio-verify", "fio-perf", "flush-discard", "readonly"];

const MARK = "VBLK-";
const live = new Set();
process.on("exit", () => {
  for (const child of live) {
    try {
      child.kill("SIGKILL");
    } catch {}
  }
});

function log(quiet, ...args) {
  if (!quiet) console.error("[guest]", ...args);
}

function which(cmd) {
  const r = spawnSync("sh", ["-c", `command -v ${cmd}`], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : null;
}

// ------------------------------------------------------------------ assets

let assetsMemo = null;

/**
 * Build (or reuse from test/guest/cache) the kernel and base initramfs, installing the
 * Debian packages it needs when missing (as root). Throws with the build log on failure.
 * @param {{force?: boolean, install?: boolean, quiet?: boolean}} [opts]
 * @returns {Promise<import("./guest.d.mts").GuestAssets>}
 */
export async function ensureAssets(opts = {}) {
  if (assetsMemo && !opts.force) return assetsMemo;
  const args = [BUILD_SCRIPT];
  if (opts.force) args.push("--force");
  const install = opts.install ?? process.env.VBLK_GUEST_NO_INSTALL !== "1";
  if (!install) args.push("--no-install");
  const { code, stdout, stderr } = await run("bash", args, { quiet: opts.quiet });
  const last = stdout.trim().split("\n").pop() ?? "";
  if (code !== 0 || !last.startsWith("{")) {
    throw new Error(`build-initramfs.sh failed (exit ${code}):\n${stderr.slice(-3000)}`);
  }
  const assets = JSON.parse(last);
  assets.qemu = which("qemu-system-x86_64");
  assets.qsd = which("qemu-storage-daemon");
  assets.qemuVersion = (spawnSync("qemu-system-x86_64", ["--version"], { encoding: "utf8" }).stdout ?? "")
    .split("\n")[0]
    .trim();
  assetsMemo = assets;
  return assets;
}

/**
 * Can a guest be run here? Never throws: gives the reason when not.
 * @param {{install?: boolean, quiet?: boolean}} [opts]
 * @returns {Promise<{ok: true, assets: import("./guest.d.mts").GuestAssets} | {ok: false, reason: string}>}
 */
export async function guestAvailability(opts = {}) {
  if (process.platform !== "linux" || process.arch !== "x64") {
    return { ok: false, reason: `needs linux/x64, this is ${process.platform}/${process.arch}` };
  }
  try {
    const assets = await ensureAssets({ quiet: true, ...opts });
    if (!assets.qemu) return { ok: false, reason: "qemu-system-x86_64 not found after build" };
    return { ok: true, assets };
  } catch (e) {
    return { ok: false, reason: String(e instanceof Error ? e.message : e).slice(0, 2000) };
  }
}

// ------------------------------------------------------------------ accelerator

let accelMemo = null;

/**
 * Which accelerator to use. VBLK_GUEST_ACCEL=tcg|kvm forces one; VBLK_GUEST_TRY_KVM=1
 * uses KVM without probing; otherwise, when /dev/kvm exists, a probe boots the guest
 * under KVM with a 20 s limit and keeps KVM only if /init's first marker shows up
 * (KVM hangs Linux guests on some nested hosts). The probe result is cached in
 * cache/accel-probe.json per host kernel, QEMU version and guest kernel.
 * @param {import("./guest.d.mts").GuestAssets} assets
 * @param {{accel?: "auto" | "kvm" | "tcg", quiet?: boolean}} [opts]
 * @returns {Promise<{accel: "kvm" | "tcg", reason: string}>}
 */
export async function resolveAccel(assets, opts = {}) {
  const forced = opts.accel && opts.accel !== "auto" ? opts.accel : process.env.VBLK_GUEST_ACCEL;
  if (forced === "kvm" || forced === "tcg") return { accel: forced, reason: "forced" };
  if (accelMemo) return accelMemo;
  if (!existsSync("/dev/kvm")) {
    accelMemo = { accel: "tcg", reason: "no /dev/kvm" };
    return accelMemo;
  }
  if (process.env.VBLK_GUEST_TRY_KVM === "1") {
    accelMemo = { accel: "kvm", reason: "VBLK_GUEST_TRY_KVM=1" };
    return accelMemo;
  }
  const hostRelease = readFileSync("/proc/sys/kernel/osrelease", "utf8").trim();
  const probeKey = `${hostRelease}|${assets.qemuVersion}|${assets.key}`;
  const probeFile = join(CACHE_DIR, "accel-probe.json");
  try {
    const cached = JSON.parse(readFileSync(probeFile, "utf8"));
    if (cached.key === probeKey) {
      accelMemo = { accel: cached.accel, reason: `cached probe: ${cached.reason}` };
      return accelMemo;
    }
  } catch {}
  log(opts.quiet, "probing KVM (20 s limit)...");
  const t0 = Date.now();
  const probe = await runGuest({
    backend: "none",
    script: "true",
    accel: "kvm",
    timeoutMs: 20_000,
    stopAfterMarker: "VBLK-INIT-BEGIN",
    quiet: true,
    keepLogs: false,
  });
  const ok = probe.markers.init;
  const reason = ok
    ? `KVM probe booted to /init in ${Date.now() - t0} ms`
    : `KVM probe did not reach /init in 20 s (${probe.timedOut ? "timed out" : `qemu exit ${probe.qemuExit.code}`})`;
  accelMemo = { accel: ok ? "kvm" : "tcg", reason };
  try {
    writeFileSync(probeFile, JSON.stringify({ key: probeKey, accel: accelMemo.accel, reason }));
  } catch {}
  log(opts.quiet, reason);
  return accelMemo;
}

// ------------------------------------------------------------------ images

/**
 * Create a raw disk image. fill: "sparse" (default; reads as zeros), "zero" (written
 * zeros) or "random" (random bytes, so reads hit real data).
 * @param {string} path
 * @param {number} sizeBytes
 * @param {"sparse" | "zero" | "random"} [fill]
 * @returns {string} the path
 */
export function createImage(path, sizeBytes, fill = "sparse") {
  mkdirSync(dirname(path), { recursive: true });
  const fd = openSync(path, "w");
  try {
    if (fill !== "sparse") {
      const chunk = Buffer.alloc(1 << 20);
      for (let off = 0; off < sizeBytes; off += chunk.length) {
        if (fill === "random") randomFillSync(chunk);
        writeSync(fd, chunk, 0, Math.min(chunk.length, sizeBytes - off), off);
      }
    }
  } finally {
    closeSync(fd);
  }
  spawnSync("truncate", ["-s", String(sizeBytes), path]);
  return path;
}

/** A fresh directory under cache/images for test images (on a real disk: O_DIRECT works there). */
export function imageDir() {
  const d = join(CACHE_DIR, "images");
  mkdirSync(d, { recursive: true });
  return mkdtempSync(join(d, "img-"));
}

// ------------------------------------------------------------------ workload cpio

function cpioNewc(entries) {
  // entries: {name, mode, data?: Buffer}; "newc" format, what the kernel unpacks.
  const parts = [];
  let ino = 1;
  const pad4 = (n) => (4 - (n % 4)) % 4;
  const push = (name, mode, data) => {
    const nameBuf = Buffer.from(`${name}\0`);
    const fields = [ino++, mode, 0, 0, 1, 0, data.length, 0, 0, 0, 0, nameBuf.length, 0];
    const header = `070701${fields.map((f) => f.toString(16).padStart(8, "0")).join("")}`;
    parts.push(Buffer.from(header), nameBuf, Buffer.alloc(pad4(110 + nameBuf.length)));
    parts.push(data, Buffer.alloc(pad4(data.length)));
  };
  for (const e of entries) push(e.name, e.mode, e.data ?? Buffer.alloc(0));
  push("TRAILER!!!", 0, Buffer.alloc(0));
  return Buffer.concat(parts);
}

/** A value inside a QEMU "a=b,c=d" option: commas are doubled. */
function qv(v) {
  return String(v).replace(/,/g, ",,");
}

function shQuote(v) {
  return `'${String(v).replace(/'/g, `'\\''`)}'`;
}

function workloadCpio(opts) {
  const files = [{ name: "workload", mode: 0o40755 }];
  for (const f of readdirSync(WORKLOAD_DIR).filter((n) => n.endsWith(".sh"))) {
    files.push({ name: `workload/${f}`, mode: 0o100755, data: readFileSync(join(WORKLOAD_DIR, f)) });
  }
  let script;
  if (opts.script !== undefined) script = opts.script;
  else if (opts.workload) {
    const p = join(WORKLOAD_DIR, `${opts.workload}.sh`);
    if (!existsSync(p)) throw new Error(`unknown workload ${opts.workload} (no ${p})`);
    script = readFileSync(p, "utf8");
  } else throw new Error("runGuest: give workload or script");
  files.push({ name: "workload/run.sh", mode: 0o100755, data: Buffer.from(script) });
  const env = Object.entries(opts.env ?? {})
    .filter(([k]) => /^[A-Za-z_][A-Za-z0-9_]*$/.test(k))
    .map(([k, v]) => `export ${k}=${shQuote(v)}\n`)
    .join("");
  files.push({ name: "workload/env", mode: 0o100644, data: Buffer.from(env) });
  return { cpio: gzipSync(cpioNewc(files), { level: 1 }), script };
}

// ------------------------------------------------------------------ serial parsing

/**
 * Parse the serial console text: markers, result sections (JSON parsed when it is JSON).
 * @param {string} text
 * @returns {import("./guest.d.mts").ParsedSerial}
 */
export function parseSerial(text) {
  const lines = text.replace(/\r/g, "").split("\n");
  /** @type {Record<string, {text: string, json?: unknown}>} */
  const sections = {};
  const errors = [];
  const markers = { init: false, ready: null, workload: false, exit: false };
  let exitCode = null;
  let open = null;
  let buf = [];
  for (const line of lines) {
    if (open !== null) {
      if (line === `${MARK}RESULT-END ${open}`) {
        const body = buf.join("\n").replace(/\n+$/, "");
        const sec = { text: body };
        // JSON, possibly after warning lines (fio prints some into its --output file)
        const start = body.search(/^[{[]/m);
        if (start >= 0) {
          try {
            sec.json = JSON.parse(body.slice(start));
          } catch {}
        }
        sections[open] = sec;
        open = null;
        buf = [];
      } else buf.push(line);
      continue;
    }
    if (!line.startsWith(MARK)) continue;
    if (line.startsWith(`${MARK}RESULT-BEGIN `)) {
      open = line.slice(`${MARK}RESULT-BEGIN `.length).trim();
      buf = [];
    } else if (line.startsWith(`${MARK}INIT-BEGIN`)) markers.init = true;
    else if (line.startsWith(`${MARK}INIT-READY `))
      markers.ready = line.slice(`${MARK}INIT-READY `.length).trim();
    else if (line.startsWith(`${MARK}WORKLOAD-BEGIN`)) markers.workload = true;
    else if (line.startsWith(`${MARK}INIT-ERROR`)) errors.push(line);
    else if (line.startsWith(`${MARK}EXIT `)) {
      markers.exit = true;
      exitCode = Number.parseInt(line.slice(`${MARK}EXIT `.length), 10);
    }
  }
  if (open !== null) errors.push(`section ${open} not closed`);
  return { markers, sections, errors, exitCode };
}

// ------------------------------------------------------------------ processes

function run(cmd, args, opts = {}) {
  return new Promise((resolvePromise) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
    live.add(child);
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => {
      stdout += d;
    });
    child.stderr.on("data", (d) => {
      stderr += d;
      if (!opts.quiet) process.stderr.write(d);
    });
    child.on("error", (e) => {
      stderr += String(e);
    });
    child.on("close", (code) => {
      live.delete(child);
      resolvePromise({ code: code ?? -1, stdout, stderr });
    });
  });
}

function startDaemon(cmd, args, logPath, env) {
  const fd = openSync(logPath, "a");
  const child = spawn(cmd, args, { stdio: ["ignore", fd, fd], env: { ...process.env, ...(env ?? {}) } });
  closeSync(fd);
  live.add(child);
  const state = { child, exited: false, code: null, signal: null, error: null };
  state.done = new Promise((res) => {
    child.on("error", (e) => {
      state.error = String(e);
      state.exited = true;
      live.delete(child);
      res();
    });
    child.on("exit", (code, signal) => {
      state.exited = true;
      state.code = code;
      state.signal = signal;
      live.delete(child);
      res();
    });
  });
  return state;
}

async function stopDaemon(state, graceMs = 5000) {
  if (!state || state.exited) return state;
  state.child.kill("SIGTERM");
  const timer = setTimeout(() => {
    if (!state.exited) state.child.kill("SIGKILL");
  }, graceMs);
  // bounded: a process stuck in the kernel may not die at once; do not hang the caller
  await Promise.race([state.done, sleep(graceMs + 10_000)]);
  clearTimeout(timer);
  return state;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitForSocket(path, daemon, timeoutMs) {
  const t0 = Date.now();
  while (Date.now() - t0 < timeoutMs) {
    if (existsSync(path)) {
      try {
        if (statSync(path).isSocket()) return;
      } catch {}
    }
    if (daemon.exited) {
      throw new Error(
        `vhost-user server exited (code ${daemon.code}, signal ${daemon.signal}) before ${path} appeared`,
      );
    }
    await sleep(50);
  }
  throw new Error(`socket ${path} did not appear within ${timeoutMs} ms`);
}

function substitute(arg, ctx) {
  return arg.replace(/\{(socket|image|numQueues|readonly|serial|queueSize)\}/g, (_, k) => String(ctx[k]));
}

function pruneRuns(dir, keep) {
  try {
    const entries = readdirSync(dir).sort();
    for (const e of entries.slice(0, Math.max(0, entries.length - keep))) {
      rmSync(join(dir, e), { recursive: true, force: true });
    }
  } catch {}
}

// ------------------------------------------------------------------ run a guest

/**
 * Boot one guest, run one workload, return what it reported. Never throws for guest
 * failures (look at `ok`, `exitCode`, `timedOut`, `error`); throws only for bad options.
 * @param {import("./guest.d.mts").GuestRunOptions} opts
 * @returns {Promise<import("./guest.d.mts").GuestResult>}
 */
export async function runGuest(opts) {
  const t0 = Date.now();
  const backend = opts.backend;
  if (!["builtin", "qsd", "vhost-user", "none"].includes(backend))
    throw new Error(`unknown backend ${backend}`);
  if (backend !== "none" && !opts.image) throw new Error("runGuest: image is required");
  if (backend === "vhost-user" && !opts.vhostUser) throw new Error("backend vhost-user needs opts.vhostUser");
  const quiet = opts.quiet ?? process.env.VBLK_GUEST_VERBOSE !== "1";
  const assets = opts.assets ?? (await ensureAssets({ quiet: true }));
  const accel = await resolveAccel(assets, { accel: opts.accel, quiet });
  const numQueues = opts.numQueues ?? 2;
  const queueSize = opts.queueSize ?? 256;
  const smp = opts.smp ?? 2;
  const memMiB = opts.memMiB ?? 1024;
  const timeoutMs = opts.timeoutMs ?? 180_000;
  const image = opts.image ? resolve(opts.image) : "";
  const label = `${backend}${opts.iothread ? "+iothread" : ""}-${opts.workload ?? "script"}`;

  const runsDir = join(CACHE_DIR, "runs");
  mkdirSync(runsDir, { recursive: true });
  pruneRuns(runsDir, 60);
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const logDir = join(runsDir, `${stamp}-${label}-${randomBytes(3).toString("hex")}`);
  mkdirSync(logDir, { recursive: true });
  const sockDir = mkdtempSync(join(tmpdir(), "vblk-guest-"));
  const socket = join(sockDir, "blk.sock");
  const serialLog = join(logDir, "serial.log");
  const initrd = join(logDir, "run.img");
  // base.cpio.gz [+ fio.cpio] + workload.cpio.gz: the kernel unpacks concatenated archives;
  // each piece is zero-padded to 512 bytes so an uncompressed one starts 4-byte aligned.
  const wl = workloadCpio(opts);
  const withFio = opts.withFio ?? /\bfio\b/.test(wl.script);
  const pieces = [readFileSync(assets.initrd)];
  if (withFio) pieces.push(readFileSync(assets.fioCpio));
  pieces.push(wl.cpio);
  const padded = pieces.flatMap((b) => [b, Buffer.alloc((512 - (b.length % 512)) % 512)]);
  writeFileSync(initrd, Buffer.concat(padded));

  const serial = opts.serial ?? "vblk-guest";
  const ctx = { socket, image, numQueues, readonly: opts.readonly ? 1 : 0, serial, queueSize };
  const qemuArgs = [
    "-name",
    `vblk-${label}`,
    "-machine",
    "q35,memory-backend=mem",
    "-object",
    `memory-backend-memfd,id=mem,size=${memMiB}M,share=on`,
    "-m",
    `${memMiB}M`,
    "-smp",
    String(smp),
    "-accel",
    accel.accel,
    "-cpu",
    "max",
    "-nodefaults",
    "-nographic",
    "-monitor",
    "none",
    "-serial",
    `file:${serialLog}`,
    "-no-reboot",
    "-kernel",
    assets.kernel,
    "-initrd",
    initrd,
    "-append",
    `console=ttyS0 panic=-1 ${opts.cmdline ?? ""}`.trim(),
  ];
  let daemon = null;
  let error = null;
  const backendLog = backend === "qsd" || backend === "vhost-user" ? join(logDir, "backend.log") : null;
  try {
    if (backend === "builtin") {
      const drive = [
        `file=${qv(image)}`,
        "if=none",
        "id=d0",
        "format=raw",
        `cache=${opts.cache ?? "none"}`,
        `aio=${opts.aio ?? "native"}`,
        `discard=${opts.discard === false ? "ignore" : "unmap"}`,
      ];
      if (opts.readonly) drive.push("readonly=on");
      const dev = [
        "virtio-blk-pci",
        "drive=d0",
        `num-queues=${numQueues}`,
        `queue-size=${queueSize}`,
        `serial=${qv(serial)}`,
      ];
      if (opts.iothread) {
        qemuArgs.push("-object", "iothread,id=io0");
        dev.push("iothread=io0");
      }
      qemuArgs.push("-drive", drive.join(","), "-device", dev.join(","));
    } else if (backend === "qsd" || backend === "vhost-user") {
      if (backend === "qsd") {
        const bd = [
          "driver=file",
          "node-name=f",
          `filename=${qv(image)}`,
          "cache.direct=on",
          `aio=${opts.aio ?? "native"}`,
          `discard=${opts.discard === false ? "ignore" : "unmap"}`,
        ];
        if (opts.readonly) bd.push("read-only=on");
        const exp = [
          "type=vhost-user-blk",
          "id=e",
          "node-name=f",
          "addr.type=unix",
          `addr.path=${qv(socket)}`,
          `writable=${opts.readonly ? "off" : "on"}`,
          `num-queues=${numQueues}`,
        ];
        const args = ["--blockdev", bd.join(","), "--export", exp.join(",")];
        writeFileSync(join(logDir, "backend.cmd"), `qemu-storage-daemon ${args.join(" ")}\n`);
        daemon = startDaemon("qemu-storage-daemon", args, backendLog);
      } else {
        const vu = opts.vhostUser;
        const argv =
          typeof vu.command === "function" ? vu.command(ctx) : vu.command.map((a) => substitute(a, ctx));
        writeFileSync(join(logDir, "backend.cmd"), `${argv.join(" ")}\n`);
        daemon = startDaemon(argv[0], argv.slice(1), backendLog, vu.env);
      }
      await waitForSocket(socket, daemon, opts.vhostUser?.socketTimeoutMs ?? 30_000);
      qemuArgs.push(
        "-chardev",
        `socket,id=c0,path=${qv(socket)}`,
        "-device",
        `vhost-user-blk-pci,chardev=c0,num-queues=${numQueues},queue-size=${queueSize}`,
      );
    }
  } catch (e) {
    error = String(e instanceof Error ? e.message : e);
  }
  writeFileSync(join(logDir, "qemu.cmd"), `qemu-system-x86_64 ${qemuArgs.join(" ")}\n`);

  let timedOut = false;
  let qemuExit = { code: null, signal: null };
  let qemuStderr = "";
  let bootMs = null;
  if (!error) {
    log(quiet, `${label}: ${accel.accel} (${accel.reason}), log ${logDir}`);
    const child = spawn("qemu-system-x86_64", qemuArgs, { stdio: ["ignore", "pipe", "pipe"] });
    live.add(child);
    child.stdout.on("data", (d) => {
      qemuStderr += d;
    });
    child.stderr.on("data", (d) => {
      qemuStderr += d;
    });
    let exited = false;
    const done = new Promise((res) => {
      child.on("error", (e) => {
        qemuStderr += String(e);
        exited = true;
        res();
      });
      child.on("exit", (code, signal) => {
        qemuExit = { code, signal };
        exited = true;
        res();
      });
    });
    const stopMarker = opts.stopAfterMarker;
    let exitSeenAt = null;
    while (!exited) {
      await Promise.race([done, sleep(200)]);
      if (exited) break;
      let text = "";
      try {
        text = readFileSync(serialLog, "utf8");
      } catch {}
      if (bootMs === null && text.includes(`${MARK}INIT-BEGIN`)) bootMs = Date.now() - t0;
      if (stopMarker && text.includes(stopMarker)) {
        child.kill("SIGKILL");
        break;
      }
      if (exitSeenAt === null && /^VBLK-EXIT /m.test(text)) exitSeenAt = Date.now();
      // the guest said it is done: give poweroff 15 s, then pull the plug
      if (exitSeenAt !== null && Date.now() - exitSeenAt > 15_000) {
        child.kill("SIGKILL");
        break;
      }
      if (daemon?.exited && exitSeenAt === null && !opts.allowBackendExit) {
        error = `vhost-user server exited (code ${daemon.code}, signal ${daemon.signal}) while the guest ran`;
        child.kill("SIGKILL");
        break;
      }
      if (Date.now() - t0 > timeoutMs) {
        timedOut = true;
        child.kill("SIGKILL");
        break;
      }
    }
    // bounded: QEMU stuck in a KVM ioctl may take a while to die; do not hang the caller
    await Promise.race([done, sleep(15_000)]);
    if (!exited) {
      error = `qemu (pid ${child.pid}) did not exit 15 s after SIGKILL`;
    } else live.delete(child);
  }
  if (daemon) {
    const wasRunning = !daemon.exited;
    await stopDaemon(daemon);
    if (!wasRunning && !error && daemon.code !== 0 && !opts.allowBackendExit) {
      error = `vhost-user server exited early (code ${daemon.code}, signal ${daemon.signal})`;
    }
  }
  rmSync(sockDir, { recursive: true, force: true });
  rmSync(initrd, { force: true });
  writeFileSync(join(logDir, "qemu.out"), qemuStderr);

  let serialText = "";
  try {
    serialText = readFileSync(serialLog, "utf8");
  } catch {}
  const parsed = parseSerial(serialText);
  const ok =
    !error && !timedOut && parsed.markers.exit && parsed.exitCode === 0 && parsed.errors.length === 0;
  if (!error && !parsed.markers.exit) {
    error = timedOut
      ? `guest timed out after ${timeoutMs} ms (last marker: ${lastMarker(parsed)})`
      : `guest ended without VBLK-EXIT (qemu exit ${qemuExit.code}, signal ${qemuExit.signal}): ${qemuStderr.trim().slice(-500)}`;
  }
  const result = {
    ok,
    exitCode: parsed.exitCode,
    accel: accel.accel,
    accelReason: accel.reason,
    backend,
    iothread: !!opts.iothread,
    numQueues,
    workload: opts.workload ?? null,
    timedOut,
    error,
    qemuExit,
    qemuStderr: qemuStderr.slice(-4000),
    durationMs: Date.now() - t0,
    bootMs,
    markers: parsed.markers,
    sections: parsed.sections,
    errors: parsed.errors,
    logDir,
    serialLog,
    backendLog,
    qemuArgs,
  };
  if (opts.keepLogs === false && ok) rmSync(logDir, { recursive: true, force: true });
  log(
    quiet,
    `${label}: ${ok ? "ok" : `FAILED (${error ?? `exit ${parsed.exitCode}`})`} in ${result.durationMs} ms`,
  );
  return result;
}

function lastMarker(p) {
  if (p.markers.workload) return "WORKLOAD-BEGIN";
  if (p.markers.ready) return `INIT-READY ${p.markers.ready}`;
  if (p.markers.init) return "INIT-BEGIN";
  return "none (kernel did not reach /init)";
}

/**
 * The JSON of a result section, or throws naming what the guest printed instead.
 * @param {import("./guest.d.mts").GuestResult} r
 * @param {string} name
 * @returns {any}
 */
export function sectionJson(r, name) {
  const s = r.sections[name];
  if (!s)
    throw new Error(
      `no section "${name}" in guest output (have: ${Object.keys(r.sections).join(", ")}); see ${r.serialLog}`,
    );
  if (s.json === undefined) throw new Error(`section "${name}" is not JSON: ${s.text.slice(0, 500)}`);
  return s.json;
}

/**
 * IOPS of one fio JSON result (read + write, all jobs).
 * @param {any} fioJson
 * @returns {number}
 */
export function fioIops(fioJson) {
  let iops = 0;
  for (const j of fioJson?.jobs ?? []) iops += (j.read?.iops ?? 0) + (j.write?.iops ?? 0);
  return iops;
}

// ------------------------------------------------------------------ CLI

const HELP = `usage:
  node test/guest/guest.mjs build [--force]          build/reuse kernel + initramfs, print assets JSON
  node test/guest/guest.mjs accel                    print which accelerator runs (probes KVM once)
  node test/guest/guest.mjs run [options] [-- VHOST_USER_SERVER_COMMAND...]
options:
  --backend builtin|qsd|vhost-user   (default builtin)
  --workload NAME                    ${WORKLOADS.join(", ")} (default info)
  --script FILE                      run this shell script instead of a named workload
  --image PATH                       disk image (default: a new sparse one in cache/images)
  --size-mib N                       size of the new image (default 64)
  --fill sparse|zero|random          content of the new image (default sparse)
  --queues N                         num-queues (default 2)
  --queue-size N                     queue-size (default 256)
  --iothread                         builtin: put the disk in an IOThread
  --readonly                         export the disk read-only
  --env K=V                          workload environment (repeatable)
  --accel auto|tcg|kvm               (default auto)
  --timeout SEC                      hard limit for the whole guest (default 180)
  --smp N                            vCPUs (default 2)
  --cmdline "ARGS"                   extra kernel command line
  --json                             print the whole result as JSON
In the vhost-user server command, {socket} {image} {numQueues} {queueSize} {readonly}
{serial} are replaced, e.g.:
  node test/guest/guest.mjs run --backend vhost-user --workload fs -- \\
    node bench/dist/cli.js serve --socket {socket} --image {image} --num-queues {numQueues}`;

async function cli(argv) {
  const cmd = argv[0] ?? "help";
  if (cmd === "build") {
    const a = await ensureAssets({ force: argv.includes("--force"), quiet: false });
    console.log(JSON.stringify(a, null, 2));
    return 0;
  }
  if (cmd === "accel") {
    const a = await ensureAssets({ quiet: true });
    console.log(JSON.stringify(await resolveAccel(a, { quiet: false })));
    return 0;
  }
  if (cmd !== "run") {
    console.log(HELP);
    return cmd === "help" || cmd === "--help" ? 0 : 2;
  }
  const o = { backend: "builtin", workload: "info", env: {}, sizeMiB: 64, fill: "sparse", json: false };
  let serverCmd = null;
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === "--") {
      serverCmd = argv.slice(i + 1);
      break;
    } else if (a === "--backend") o.backend = next();
    else if (a === "--workload") o.workload = next();
    else if (a === "--script") o.script = readFileSync(next(), "utf8");
    else if (a === "--image") o.image = next();
    else if (a === "--size-mib") o.sizeMiB = Number(next());
    else if (a === "--fill") o.fill = next();
    else if (a === "--queues") o.numQueues = Number(next());
    else if (a === "--queue-size") o.queueSize = Number(next());
    else if (a === "--iothread") o.iothread = true;
    else if (a === "--readonly") o.readonly = true;
    else if (a === "--accel") o.accel = next();
    else if (a === "--timeout") o.timeoutMs = Number(next()) * 1000;
    else if (a === "--json") o.json = true;
    else if (a === "--cmdline") o.cmdline = next();
    else if (a === "--smp") o.smp = Number(next());
    else if (a === "--env") {
      const [k, ...v] = next().split("=");
      o.env[k] = v.join("=");
    } else throw new Error(`unknown option ${a}\n${HELP}`);
  }
  let tmpImageDir = null;
  if (!o.image && o.backend !== "none") {
    tmpImageDir = imageDir();
    o.image = createImage(join(tmpImageDir, "disk.img"), o.sizeMiB * 1024 * 1024, o.fill);
  }
  if (o.backend === "vhost-user") {
    if (!serverCmd?.length) throw new Error("--backend vhost-user needs `-- COMMAND ...` (the server)");
    o.vhostUser = { command: serverCmd };
  }
  const r = await runGuest({ ...o, quiet: false, workload: o.script ? undefined : o.workload });
  if (o.json) console.log(JSON.stringify(r, null, 2));
  else {
    console.log(
      `accel: ${r.accel} (${r.accelReason}); backend: ${r.backend}; exit: ${r.exitCode}; ok: ${r.ok}`,
    );
    for (const [name, s] of Object.entries(r.sections)) {
      console.log(`--- ${name}`);
      if (/^fio/.test(name) && s.json) console.log(`IOPS ${fioIops(s.json).toFixed(0)}`);
      else console.log(s.text);
    }
    if (r.error) console.log(`error: ${r.error}`);
    console.log(`logs: ${r.logDir}`);
  }
  if (tmpImageDir) rmSync(tmpImageDir, { recursive: true, force: true });
  return r.ok ? 0 : 1;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  cli(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => {
      console.error(e instanceof Error ? e.message : e);
      process.exit(2);
    },
  );
}

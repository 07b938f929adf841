// `vblk serve` as a process: option errors, the threads engine refused, and a
// full run (a front-end does I/O on 2 queues over 2 IOThreads, SIGTERM, the
// counters on stderr and in --stats-file, the socket file removed).
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { nativeAvailable } from "@vblk/backend-libaio";
import { BlkStatus } from "@vblk/core";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { autoIothreadCpus, type ServeStats } from "../dist/index.js";
import { closeQueueFds, setupQueues, sharedGuestRam, TestFrontend, waitFor } from "./frontend.js";

const CLI = fileURLToPath(new URL("../dist/cli.js", import.meta.url));
const native = nativeAvailable();
let dir: string;
let child: ChildProcess | null = null;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "vblk-cli-"));
});
afterEach(() => {
  if (child && child.exitCode === null) child.kill("SIGKILL");
  child = null;
  rmSync(dir, { recursive: true, force: true });
});

function run(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** `vblk serve ARGS` as a child process, once its socket exists. */
async function serveProcess(
  socket: string,
  args: string[],
): Promise<{ stderr: () => string; exited: Promise<number | null>; pid: number }> {
  const c = spawn(process.execPath, [CLI, "serve", "--socket", socket, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  child = c;
  let stderr = "";
  c.stderr!.on("data", (d) => {
    stderr += d;
  });
  // "close", not "exit": stderr may still hold the last lines when the process exits
  const exited = new Promise<number | null>((r) => c.on("close", (code) => r(code)));
  // The socket file appears at bind(), before listen(): wait for the line serve logs after listen().
  await waitFor(() => stderr.includes("] serving "), 20_000, `listening (stderr: ${stderr})`);
  expect(existsSync(socket)).toBe(true);
  return { stderr: () => stderr, exited, pid: c.pid! };
}

/** A front-end reads `n` blocks on each of 2 queues (all OK), then the server gets SIGTERM and exits 0. */
async function readOnTwoQueuesThenStop(
  socket: string,
  server: { exited: Promise<number | null> },
  n: number,
): Promise<void> {
  const fe = TestFrontend.connect(socket);
  const ram = sharedGuestRam(8);
  const { queues } = await setupQueues(fe, ram, { numQueues: 2 });
  for (const q of queues) {
    for (let i = 0; i < n; i++) q.blk.read(i * 8, q.data, 4096);
    q.kick();
    for (const c of await q.complete(n)) expect(c.status).toBe(BlkStatus.OK);
  }
  child!.kill("SIGTERM");
  expect(await server.exited).toBe(0);
  await fe.closed;
  closeQueueFds(queues);
  ram.close();
}

describe("vblk serve: options", () => {
  it("refuses the threads engine with the reason", () => {
    const r = run(["serve", "--socket", join(dir, "s"), "--image", "/dev/null", "--engine", "threads"]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/engine "threads" cannot serve vhost-user: .*eventfds.*epoll/);
    expect(existsSync(join(dir, "s"))).toBe(false);
  });

  it("--socket is required; --image is required for file engines; bad numbers and JSON are named", () => {
    expect(run(["serve", "--image", "x"]).stderr).toMatch(/--socket <path>/);
    expect(run(["serve", "--socket", join(dir, "s")]).stderr).toMatch(/--image is required/);
    expect(run(["serve", "--socket", "s", "--num-queues", "zero"]).stderr).toMatch(
      /--num-queues must be an integer/,
    );
    expect(run(["serve", "--socket", "s", "--queue-size", "2000"]).stderr).toMatch(
      /--queue-size must be in 4..1024/,
    );
    expect(run(["serve", "--socket", "s", "--iothread-vq-mapping", "{"]).stderr).toMatch(/not JSON/);
    expect(run(["serve", "--socket", "s", "--engine", "nope"]).stderr).toMatch(/Allowed choices/);
  });

  it.skipIf(!native)("mapping errors come from the IOThread mapping rules", () => {
    const r = run([
      "serve",
      ...["--socket", join(dir, "s"), "--engine", "null", "--num-queues", "4"],
      ...["--iothread-vq-mapping", '[{"iothread":"a","vqs":[0,1]},{"iothread":"b","vqs":[1,2]}]'],
    ]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/vq 1 of iothread "b" is already assigned to iothread "a"/);
    expect(r.stderr).toMatch(/vq 3 of num-queues \(4\) is not assigned/);
  });

  it("--print-capabilities", () => {
    const r = run(["serve", "--socket", "x", "--print-capabilities"]);
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ type: "block", features: ["blk-file", "read-only"] });
  });
});

describe.skipIf(!native)("vblk serve: a run", () => {
  it("serves a front-end on 2 queues / 2 IOThreads; SIGTERM prints and writes the counters", async () => {
    const socket = join(dir, "vu.sock");
    const statsFile = join(dir, "stats.json");
    const server = await serveProcess(socket, [
      ...["--engine", "null", "--size", "64M", "--num-queues", "2"],
      ...["--iothread-vq-mapping", '[{"iothread":"io-a"},{"iothread":"io-b"}]', "--stats-file", statsFile],
    ]);
    await readOnTwoQueuesThenStop(socket, server, 10);
    const stderr = server.stderr();
    expect(stderr).toMatch(/SIGTERM: stopping/);
    expect(stderr).toMatch(/VBLK-STATS \{/);
    expect(stderr).toMatch(/io-a\s+0\s+10/);
    const s = JSON.parse(readFileSync(statsFile, "utf8")) as ServeStats;
    expect(s.connections).toBe(1);
    expect(s.mapping).toEqual([
      { iothread: "io-a", vqs: [0] },
      { iothread: "io-b", vqs: [1] },
    ]);
    expect(s.iothreads.map((t) => [t.name, t.requests, t.reads])).toEqual([
      ["io-a", 10, 10],
      ["io-b", 10, 10],
    ]);
    for (const t of s.iothreads) expect(t.busyNs).toBeGreaterThan(0);
    expect(s.queues.map((q) => q.requests)).toEqual([10, 10]);
    expect(existsSync(socket)).toBe(false);
  });
});

/** Cpus_allowed_list of every thread of a process. */
function threadCpuLists(pid: number): string[] {
  const out: string[] = [];
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const st = readFileSync(`/proc/${pid}/task/${tid}/status`, "utf8");
      const m = /^Cpus_allowed_list:\s*(\S+)/m.exec(st);
      if (m) out.push(m[1]!);
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}

describe.skipIf(!native)("vblk serve --iothread-cpus auto", () => {
  it("puts the IOThreads on the CPUs of the image's disk interrupts (or says why not) and serves", async () => {
    const image = join(dir, "disk.img");
    writeFileSync(image, Buffer.alloc(16 << 20));
    const expected = autoIothreadCpus("auto", image);
    const socket = join(dir, "vu.sock");
    const server = await serveProcess(socket, [
      ...["--image", image, "--num-queues", "2", "--iothreads", "2", "--iothread-cpus", "auto"],
    ]);
    expect(server.stderr()).toContain(expected.note);
    const lists = threadCpuLists(server.pid);
    if (expected.cpus === undefined) {
      console.warn(`--iothread-cpus auto left the IOThreads unpinned here: ${expected.note}`);
      expect(lists.every((l) => l === lists[0])).toBe(true);
    } else {
      // two IOThreads, each pinned to the IRQ CPUs; the main thread is not
      const want = expected.cpus.join(",");
      expect(lists.filter((l) => l === want).length).toBeGreaterThanOrEqual(2);
      expect(lists.filter((l) => l !== want).length).toBeGreaterThan(0);
    }
    // and it serves
    await readOnTwoQueuesThenStop(socket, server, 4);
  });

  it("rejects a malformed map, naming both forms", () => {
    const r = run(["serve", "--socket", join(dir, "s"), "--engine", "null", "--iothread-cpus", "iothread0"]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/--iothread-cpus.*expected "auto" or "iothread0=0;iothread1=1,2"/);
  });
});

// The addon's Unix socket calls that vhost-user rests on: fd passing
// (SCM_RIGHTS), non-blocking reads, EOF, truncation, a peer that stops
// reading, listen/accept, and FdWatcher readiness callbacks on Node's loop.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  closeFd,
  eventfd,
  eventfdRead,
  eventfdWrite,
  FdWatcher,
  nativeAvailable,
  recvMsg,
  sendMsg,
  unixAccept,
  unixConnect,
  unixListen,
  unixSocketpair,
} from "@vblk/backend-libaio";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

const native = nativeAvailable();
let dir: string;
const toClose: number[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "vblk-us-"));
});
afterEach(() => {
  for (const fd of toClose.splice(0)) {
    try {
      closeFd(fd);
    } catch {}
  }
  rmSync(dir, { recursive: true, force: true });
});

function pair(): [number, number] {
  const p = unixSocketpair();
  toClose.push(...p);
  return p;
}

function cloexec(fd: number): boolean {
  const flags = /flags:\s+(\d+)/.exec(readFileSync(`/proc/self/fdinfo/${fd}`, "utf8"))![1]!;
  return (Number.parseInt(flags, 8) & 0o2000000) !== 0;
}

describe.skipIf(!native)("unix sockets with fd passing", () => {
  it("passes fds with the bytes (new CLOEXEC fds for the same files); -1 when empty; 0 at EOF", () => {
    const [a, b] = pair();
    const e1 = eventfd(0, true);
    const e2 = eventfd(0, true);
    expect(sendMsg(a, new TextEncoder().encode("hello"), [e1, e2])).toBe(5);
    const buf = new Uint8Array(16);
    const r = recvMsg(b, buf, 8);
    expect(r.bytes).toBe(5);
    expect(r.truncated).toBe(false);
    expect(r.fds).toHaveLength(2);
    expect(r.fds).not.toContain(e1);
    for (const fd of r.fds) expect(cloexec(fd)).toBe(true);
    // the received fd is the same eventfd
    eventfdWrite(r.fds[0]!, 3);
    expect(eventfdRead(e1)).toBe(3);
    for (const fd of [e1, e2, ...r.fds]) closeFd(fd);
    expect(recvMsg(b, buf).bytes).toBe(-1);
    closeFd(a);
    toClose.splice(toClose.indexOf(a), 1);
    expect(recvMsg(b, buf).bytes).toBe(0);
  });

  it("more fds than maxFds: truncated, and the extra ones are not leaked into this process", () => {
    const [a, b] = pair();
    const fds = [eventfd(0, true), eventfd(0, true), eventfd(0, true)];
    sendMsg(a, Uint8Array.of(1), fds);
    const r = recvMsg(b, new Uint8Array(4), 2);
    expect(r.truncated).toBe(true);
    expect(r.fds.length).toBeLessThanOrEqual(2);
    for (const fd of [...fds, ...r.fds]) closeFd(fd);
  });

  it("sendMsg to a closed peer throws EPIPE (no SIGPIPE); to a peer that stops reading, ETIMEDOUT", () => {
    const [a, b] = pair();
    const big = new Uint8Array(4 << 20);
    expect(() => sendMsg(a, big, [], 100)).toThrow(/ETIMEDOUT|not reading/);
    closeFd(b);
    toClose.splice(toClose.indexOf(b), 1);
    try {
      sendMsg(a, Uint8Array.of(1));
      expect.unreachable();
    } catch (e) {
      expect((e as NodeJS.ErrnoException).code).toMatch(/EPIPE|ECONNRESET/);
    }
  });

  it("listen replaces a stale socket, refuses to clobber a regular file; accept is -1 when nobody waits", () => {
    const path = join(dir, "s.sock");
    const l1 = unixListen(path);
    closeFd(l1); // leaves the socket file behind
    const l = unixListen(path);
    toClose.push(l);
    expect(unixAccept(l)).toBe(-1);
    const c = unixConnect(path);
    toClose.push(c);
    const s = unixAccept(l);
    expect(s).toBeGreaterThan(0);
    toClose.push(s);
    expect(cloexec(s)).toBe(true);
    sendMsg(c, Uint8Array.of(7, 8));
    const buf = new Uint8Array(2);
    expect(recvMsg(s, buf).bytes).toBe(2);
    const file = join(dir, "plain");
    writeFileSync(file, "x");
    expect(() => unixListen(file)).toThrow(/not a socket/);
    expect(() => unixListen(join(dir, "x".repeat(200)))).toThrow(/too long/);
    expect(() => unixConnect(join(dir, "nobody.sock"))).toThrow(/ENOENT/);
  });

  it("FdWatcher calls back from the event loop while readable, not after stop()", async () => {
    const [a, b] = pair();
    const got: number[] = [];
    const w = new FdWatcher(b, (status) => {
      expect(status).toBe(0);
      const buf = new Uint8Array(8);
      for (;;) {
        const r = recvMsg(b, buf);
        if (r.bytes <= 0) break;
        got.push(...buf.subarray(0, r.bytes));
      }
    });
    w.start();
    sendMsg(a, Uint8Array.of(1, 2, 3));
    await new Promise((r) => setTimeout(r, 30));
    expect(got).toEqual([1, 2, 3]);
    w.stop();
    sendMsg(a, Uint8Array.of(4));
    await new Promise((r) => setTimeout(r, 30));
    expect(got).toEqual([1, 2, 3]);
    w.start();
    await new Promise((r) => setTimeout(r, 30));
    expect(got).toEqual([1, 2, 3, 4]);
    w.close();
    w.close();
  });
});

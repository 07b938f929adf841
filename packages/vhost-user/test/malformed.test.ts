// A front-end that breaks the vhost-user protocol: each case must close that
// connection with a log line naming the problem, close every fd it sent, and
// leave the server serving the next front-end.
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { allocGuestMemory, closeFd, eventfd, nativeAvailable } from "@vblk/backend-libaio";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  encodeConfig,
  encodeHeader,
  encodeMemTable,
  encodeMessage,
  encodeU64,
  encodeVringAddr,
  encodeVringState,
  Flag,
  OFFERED_PROTOCOL_FEATURES,
  Request,
  type RunningServe,
  startServe,
} from "../dist/index.js";
import { MiB, setupQueues, sharedGuestRam, TestFrontend, waitFor } from "./frontend.js";

const native = nativeAvailable();
let dir: string;
let serve: RunningServe;
const logs: string[] = [];

function openFds(): number {
  return readdirSync("/proc/self/fd").length;
}

beforeAll(async () => {
  if (!native) return;
  dir = mkdtempSync(join(tmpdir(), "vblk-vu-bad-"));
  serve = await startServe({
    socket: join(dir, "vu.sock"),
    engine: "null",
    sizeBytes: 64 * MiB,
    numQueues: 2,
    queueSize: 256,
    log: (m) => logs.push(m),
  });
});

afterAll(async () => {
  if (!native) return;
  await serve.stop();
  rmSync(dir, { recursive: true, force: true });
});

type Fds = () => number[];
const ev: Fds = () => [eventfd(0, true)];
const none: Fds = () => [];

interface BadCase {
  name: string;
  /** what the log line must say */
  reason: RegExp;
  /** send the bad message (after the optional valid preamble) */
  send: (fe: TestFrontend, fds: number[]) => void;
  fds?: Fds;
  /** run QEMU's start sequence first (features, memory, rings) */
  preamble?: "features" | "memory";
}

const msg = (req: number, payload?: Uint8Array, flags: number = Flag.VERSION) =>
  encodeMessage(req, flags, payload);

const cases: BadCase[] = [
  {
    name: "bad version bits in the header",
    reason: /bad version/,
    send: (fe) => fe.channel.sendRaw(msg(Request.GET_FEATURES, undefined, 0x2)),
  },
  {
    name: "a request with the reply flag",
    reason: /unexpected reply flag/,
    send: (fe) => fe.channel.sendRaw(msg(Request.GET_FEATURES, undefined, Flag.VERSION | Flag.REPLY)),
  },
  {
    name: "a payload size over 4096",
    reason: /payload size 1048576 > 4096/,
    send: (fe) => fe.channel.sendRaw(encodeHeader(Request.SET_MEM_TABLE, Flag.VERSION, 1 << 20)),
  },
  {
    name: "an unknown request",
    reason: /unsupported request REQUEST_99/,
    send: (fe) => fe.channel.sendRaw(msg(99)),
  },
  {
    name: "a request we do not support (SET_LOG_BASE, with an fd)",
    reason: /unsupported request SET_LOG_BASE/,
    send: (fe, fds) => fe.channel.sendRaw(msg(Request.SET_LOG_BASE, encodeU64(0)), fds),
    fds: ev,
  },
  {
    name: "SET_VRING_NUM with a 4-byte payload",
    reason: /SET_VRING_NUM: payload of 4 bytes, expected 8/,
    send: (fe) => fe.channel.sendRaw(msg(Request.SET_VRING_NUM, new Uint8Array(4))),
  },
  {
    name: "GET_FEATURES with a payload of 3 bytes",
    reason: /GET_FEATURES: unexpected payload of 3 bytes/,
    send: (fe) => fe.channel.sendRaw(msg(Request.GET_FEATURES, new Uint8Array(3))),
  },
  {
    name: "a ring index past the device's queues",
    reason: /ring 7 out of range \(the device has 2\)/,
    send: (fe) => fe.send(Request.SET_VRING_NUM, encodeVringState({ index: 7, num: 64 })),
  },
  {
    name: "a ring size that is not a power of two",
    reason: /size 100 is not a power of two/,
    send: (fe) => fe.send(Request.SET_VRING_NUM, encodeVringState({ index: 0, num: 100 })),
  },
  {
    name: "a ring size above --queue-size",
    reason: /size 512 is not a power of two <= 256/,
    send: (fe) => fe.send(Request.SET_VRING_NUM, encodeVringState({ index: 0, num: 512 })),
  },
  {
    name: "a base that does not fit 16 bits",
    reason: /base 65536/,
    send: (fe) => fe.send(Request.SET_VRING_BASE, encodeVringState({ index: 0, num: 65536 })),
  },
  {
    name: "SET_VRING_KICK without its fd",
    reason: /SET_VRING_KICK: 0 fd\(s\) attached, expected 1/,
    send: (fe) => fe.send(Request.SET_VRING_KICK, encodeU64(0)),
  },
  {
    name: "SET_VRING_KICK in polling mode (no-fd flag)",
    reason: /polling mode/,
    send: (fe) => fe.send(Request.SET_VRING_KICK, encodeU64(0x100)),
  },
  {
    name: "SET_VRING_CALL with two fds",
    reason: /SET_VRING_CALL: 2 fd\(s\) attached, expected 1/,
    send: (fe, fds) => fe.send(Request.SET_VRING_CALL, encodeU64(1), fds),
    fds: () => [eventfd(0, true), eventfd(0, true)],
  },
  {
    name: "SET_VRING_CALL with reserved bits",
    reason: /reserved bits/,
    send: (fe, fds) => fe.send(Request.SET_VRING_CALL, encodeU64(0x1001), fds),
    fds: ev,
  },
  {
    name: "GET_FEATURES with an fd attached",
    reason: /GET_FEATURES: 1 fd\(s\) attached, expected 0/,
    send: (fe, fds) => fe.send(Request.GET_FEATURES, undefined, fds),
    fds: ev,
  },
  {
    name: "more fds than a message may carry",
    reason: /more than 8 fds/,
    send: (fe, fds) => fe.send(Request.SET_MEM_TABLE, new Uint8Array(8), fds),
    fds: () => Array.from({ length: 9 }, () => eventfd(0, true)),
  },
  {
    name: "SET_MEM_TABLE with 2 regions and 1 fd",
    reason: /SET_MEM_TABLE: 1 fd\(s\) attached, expected 2/,
    send: (fe, fds) =>
      fe.send(
        Request.SET_MEM_TABLE,
        encodeMemTable([
          { guestPhysAddr: 0n, size: 4096n, userAddr: 0x1000n, mmapOffset: 0n },
          { guestPhysAddr: 0x10000n, size: 4096n, userAddr: 0x10000n, mmapOffset: 4096n },
        ]),
        fds,
      ),
    fds: () => [allocGuestMemory(8192).fd],
  },
  {
    name: "SET_MEM_TABLE with 0 regions",
    reason: /0 regions/,
    send: (fe) => fe.send(Request.SET_MEM_TABLE, new Uint8Array(8)),
  },
  {
    name: "SET_MEM_TABLE with a region past the end of its memfd (would SIGBUS)",
    reason: /runs past the end of its file/,
    send: (fe, fds) =>
      fe.send(
        Request.SET_MEM_TABLE,
        encodeMemTable([{ guestPhysAddr: 0n, size: 0x10000n, userAddr: 0x1000n, mmapOffset: 0n }]),
        fds,
      ),
    fds: () => [allocGuestMemory(8192).fd],
  },
  {
    name: "SET_MEM_TABLE with overlapping regions",
    reason: /overlap/,
    send: (fe, fds) =>
      fe.send(
        Request.SET_MEM_TABLE,
        encodeMemTable([
          { guestPhysAddr: 0n, size: 8192n, userAddr: 0x10000n, mmapOffset: 0n },
          { guestPhysAddr: 4096n, size: 4096n, userAddr: 0x40000n, mmapOffset: 0n },
        ]),
        fds,
      ),
    fds: () => {
      const fd = allocGuestMemory(8192).fd;
      return [fd, fd];
    },
  },
  {
    name: "SET_PROTOCOL_FEATURES with a feature that was not offered (LOG_SHMFD)",
    reason: /protocol features 0x2 were not offered/,
    send: (fe) => fe.send(Request.SET_PROTOCOL_FEATURES, encodeU64(OFFERED_PROTOCOL_FEATURES | 2n)),
  },
  {
    name: "SET_VRING_ENABLE with 2",
    reason: /enable value 2/,
    send: (fe) => fe.send(Request.SET_VRING_ENABLE, encodeVringState({ index: 0, num: 2 })),
  },
  {
    name: "GET_CONFIG past 256 bytes",
    reason: /past 256 bytes/,
    send: (fe) =>
      fe.send(
        Request.GET_CONFIG,
        encodeConfig({ offset: 250, size: 10, flags: 0, bytes: new Uint8Array(10) }),
      ),
  },
  {
    name: "GET_CONFIG whose size field disagrees with the payload",
    reason: /payload of 20 bytes for a 60-byte config access/,
    send: (fe) =>
      fe.channel.sendRaw(
        msg(
          Request.GET_CONFIG,
          (() => {
            const p = encodeConfig({ offset: 0, size: 8, flags: 0, bytes: new Uint8Array(8) });
            new DataView(p.buffer).setUint32(4, 60, true);
            return p;
          })(),
        ),
      ),
  },
  {
    name: "half a header, then the connection ends",
    reason: /in the middle of a message/,
    send: (fe) => {
      fe.channel.sendRaw(encodeHeader(Request.GET_FEATURES, Flag.VERSION, 0).subarray(0, 6));
      // shutdown by closing our end right after
      setTimeout(() => fe.close(), 20);
    },
  },
  {
    name: "ring addresses outside the memory table",
    reason: /descriptor table at user address 0xdead0000 \(\+1024\) is outside the memory table/,
    preamble: "memory",
    send: (fe, fds) => {
      fe.send(Request.SET_VRING_NUM, encodeVringState({ index: 0, num: 64 }));
      fe.send(
        Request.SET_VRING_ADDR,
        encodeVringAddr({ index: 0, flags: 0, desc: 0xdead0000n, used: 0n, avail: 0n, log: 0n }),
      );
      fe.send(Request.SET_VRING_KICK, encodeU64(0), fds);
      fe.send(Request.SET_VRING_ENABLE, encodeVringState({ index: 0, num: 1 }));
    },
    fds: ev,
  },
];

describe.skipIf(!native)("malformed vhost-user input closes the connection, the server survives", () => {
  it.each(cases)("$name", async (c) => {
    const before = openFds();
    const errorsBefore = serve.server.stats.errors;
    const fe = TestFrontend.connect(join(dir, "vu.sock"));
    const ram = c.preamble ? sharedGuestRam(4) : null;
    if (c.preamble) {
      const f = await fe.callU64(Request.GET_FEATURES);
      fe.send(Request.SET_PROTOCOL_FEATURES, encodeU64(OFFERED_PROTOCOL_FEATURES));
      fe.send(Request.SET_FEATURES, encodeU64(f));
      if (c.preamble === "memory")
        expect(
          await fe.ack(
            Request.SET_MEM_TABLE,
            encodeMemTable(ram!.regions),
            ram!.regions.map(() => ram!.fd),
          ),
        ).toBe(0n);
    }
    const fds = (c.fds ?? none)();
    c.send(fe, fds);
    for (const fd of new Set(fds)) closeFd(fd); // our copies; the server must close its own
    const err = await Promise.race([
      fe.closed,
      new Promise<"open">((r) => setTimeout(() => r("open"), 5000)),
    ]);
    if (c.name.startsWith("half a header")) expect(err).toBeUndefined();
    else expect(err, "the server should have closed the connection").not.toBe("open");
    await waitFor(() => serve.server.session === null, 5000, "session cleanup");
    expect(serve.server.stats.errors).toBe(errorsBefore + 1);
    expect(
      logs.some((l) => c.reason.test(l)),
      `log lines:\n${logs.slice(-5).join("\n")}`,
    ).toBe(true);
    ram?.close();
    await waitFor(() => openFds() <= before, 5000, `fds back to ${before} (now ${openFds()})`);
    // the next front-end is served
    const ok = TestFrontend.connect(join(dir, "vu.sock"));
    expect(await ok.callU64(Request.GET_QUEUE_NUM)).toBe(2n);
    ok.close();
    await waitFor(() => serve.server.session === null, 5000, "session cleanup");
  });

  it("misaligned rings are refused when the queues start", async () => {
    const errorsBefore = serve.server.stats.errors;
    const fe = TestFrontend.connect(join(dir, "vu.sock"));
    const ram = sharedGuestRam(4);
    const { queues } = await setupQueues(fe, ram, { numQueues: 1, enable: false });
    fe.send(
      Request.SET_VRING_ADDR,
      encodeVringAddr({
        index: 0,
        flags: 0,
        desc: ram.ua(queues[0]!.ring.descAddr + 8),
        used: ram.ua(queues[0]!.ring.usedAddr),
        avail: ram.ua(queues[0]!.ring.availAddr),
        log: 0n,
      }),
    );
    fe.send(Request.SET_VRING_ENABLE, encodeVringState({ index: 0, num: 1 }));
    await fe.closed;
    await waitFor(() => serve.server.stats.errors === errorsBefore + 1, 5000, "the error to be counted");
    expect(logs.some((l) => /ring 0: misaligned/.test(l))).toBe(true);
    for (const q of queues) {
      closeFd(q.kickFd);
      closeFd(q.callFd);
    }
    ram.close();
    await waitFor(() => serve.server.session === null, 5000, "session cleanup");
  });
});

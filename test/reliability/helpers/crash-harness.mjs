#!/usr/bin/env node
// Crash test (docs/RELIABILITY.md): fork crash-child.mjs, SIGKILL it at a
// random moment, check that every write it logged as covered by a completed
// FLUSH is on the image; repeat. Runnable on its own for long runs:
//   node test/reliability/helpers/crash-harness.mjs --rounds 200 [--min-ms 20] [--max-ms 600] [--engine auto|io_uring|libaio|threads]
// (auto: io_uring, else libaio, else threads; the summary says which ran)
import { fork } from "node:child_process";
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const CHILD = fileURLToPath(new URL("./crash-child.mjs", import.meta.url));
const BS = 4096;

function parseLog(path) {
  if (!existsSync(path)) return [];
  const out = [];
  for (const line of readFileSync(path, "utf8").split("\n")) {
    const f = line.split(" ");
    if (f[0] !== "F" || f[f.length - 1] !== "E") continue; // a torn last line: ignored
    const pairs = [];
    for (const p of f.slice(2, -1)) {
      const [b, g] = p.split(":").map(Number);
      pairs.push([b, g]);
    }
    out.push(pairs);
  }
  return out;
}

function decode(buf, off, block) {
  const w = new Uint32Array(buf.buffer, buf.byteOffset + off, BS / 4);
  if (w[0] !== block) return -1;
  const gen = w[1];
  for (let i = 2; i < w.length; i++)
    if (w[i] !== (block * 2654435761 + gen * 40503 + i * 97) >>> 0) return -1;
  return gen;
}

/**
 * Run `rounds` kill -9 rounds on one image. Returns a summary; throws with
 * the details on the first lost write.
 */
export async function runCrashRounds({
  rounds,
  minMs = 20,
  maxMs = 500,
  blocks = 2048,
  engine = "auto",
  log = () => {},
}) {
  const dir = mkdtempSync(join(tmpdir(), "vblk-crash-"));
  const image = join(dir, "disk.img");
  writeFileSync(image, Buffer.alloc(blocks * BS));
  const expected = new Map(); // block -> generation a completed FLUSH covered
  const engines = new Set();
  let flushes = 0;
  let covered = 0;
  let killedAfterMs = 0;
  try {
    for (let r = 1; r <= rounds; r++) {
      const logPath = join(dir, `round-${r}.log`);
      const child = fork(CHILD, [image, logPath, String(r), String(blocks), engine], {
        stdio: ["ignore", "ignore", "pipe", "ipc"],
      });
      let stderr = "";
      child.stderr.on("data", (d) => {
        stderr += d;
      });
      const exited = new Promise((res) => child.once("exit", (code, sig) => res({ code, sig })));
      const ready = await Promise.race([
        new Promise((res) => child.once("message", (m) => res(m))),
        exited.then((e) => ({ type: "exit", ...e })),
        new Promise((res) => setTimeout(() => res({ type: "timeout" }), 20_000)),
      ]);
      if (ready.type !== "ready") {
        child.kill("SIGKILL");
        throw new Error(`round ${r}: child did not start (${JSON.stringify(ready)}): ${stderr}`);
      }
      engines.add(ready.engine);
      const wait = minMs + Math.floor(Math.random() * (maxMs - minMs));
      await new Promise((res) => setTimeout(res, wait));
      const early = await Promise.race([exited, new Promise((res) => setTimeout(() => res(null), 0))]);
      if (early !== null)
        throw new Error(`round ${r}: child died before the kill (${JSON.stringify(early)}): ${stderr}`);
      child.kill("SIGKILL");
      const how = await exited;
      if (how.sig !== "SIGKILL")
        throw new Error(`round ${r}: child ended with ${JSON.stringify(how)}: ${stderr}`);
      killedAfterMs += wait;
      const recs = parseLog(logPath);
      flushes += recs.length;
      for (const pairs of recs)
        for (const [b, g] of pairs) {
          covered++;
          if ((expected.get(b) ?? 0) < g) expected.set(b, g);
        }
      // Every covered write (or a later one to the same block) is on the image.
      const fd = openSync(image, "r");
      const buf = Buffer.alloc(blocks * BS);
      readSync(fd, buf, 0, buf.length, 0);
      closeSync(fd);
      for (const [b, g] of expected) {
        const got = decode(buf, b * BS, b);
        if (got < g)
          throw new Error(
            `round ${r}: block ${b} lost a flushed write: expected generation >= ${g}, found ${got < 0 ? "garbage" : got} (killed after ${wait} ms)`,
          );
      }
      log(
        `round ${r}: ${ready.engine}, killed after ${wait} ms, ${recs.length} flushes logged, ${expected.size} blocks checked`,
      );
    }
    return {
      rounds,
      engines: [...engines],
      flushes,
      covered,
      blocksChecked: expected.size,
      meanKillMs: killedAfterMs / rounds,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    args: process.argv.slice(2).filter((a) => a !== "--"),
    options: {
      rounds: { type: "string", default: "100" },
      "min-ms": { type: "string", default: "20" },
      "max-ms": { type: "string", default: "600" },
      engine: { type: "string", default: "auto" },
    },
  });
  const t0 = performance.now();
  const r = await runCrashRounds({
    rounds: Number(values.rounds),
    minMs: Number(values["min-ms"]),
    maxMs: Number(values["max-ms"]),
    engine: values.engine,
    log: (m) => console.log(m),
  });
  console.log(JSON.stringify({ ...r, seconds: Math.round((performance.now() - t0) / 1000) }));
}

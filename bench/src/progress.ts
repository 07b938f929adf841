/**
 * fio's live status line, redrawn in place about once a second on a TTY:
 *
 *   Jobs: 2 (f=2): [r(2)][42.0%][r=380MiB/s][r=97.3k IOPS][eta 00m:06s]
 *
 * Letters per job: R/r sequential/random read, W/w write, M/m mixed,
 * V verify read-back, / ramp, _ done, - waiting at a barrier.
 */
import { JobState } from "./job-types.js";
import type { BenchOptions } from "./options.js";
import type { ProgressSnapshot } from "./runner.js";
import { formatEta, num2str } from "./units.js";

function letter(state: number, o: BenchOptions): string {
  switch (state) {
    case JobState.ramp:
      return "/";
    case JobState.done:
      return "_";
    case JobState.waiting:
    case JobState.starting:
      return "-";
    case JobState.verifyRead:
      return "V";
    case JobState.verifyWrite:
      return o.rw.startsWith("rand") ? "w" : "W";
    default: {
      const rand = o.rw.startsWith("rand");
      const c = o.rw === "rw" || o.rw === "randrw" ? "m" : o.rw.endsWith("read") ? "r" : "w";
      return rand ? c : c.toUpperCase();
    }
  }
}

/** Run-length encode the job letters: "r(2)" or "rr_" -> "r(2)_" like fio. */
function letters(states: number[], o: BenchOptions): string {
  const ls = states.map((s) => letter(s, o));
  const out: string[] = [];
  for (let i = 0; i < ls.length; ) {
    let j = i;
    while (j < ls.length && ls[j] === ls[i]) j++;
    out.push(j - i > 1 ? `${ls[i]}(${j - i})` : ls[i]!);
    i = j;
  }
  return out.join("");
}

export class ProgressLine {
  private prev: ProgressSnapshot | undefined;
  private width = 0;

  constructor(
    private readonly opts: BenchOptions,
    private readonly write: (s: string) => void,
  ) {}

  /** Redraw from a new snapshot. */
  update(p: ProgressSnapshot): void {
    const prev = this.prev;
    this.prev = p;
    const dt = prev ? (p.elapsedMs - prev.elapsedMs) / 1000 : p.elapsedMs / 1000;
    const rate = (a: number, b: number) => (dt > 0 ? (a - b) / dt : 0);
    const rBw = rate(p.readBytes, prev?.readBytes ?? 0);
    const wBw = rate(p.writeBytes, prev?.writeBytes ?? 0);
    const rIops = rate(p.readIos, prev?.readIos ?? 0);
    const wIops = rate(p.writeIos, prev?.writeIos ?? 0);
    const running = p.states.filter((s) => s !== JobState.done).length;
    const bw: string[] = [];
    const iops: string[] = [];
    if (rBw > 0 || p.readIos > 0) {
      bw.push(`r=${num2str(rBw, 1024)}B/s`);
      iops.push(`r=${num2str(rIops)}`);
    }
    if (wBw > 0 || p.writeIos > 0) {
      bw.push(`w=${num2str(wBw, 1024)}B/s`);
      iops.push(`w=${num2str(wIops)}`);
    }
    const frac = Math.max(0, Math.min(1, p.fraction));
    const etaMs = frac > 0 ? (p.elapsedMs * (1 - frac)) / frac : 0;
    const line = `Jobs: ${running} (f=${running}): [${letters(p.states, this.opts)}][${(frac * 100).toFixed(1)}%][${
      bw.join(",") || "r=0B/s"
    }][${iops.join(",") || "r=0"} IOPS][eta ${formatEta(etaMs)}]`;
    const padded = line.padEnd(this.width);
    this.width = line.length;
    this.write(`\r${padded}`);
  }

  /** Erase the line (before the report). */
  clear(): void {
    if (this.width > 0) this.write(`\r${" ".repeat(this.width)}\r`);
    this.width = 0;
  }
}

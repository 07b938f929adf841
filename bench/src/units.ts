/**
 * fio-style value parsing and number formatting.
 *
 *   sizes       "4k" "256M" "1g" "512" "1.5m"   base 1024 (fio's kb_base=1024):
 *               k/K/KiB/kb = 1024, m = 1024^2, g, t, p
 *   times       "10" "10s" "500ms" "2m" "1h" "250us"   (bare number = seconds)
 *   percentiles "1:5:50:99:99.9"                       (fio's percentile_list)
 *   cpu lists   "0-3,6,8-9"                            (fio's cpus_allowed)
 */

const SIZE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  m: 1024 ** 2,
  g: 1024 ** 3,
  t: 1024 ** 4,
  p: 1024 ** 5,
};

/** A size with fio suffixes (base 1024). Returns NaN when it does not parse. */
export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?\s*$/i.exec(text);
  if (!m) return Number.NaN;
  const unit = m[2]!.toLowerCase();
  if (unit === "" && m[3] !== undefined && m[3].toLowerCase() !== "b") return Number.NaN;
  const v = Number(m[1]) * SIZE_UNITS[unit]!;
  return Math.floor(v);
}

const TIME_UNITS_MS: Record<string, number> = {
  "": 1000,
  s: 1000,
  sec: 1000,
  ms: 1,
  msec: 1,
  us: 0.001,
  usec: 0.001,
  m: 60_000,
  min: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/** A duration, fio style (bare number = seconds). Returns milliseconds, NaN when it does not parse. */
export function parseTimeMs(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  if (!m) return Number.NaN;
  const f = TIME_UNITS_MS[m[2]!.toLowerCase()];
  if (f === undefined) return Number.NaN;
  return Number(m[1]) * f;
}

/** fio's default percentile_list. */
export const DEFAULT_PERCENTILES = [
  1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 99, 99.5, 99.9, 99.95, 99.99,
];
/** fio keeps at most this many percentiles (FIO_IO_U_LIST_MAX_LEN). */
export const MAX_PERCENTILES = 20;

/** "1:5:50:99:99.9" -> [1, 5, 50, 99, 99.9]; throws a message for the first bad entry. */
export function parsePercentiles(text: string): number[] {
  const parts = text.split(":");
  if (parts.length > MAX_PERCENTILES)
    throw new Error(`at most ${MAX_PERCENTILES} percentiles, got ${parts.length}`);
  const out: number[] = [];
  for (const p of parts) {
    if (!/^\s*\d+(\.\d+)?\s*$/.test(p)) throw new Error(`"${p}" is not a number`);
    const v = Number(p);
    if (!(v > 0 && v <= 100)) throw new Error(`${p} is not in (0, 100]`);
    out.push(v);
  }
  return out;
}

/** "0-3,6" -> [0, 1, 2, 3, 6]; throws a message for the first bad entry. */
export function parseCpuList(text: string, ncpus: number): number[] {
  const set = new Set<number>();
  for (const part of text.split(",")) {
    const m = /^\s*(\d+)(?:\s*-\s*(\d+))?\s*$/.exec(part);
    if (!m) throw new Error(`"${part}" is not a CPU number or range`);
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (b < a) throw new Error(`range ${part} is reversed`);
    if (b >= ncpus) throw new Error(`CPU ${b} does not exist (this machine has CPUs 0-${ncpus - 1})`);
    for (let c = a; c <= b; c++) set.add(c);
  }
  return [...set].sort((x, y) => x - y);
}

/**
 * fio's num2str: at most `maxlen` significant characters, scaling by `base`
 * with unit prefixes. 97300 -> "97.3k", 6543 -> "6543", 1559 MiB -> "1559Mi".
 */
export function num2str(value: number, base: 1000 | 1024 = 1000, maxlen = 4): string {
  const prefixes = base === 1024 ? ["", "Ki", "Mi", "Gi", "Ti", "Pi"] : ["", "k", "M", "G", "T", "P"];
  let v = value;
  let i = 0;
  while (i < prefixes.length - 1 && Math.round(v).toString().length > maxlen) {
    v /= base;
    i++;
  }
  const intDigits = Math.max(1, Math.floor(Math.abs(v)).toString().length);
  let decimals = i === 0 ? 0 : Math.max(0, maxlen - intDigits - 1);
  let s = v.toFixed(decimals);
  // Rounding can add a digit (99.95 -> "100.0"): drop a decimal then.
  while (decimals > 0 && s.replace(".", "").replace("-", "").length > maxlen) {
    decimals--;
    s = v.toFixed(decimals);
  }
  return s + prefixes[i]!;
}

/** "380MiB/s (399MB/s)" as fio prints bandwidth (bytes per second in). */
export function formatBw(bytesPerSec: number): string {
  return `${num2str(bytesPerSec, 1024)}B/s (${num2str(bytesPerSec, 1000)}B/s)`;
}

/** "3801MiB (3986MB)" */
export function formatBytesPair(bytes: number): string {
  return `${num2str(bytes, 1024)}B (${num2str(bytes, 1000)}B)`;
}

/** Bytes as the user would write them back: 4096 -> "4k", 268435456 -> "256M". */
export function formatSize(bytes: number): string {
  const units = ["", "k", "M", "G", "T"];
  let i = 0;
  let v = bytes;
  while (i < units.length - 1 && v >= 1024 && v % 1024 === 0) {
    v /= 1024;
    i++;
  }
  return `${v}${units[i]}`;
}

/** fio's percentile key: 99.9 -> "99.900000". */
export function percentileKey(p: number): string {
  return p.toFixed(6);
}

/** "00m:06s" / "1h:02m:03s" as fio's eta. */
export function formatEta(ms: number): string {
  const s = Math.max(0, Math.ceil(ms / 1000));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  const mm = String(m).padStart(2, "0");
  const ss = String(sec).padStart(2, "0");
  return h > 0 ? `${h}h:${mm}m:${ss}s` : `${mm}m:${ss}s`;
}

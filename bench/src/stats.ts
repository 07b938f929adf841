/**
 * Turning the jobs' raw numbers into fio-shaped statistics.
 *
 * One direction ("read" / "write") of a job or of the whole group, with
 * fio's JSON field names. A group (group_reporting) sums the jobs' I/Os and
 * bytes, takes the longest job runtime, merges the latency histograms, and
 * sums the jobs' per-second samples second by second (so bw/iops min/max
 * describe the group's throughput each second, where fio lists each job's
 * samples; documented in bench/README.md).
 */

import type { DirRaw, JobResult } from "./job-types.js";
import {
  type LatHistogram,
  latMean,
  latMerge,
  latPercentile,
  latStddev,
  newLatHistogram,
} from "./lat-histogram.js";
import { percentileKey } from "./units.js";

export interface LatStats {
  min: number;
  max: number;
  mean: number;
  stddev: number;
  N: number;
  percentile?: Record<string, number>;
}

export interface DirStats {
  io_bytes: number;
  io_kbytes: number;
  bw_bytes: number;
  /** KiB/s */
  bw: number;
  iops: number;
  /** ms */
  runtime: number;
  total_ios: number;
  short_ios: number;
  drop_ios: number;
  slat_ns: LatStats;
  clat_ns: LatStats;
  lat_ns: LatStats;
  bw_min: number;
  bw_max: number;
  bw_agg: number;
  bw_mean: number;
  bw_dev: number;
  bw_samples: number;
  iops_min: number;
  iops_max: number;
  iops_mean: number;
  iops_stddev: number;
  iops_samples: number;
  /** Requests that completed with a non-OK status (vblk addition). */
  errors: number;
}

const EMPTY: LatStats = { min: 0, max: 0, mean: 0, stddev: 0, N: 0 };

export function latStats(hists: LatHistogram[], percentiles?: number[]): LatStats {
  const m = newLatHistogram();
  for (const h of hists) latMerge(m, h);
  if (m.count === 0) {
    const out: LatStats = { ...EMPTY };
    if (percentiles) out.percentile = Object.fromEntries(percentiles.map((p) => [percentileKey(p), 0]));
    return out;
  }
  const out: LatStats = { min: m.min, max: m.max, mean: latMean(m), stddev: latStddev(m), N: m.count };
  if (percentiles)
    out.percentile = Object.fromEntries(percentiles.map((p) => [percentileKey(p), latPercentile(m, p)]));
  return out;
}

function meanStd(xs: number[]): { min: number; max: number; mean: number; dev: number } {
  if (xs.length === 0) return { min: 0, max: 0, mean: 0, dev: 0 };
  let min = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  let sum = 0;
  for (const x of xs) {
    if (x < min) min = x;
    if (x > max) max = x;
    sum += x;
  }
  const mean = sum / xs.length;
  let v = 0;
  for (const x of xs) v += (x - mean) ** 2;
  const dev = xs.length > 1 ? Math.sqrt(v / (xs.length - 1)) : 0;
  return { min, max, mean, dev };
}

/** Sum per-second samples across jobs, second by second (only seconds every job has). */
function sumSamples(series: number[][]): number[] {
  const active = series.filter((s) => s.length > 0);
  if (active.length === 0) return [];
  const n = Math.min(...active.map((s) => s.length));
  const out = new Array<number>(n).fill(0);
  for (const s of active) for (let i = 0; i < n; i++) out[i]! += s[i]!;
  return out;
}

/**
 * Statistics of one direction over some jobs (one job, or the group).
 * `groupBwBytes` is the group's bandwidth (for bw_agg, the job's share).
 */
export function dirStats(dirs: DirRaw[], percentiles: number[], groupBwBytes?: number): DirStats {
  const ios = dirs.reduce((a, d) => a + d.ios, 0);
  const bytes = dirs.reduce((a, d) => a + d.bytes, 0);
  const runtimeMs = Math.max(0, ...dirs.map((d) => (d.ios > 0 ? d.runtimeMs : 0)));
  const secs = runtimeMs / 1000;
  const iops = secs > 0 ? ios / secs : 0;
  const bwBytes = secs > 0 ? bytes / secs : 0;
  const iopsS = meanStd(sumSamples(dirs.map((d) => d.perSecIos)));
  const bwSamples = sumSamples(dirs.map((d) => d.perSecBytes)).map((b) => b / 1024);
  const bwS = meanStd(bwSamples);
  return {
    io_bytes: bytes,
    io_kbytes: Math.floor(bytes / 1024),
    bw_bytes: Math.round(bwBytes),
    bw: Math.round(bwBytes / 1024),
    iops,
    runtime: Math.round(runtimeMs),
    total_ios: ios,
    short_ios: 0,
    drop_ios: 0,
    slat_ns: latStats(dirs.map((d) => d.slat)),
    clat_ns: latStats(
      dirs.map((d) => d.clat),
      percentiles,
    ),
    lat_ns: latStats(dirs.map((d) => d.lat)),
    bw_min: Math.round(bwS.min),
    bw_max: Math.round(bwS.max),
    bw_agg: groupBwBytes && groupBwBytes > 0 ? (100 * bwBytes) / groupBwBytes : bwBytes > 0 ? 100 : 0,
    bw_mean: bwS.mean,
    bw_dev: bwS.dev,
    bw_samples: bwSamples.length,
    iops_min: Math.round(iopsS.min),
    iops_max: Math.round(iopsS.max),
    iops_mean: iopsS.mean,
    iops_stddev: iopsS.dev,
    iops_samples: bwSamples.length,
    errors: dirs.reduce((a, d) => a + d.errors, 0),
  };
}

export interface GroupStats {
  read: DirStats;
  write: DirStats;
}

export function groupStats(jobs: JobResult[], percentiles: number[]): GroupStats {
  return {
    read: dirStats(
      jobs.map((j) => j.read),
      percentiles,
    ),
    write: dirStats(
      jobs.map((j) => j.write),
      percentiles,
    ),
  };
}

export function jobStats(job: JobResult, percentiles: number[], group: GroupStats): GroupStats {
  return {
    read: dirStats([job.read], percentiles, group.read.bw_bytes),
    write: dirStats([job.write], percentiles, group.write.bw_bytes),
  };
}

// Types for guest.mjs (the real-guest harness). Keep in step with the JSDoc there.

export type GuestBackend = "builtin" | "qsd" | "vhost-user";

/** Paths and versions of the kernel + base initramfs built by build-initramfs.sh. */
export interface GuestAssets {
  key: string;
  kernel: string;
  initrd: string;
  /** fio + its shared libraries, appended to the initramfs for workloads that use fio */
  fioCpio: string;
  kernelRelease: string;
  kernelDeb: string;
  modules: string;
  builtAt: string;
  qemu: string | null;
  qsd: string | null;
  qemuVersion: string;
}

/** What the vhost-user server command is given (also as {placeholders} in a string[] command). */
export interface VhostUserContext {
  /** unix socket path the server must listen on (the harness waits for it to appear) */
  socket: string;
  /** absolute path of the raw image */
  image: string;
  numQueues: number;
  queueSize: number;
  /** 1 when the disk should be exported read-only, else 0 */
  readonly: 0 | 1;
  /** serial the caller asked for (servers may ignore it) */
  serial: string;
}

export interface VhostUserServer {
  /**
   * argv of the server; in a string[] the tokens {socket} {image} {numQueues}
   * {queueSize} {readonly} {serial} are replaced. Started before QEMU, sent SIGTERM
   * (then SIGKILL after 5 s) once the guest is done. Its output goes to backend.log.
   */
  command: string[] | ((ctx: VhostUserContext) => string[]);
  env?: Record<string, string>;
  /** how long to wait for the socket to appear (default 30 000 ms) */
  socketTimeoutMs?: number;
}

export interface GuestRunOptions {
  /** "none" boots without a disk (used by the KVM probe) */
  backend: GuestBackend | "none";
  /** raw image path (required except for backend "none") */
  image?: string;
  /** a workload in test/guest/workloads/ (info, fs, fio-verify, fio-perf, flush-discard) */
  workload?: string;
  /** or: shell script text to run in the guest instead of a named workload */
  script?: string;
  /** append fio.cpio (default: when the workload script mentions fio) */
  withFio?: boolean;
  /** environment for the workload (exported in the guest before it runs) */
  env?: Record<string, string | number>;
  /** num-queues of the device (default 2) */
  numQueues?: number;
  /** queue-size (default 256) */
  queueSize?: number;
  /** builtin only: -object iothread + iothread=io0 */
  iothread?: boolean;
  readonly?: boolean;
  /** builtin: serial= of virtio-blk-pci (default "vblk-guest"); passed to vhost-user servers as {serial} */
  serial?: string;
  /** false: discard=ignore (builtin, qsd). Default: discard=unmap */
  discard?: boolean;
  /** builtin/qsd aio= (default native) */
  aio?: "native" | "threads" | "io_uring";
  /** builtin cache= (default none) */
  cache?: string;
  vhostUser?: VhostUserServer;
  /** default: auto (probe), or VBLK_GUEST_ACCEL */
  accel?: "auto" | "kvm" | "tcg";
  /** vCPUs (default 2) */
  smp?: number;
  /** guest memory, memfd-backed and shared (default 1024) */
  memMiB?: number;
  /** hard limit for the whole run, boot included (default 180 000) */
  timeoutMs?: number;
  /** extra kernel command line */
  cmdline?: string;
  /** stop as soon as this text appears on the console (used by the KVM probe) */
  stopAfterMarker?: string;
  /** do not treat a vhost-user server that exits by itself as an error */
  allowBackendExit?: boolean;
  /** false: delete the run's log directory when the run is ok */
  keepLogs?: boolean;
  /** default true unless VBLK_GUEST_VERBOSE=1 */
  quiet?: boolean;
  /** reuse assets from ensureAssets() */
  assets?: GuestAssets;
}

export interface GuestSection {
  text: string;
  /** the text parsed as JSON when it is JSON (warning lines before the JSON are skipped) */
  json?: unknown;
}

export interface ParsedSerial {
  markers: { init: boolean; ready: string | null; workload: boolean; exit: boolean };
  sections: Record<string, GuestSection>;
  /** VBLK-INIT-ERROR lines, unclosed sections */
  errors: string[];
  /** the workload's exit status (VBLK-EXIT N) */
  exitCode: number | null;
}

export interface GuestResult {
  /** VBLK-EXIT 0 seen, no timeout, no init error, backend healthy */
  ok: boolean;
  exitCode: number | null;
  accel: "kvm" | "tcg";
  accelReason: string;
  backend: GuestBackend | "none";
  iothread: boolean;
  numQueues: number;
  workload: string | null;
  timedOut: boolean;
  /** harness-level failure (backend died, socket never appeared, no VBLK-EXIT, ...) */
  error: string | null;
  qemuExit: { code: number | null; signal: string | null };
  qemuStderr: string;
  durationMs: number;
  /** from the start of runGuest to /init's first marker */
  bootMs: number | null;
  markers: ParsedSerial["markers"];
  sections: Record<string, GuestSection>;
  errors: string[];
  /** cache/runs/<stamp>-<label>/: serial.log, qemu.cmd, qemu.out, backend.cmd, backend.log */
  logDir: string;
  serialLog: string;
  backendLog: string | null;
  qemuArgs: string[];
}

export const GUEST_DIR: string;
export const CACHE_DIR: string;
export const WORKLOAD_DIR: string;
export const BUILD_SCRIPT: string;
export const WORKLOADS: string[];

export function ensureAssets(opts?: {
  force?: boolean;
  install?: boolean;
  quiet?: boolean;
}): Promise<GuestAssets>;
export function guestAvailability(opts?: {
  install?: boolean;
  quiet?: boolean;
}): Promise<{ ok: true; assets: GuestAssets } | { ok: false; reason: string }>;
export function resolveAccel(
  assets: GuestAssets,
  opts?: { accel?: "auto" | "kvm" | "tcg"; quiet?: boolean },
): Promise<{ accel: "kvm" | "tcg"; reason: string }>;
export function createImage(path: string, sizeBytes: number, fill?: "sparse" | "zero" | "random"): string;
export function imageDir(): string;
export function parseSerial(text: string): ParsedSerial;
export function runGuest(opts: GuestRunOptions): Promise<GuestResult>;
// biome-ignore lint/suspicious/noExplicitAny: fio's JSON is untyped
export function sectionJson(r: GuestResult, name: string): any;
export function fioIops(fioJson: unknown): number;

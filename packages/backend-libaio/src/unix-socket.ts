/**
 * Unix domain sockets that carry file descriptors (SCM_RIGHTS): the
 * vhost-user control channel. Node's `net` cannot send or receive fds, so the
 * addon does the socket calls; every fd is non-blocking and CLOEXEC.
 *
 * Nothing here blocks the event loop: an {@link FdWatcher} (a libuv poll
 * handle on Node's own loop) says when a socket is readable; then
 * {@link recvMsg} / {@link unixAccept} return at once (-1 = nothing yet).
 * {@link sendMsg} writes everything, waiting for buffer room only when the
 * peer is not reading (bounded by a timeout).
 */
import { requireNative } from "./native.js";

export interface RecvResult {
  /** > 0: bytes read; 0: the peer closed the connection; -1: nothing to read now. */
  bytes: number;
  /** File descriptors that arrived with these bytes (owned by the caller now). */
  fds: number[];
  /** More fds (or control data) were sent than fitted: the extra ones were closed by the kernel. */
  truncated: boolean;
}

interface FdWatcherBinding {
  start(events: number): void;
  stop(): void;
  close(): void;
  ref(): void;
  unref(): void;
}

interface UnixSocketBinding {
  unixListen(path: string, backlog?: number): number;
  unixAccept(fd: number): number;
  unixConnect(path: string): number;
  unixSocketpair(): [number, number];
  recvMsg(fd: number, buf: Uint8Array, maxFds?: number): RecvResult;
  sendMsg(fd: number, buf: Uint8Array, fds?: number[], timeoutMs?: number): number;
  FdWatcher: new (fd: number, cb: (status: number, events: number) => void) => FdWatcherBinding;
}

function native(what: string): UnixSocketBinding {
  const b = requireNative(what) as unknown as Partial<UnixSocketBinding>;
  if (typeof b.unixListen !== "function")
    throw new Error(`${what}: the native addon was built without unix socket support (rebuild it)`);
  return b as UnixSocketBinding;
}

/**
 * Listen on a Unix socket at `path` (SOCK_STREAM, non-blocking). A stale
 * socket file at `path` is removed first; any other file there is an error
 * (EEXIST). Returns the listening fd.
 */
export function unixListen(path: string, backlog = 16): number {
  return native("unixListen").unixListen(path, backlog);
}

/** Accept one pending connection: its fd (non-blocking), or -1 when nobody is waiting. */
export function unixAccept(listenFd: number): number {
  return native("unixAccept").unixAccept(listenFd);
}

/** Connect to a listening Unix socket; the returned fd is non-blocking. */
export function unixConnect(path: string): number {
  return native("unixConnect").unixConnect(path);
}

/** A connected pair of non-blocking Unix stream sockets. */
export function unixSocketpair(): [number, number] {
  return native("unixSocketpair").unixSocketpair();
}

/**
 * One recvmsg(2) into `buf`, collecting up to `maxFds` passed fds. Never
 * blocks: `bytes` is -1 when there is nothing to read.
 */
export function recvMsg(fd: number, buf: Uint8Array, maxFds = 8): RecvResult {
  return native("recvMsg").recvMsg(fd, buf, maxFds);
}

/**
 * Send all of `buf`, with `fds` attached to its first byte. Waits for room
 * in the socket buffer up to `timeoutMs` in total (then throws ETIMEDOUT);
 * a closed peer throws EPIPE (never SIGPIPE). Returns buf.length.
 */
export function sendMsg(fd: number, buf: Uint8Array, fds: number[] = [], timeoutMs = 5000): number {
  return native("sendMsg").sendMsg(fd, buf, fds, timeoutMs);
}

export const FdEvent = { READABLE: 1, WRITABLE: 2, DISCONNECT: 4 } as const;

/**
 * Calls `onReady(status, events)` from the event loop while `fd` is ready
 * (level-triggered: drain it, or you are called again at once). `status` < 0
 * is a libuv error code. One watcher per fd; stop or close it before closing
 * the fd. While started it keeps the process alive unless {@link unref}'d.
 */
export class FdWatcher {
  readonly fd: number;
  readonly #w: FdWatcherBinding;
  #closed = false;

  constructor(fd: number, onReady: (status: number, events: number) => void) {
    this.fd = fd;
    this.#w = new (native("FdWatcher").FdWatcher)(fd, onReady);
  }

  /** Watch for readability (default), writability (2) or both (3). */
  start(events: number = FdEvent.READABLE): void {
    this.#w.start(events);
  }

  stop(): void {
    if (!this.#closed) this.#w.stop();
  }

  /** Stop and release the poll handle; idempotent. Does not close the fd. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#w.close();
  }

  ref(): void {
    if (!this.#closed) this.#w.ref();
  }

  unref(): void {
    if (!this.#closed) this.#w.unref();
  }
}

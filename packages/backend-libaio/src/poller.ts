import { type NativePollerBinding, requireNative } from "./native.js";

export interface PollerAddOptions {
  /**
   * When the fd is an eventfd and becomes ready, read (reset) its counter so
   * the level-triggered readiness clears. Default true. Ignored for fds that
   * are not eventfds (their data is never consumed).
   */
  drainEventfd?: boolean;
}

/**
 * epoll-based single wait for an IOThread: queue kick eventfds, engine
 * completionFds, sockets. Level-triggered EPOLLIN.
 */
export class Poller {
  /** Tokens of the fds found ready by the last wait(); capacity 256. Tokens are uint32: read with `>>> 0`. */
  readonly ready: Int32Array;
  readonly #n: NativePollerBinding;

  constructor() {
    const b = requireNative("Poller");
    this.#n = new b.Poller();
    this.ready = new Int32Array(this.#n.readyBuffer);
  }

  /** Watch `fd`; `token` (uint32) is reported in `ready` when it is readable. Adding an fd again updates its token. */
  add(fd: number, token: number, opts?: PollerAddOptions): void {
    this.#n.add(fd, token, opts?.drainEventfd ?? true);
  }

  /** Stop watching `fd` (no error if it was not watched or is already closed). */
  remove(fd: number): void {
    this.#n.remove(fd);
  }

  /**
   * Wait up to `timeoutMs` (0 = poll, -1 = forever; fractional ms use
   * epoll_pwait2 when the kernel has it, else round up). Writes ready tokens
   * into `ready` and returns how many (0 on timeout). Drains ready eventfds
   * (see {@link PollerAddOptions.drainEventfd}). An interrupted wait resumes
   * for the remaining time.
   */
  wait(timeoutMs: number): number {
    return this.#n.wait(timeoutMs);
  }

  /** The epoll fd (e.g. to nest it in another poller). */
  fd(): number {
    return this.#n.fd();
  }

  /** Close the epoll fd; idempotent. Other methods throw afterwards. */
  close(): void {
    this.#n.close();
  }
}

/**
 * A vhost-user-blk back-end listening on a Unix socket: one front-end at a
 * time, for as long as the server lives (QEMU restarting, a guest reboot,
 * a crashed front-end: the next connection starts from scratch).
 *
 *   listen fd --FdWatcher--> accept --> VhostUserBlkSession (one at a time)
 *                                       |  connection ends: queues stopped
 *                                       |  (in-flight I/O finishes), fds
 *                                       v  closed, memory dropped, device reset
 *                            watch the listen fd again (a waiting front-end
 *                            sat in the kernel's backlog meanwhile)
 */
import { EventEmitter } from "node:events";
import { lstatSync, unlinkSync } from "node:fs";
import { FdWatcher, unixAccept, unixListen } from "@vblk/backend-libaio";
import type { VirtioBlkDevice } from "@vblk/iothread";
import { safeClose } from "./channel.js";
import { VhostUserBlkSession } from "./session.js";

export interface VhostUserBlkServerOptions {
  /** Unix socket path (a stale socket there is replaced). */
  socketPath: string;
  device: VirtioBlkDevice;
  /** Log lines (default: stderr with a "[vblk serve]" prefix). */
  log?: (msg: string) => void;
  /** Log every vhost-user message. */
  debug?: boolean;
}

export interface VhostUserBlkServerStats {
  connections: number;
  /** Connections closed because the front-end broke the protocol (or an error). */
  errors: number;
}

/** Events: "connection" (session), "disconnect" (session, error | undefined). */
export class VhostUserBlkServer extends EventEmitter {
  readonly socketPath: string;
  readonly device: VirtioBlkDevice;
  readonly stats: VhostUserBlkServerStats = { connections: 0, errors: 0 };
  private readonly log: (msg: string) => void;
  private readonly debug: boolean;
  private listenFd: number;
  private readonly watcher: FdWatcher;
  private current: VhostUserBlkSession | null = null;
  private closing: Promise<void> | null = null;

  private constructor(opts: VhostUserBlkServerOptions, fd: number) {
    super();
    this.socketPath = opts.socketPath;
    this.device = opts.device;
    this.log = opts.log ?? ((m) => process.stderr.write(`[vblk serve] ${m}\n`));
    this.debug = opts.debug ?? false;
    this.listenFd = fd;
    this.watcher = new FdWatcher(fd, () => this.onAcceptable());
    this.watcher.start();
    this.device.on("needs-reset", (reason: string) =>
      this.log(`device needs a reset (a queue stopped): ${reason}`),
    );
  }

  /** Listen on opts.socketPath and serve front-ends until close(). */
  static listen(opts: VhostUserBlkServerOptions): VhostUserBlkServer {
    const fd = unixListen(opts.socketPath);
    return new VhostUserBlkServer(opts, fd);
  }

  /** The connected front-end's session, if any. */
  get session(): VhostUserBlkSession | null {
    return this.current;
  }

  private onAcceptable(): void {
    if (this.current !== null || this.closing !== null) return;
    let fd: number;
    try {
      fd = unixAccept(this.listenFd);
    } catch (e) {
      this.log(`accept failed: ${(e as Error).message}`);
      return;
    }
    if (fd < 0) return;
    // One front-end at a time: others wait in the backlog until this one is gone.
    this.watcher.stop();
    this.stats.connections++;
    const s = new VhostUserBlkSession(fd, {
      device: this.device,
      log: this.log,
      debug: this.debug,
      id: this.stats.connections,
    });
    this.current = s;
    this.log(`connection ${s.id}: front-end connected`);
    this.emit("connection", s);
    void s.closed.then((err) => {
      if (err !== undefined) this.stats.errors++;
      this.log(`connection ${s.id}: closed${err ? ` (${err.message})` : ""}; ${s.stats.messages} messages`);
      this.current = null;
      this.emit("disconnect", s, err);
      if (this.closing === null) this.watcher.start();
    });
  }

  /** Stop accepting, end the current connection (in-flight I/O completes), remove the socket file. */
  close(): Promise<void> {
    if (this.closing === null) this.closing = this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    this.watcher.close();
    safeClose(this.listenFd);
    this.listenFd = -1;
    try {
      if (lstatSync(this.socketPath).isSocket()) unlinkSync(this.socketPath);
    } catch {
      // already gone
    }
    const s = this.current;
    if (s !== null) await s.end();
  }
}

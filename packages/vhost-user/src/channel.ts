/**
 * One vhost-user connection's byte stream, cut into messages.
 *
 *   socket fd (non-blocking) --FdWatcher (libuv poll on the main loop)--> onReadable
 *   onReadable: recvMsg exactly what the current message still needs
 *               (header, then payload), collecting SCM_RIGHTS fds on the way;
 *               a complete message goes to `onMessage`; EAGAIN -> wait again
 *
 * Reading exactly the header and then exactly the payload keeps fds with the
 * message they were sent with (QEMU attaches them to the header's sendmsg).
 * A bad header (version, size) or too many fds is a protocol error: the
 * channel reports it and closes; every fd it still holds is closed.
 */
import { closeFd, FdWatcher, recvMsg, sendMsg } from "@vblk/backend-libaio";
import {
  decodeHeader,
  encodeMessage,
  Flag,
  HEADER_SIZE,
  MAX_FDS,
  MAX_PAYLOAD,
  requestName,
  type VhostUserMessage,
} from "./protocol.js";

export interface ChannelHandlers {
  onMessage(msg: VhostUserMessage): void;
  /** The connection ended: `error` is set for protocol/socket errors, undefined for a clean EOF or close(). */
  onClose(error: Error | undefined): void;
}

export interface ChannelOptions {
  /** Messages coming from the other side are replies (a test front-end reads back-end replies). */
  expectReplies?: boolean;
  /** sendMsg timeout when the peer does not read (ms). */
  sendTimeoutMs?: number;
}

export class VhostUserChannel {
  readonly fd: number;
  private readonly watcher: FdWatcher;
  private readonly handlers: ChannelHandlers;
  private readonly opts: ChannelOptions;
  private readonly header = new Uint8Array(HEADER_SIZE);
  private headerGot = 0;
  private payload: Uint8Array | null = null;
  private payloadGot = 0;
  private request = 0;
  private flags = 0;
  private fds: number[] = [];
  private closed = false;

  constructor(fd: number, handlers: ChannelHandlers, opts: ChannelOptions = {}) {
    this.fd = fd;
    this.handlers = handlers;
    this.opts = opts;
    this.watcher = new FdWatcher(fd, (status) => this.onReadable(status));
    this.watcher.start();
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Do not keep the process alive for this connection alone. */
  unref(): void {
    this.watcher.unref();
  }

  private onReadable(status: number): void {
    if (this.closed) return;
    if (status < 0) {
      this.fail(new Error(`socket poll error (libuv ${status})`));
      return;
    }
    try {
      for (;;) {
        if (this.closed) return;
        let target: Uint8Array;
        if (this.headerGot < HEADER_SIZE) target = this.header.subarray(this.headerGot);
        else target = this.payload!.subarray(this.payloadGot);
        const r = recvMsg(this.fd, target, MAX_FDS);
        if (r.fds.length > 0) this.fds.push(...r.fds);
        if (r.truncated) throw new Error(`more than ${MAX_FDS} fds (or bad control data) in one message`);
        if (this.fds.length > MAX_FDS) throw new Error(`more than ${MAX_FDS} fds in one message`);
        if (r.bytes === -1) return;
        if (r.bytes === 0) {
          if (this.headerGot > 0 || this.fds.length > 0)
            this.fail(new Error("peer closed the connection in the middle of a message"));
          else this.finish(undefined);
          return;
        }
        if (this.headerGot < HEADER_SIZE) {
          this.headerGot += r.bytes;
          if (this.headerGot < HEADER_SIZE) continue;
          const h = decodeHeader(this.header);
          this.request = h.request;
          this.flags = h.flags;
          if ((h.flags & Flag.VERSION_MASK) !== Flag.VERSION)
            throw new Error(`${requestName(h.request)}: bad version in flags 0x${h.flags.toString(16)}`);
          const isReply = (h.flags & Flag.REPLY) !== 0;
          if (isReply !== (this.opts.expectReplies ?? false))
            throw new Error(
              `${requestName(h.request)}: ${isReply ? "unexpected reply flag" : "missing reply flag"} (flags 0x${h.flags.toString(16)})`,
            );
          if (h.size > MAX_PAYLOAD)
            throw new Error(`${requestName(h.request)}: payload size ${h.size} > ${MAX_PAYLOAD}`);
          this.payload = new Uint8Array(h.size);
          this.payloadGot = 0;
        } else {
          this.payloadGot += r.bytes;
        }
        if (this.payloadGot === this.payload!.byteLength) this.deliver();
      }
    } catch (e) {
      this.fail(e instanceof Error ? e : new Error(String(e)));
    }
  }

  private deliver(): void {
    const msg: VhostUserMessage = {
      request: this.request,
      flags: this.flags,
      payload: this.payload!,
      fds: this.fds,
    };
    this.fds = [];
    this.headerGot = 0;
    this.payload = null;
    this.payloadGot = 0;
    this.handlers.onMessage(msg);
  }

  /** Send one message (header + payload), fds attached. Throws if the socket is gone. */
  send(request: number, flags: number, payload?: Uint8Array, fds?: number[]): void {
    if (this.closed) throw new Error(`${requestName(request)}: connection closed`);
    sendMsg(this.fd, encodeMessage(request, flags, payload), fds ?? [], this.opts.sendTimeoutMs ?? 5000);
  }

  /** Send raw bytes (tests: malformed input). */
  sendRaw(bytes: Uint8Array, fds?: number[]): void {
    sendMsg(this.fd, bytes, fds ?? [], this.opts.sendTimeoutMs ?? 5000);
  }

  private fail(e: Error): void {
    this.finish(e);
  }

  /** Close the socket (and any fds of a half-read message); onClose runs once. */
  close(): void {
    this.finish(undefined);
  }

  private finish(error: Error | undefined): void {
    if (this.closed) return;
    this.closed = true;
    this.watcher.close();
    for (const fd of this.fds.splice(0)) safeClose(fd);
    safeClose(this.fd);
    this.handlers.onClose(error);
  }
}

export function safeClose(fd: number | null | undefined): void {
  if (fd === null || fd === undefined || fd < 0) return;
  try {
    closeFd(fd);
  } catch {
    // already closed: nothing to release
  }
}

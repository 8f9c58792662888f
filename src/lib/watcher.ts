// A descriptor watched by the event loop (libuv's uv_poll), for loops that
// must not block: a parent waiting in accept() or read() would not run its
// SIGCHLD and SIGTERM handlers until a connection or data came.
import { constants as os } from "node:os";
import { SyscallError } from "./errors.js";
import { native } from "./native.js";
import * as v from "./validate.js";

const READABLE = 1;
const WRITABLE = 2;

/** Which readiness to wait for, or which came. */
export interface Readiness {
  readable: boolean;
  writable: boolean;
}

/**
 * Called from the event loop when the descriptor is ready. `error` is set
 * when the loop could not poll it (EBADF: it was closed under the watcher).
 */
export type WatchCallback = (ready: Readiness, error: SyscallError | null) => void;

/**
 * Calls back, through the event loop, whenever a descriptor is readable
 * and/or writable: level-triggered, like poll(2), until `stop()`.
 *
 * The descriptor becomes non-blocking (libuv sets O_NONBLOCK on it, and the
 * flag lives on the open file description: a forked child that shares it sees
 * it too). Read or accept until EAGAIN in the callback. A watched descriptor
 * must not be closed before `close()`. Only one watcher per descriptor.
 *
 * @example
 * ```ts
 * const w = new FdWatcher(listener, () => {
 *   for (;;) {
 *     let conn;
 *     try { conn = accept(listener); } catch (err) { if (err.code === "EAGAIN") return; throw err; }
 *     // ... fork, close(conn.fd) in the parent
 *   }
 * });
 * w.start({ readable: true });
 * ```
 */
export class FdWatcher {
  readonly fd: number;
  #handle: InstanceType<typeof native.FdWatcher> | null;
  #active = false;

  constructor(fd: number, callback: WatchCallback) {
    this.fd = v.fd(fd);
    if (typeof callback !== "function") throw new TypeError("FdWatcher(fd, callback) needs a function");
    this.#handle = new native.FdWatcher(this.fd, (status, events) =>
      callback(
        { readable: (events & READABLE) !== 0, writable: (events & WRITABLE) !== 0 },
        status < 0 ? new SyscallError(status, "poll") : null,
      ),
    );
  }

  /** True between start() and stop()/close(). */
  get active(): boolean {
    return this.#active;
  }

  /**
   * Starts (or changes) the watch; default: readable. While active, the
   * watcher keeps the event loop alive.
   */
  start(interest: Partial<Readiness> = { readable: true }): void {
    if (!this.#handle) throw new SyscallError(-os.errno.EBADF, "poll");
    const events = (interest.readable ? READABLE : 0) | (interest.writable ? WRITABLE : 0);
    if (events === 0) throw new TypeError("FdWatcher.start() needs readable or writable");
    const r = this.#handle.start(events);
    if (r < 0) throw new SyscallError(r, "poll");
    this.#active = true;
  }

  /** Stops calling back; start() again to resume. */
  stop(): void {
    this.#handle?.stop();
    this.#active = false;
  }

  /** Stops for good and releases the loop's handle (the descriptor stays open). */
  close(): void {
    this.#handle?.close();
    this.#handle = null;
    this.#active = false;
  }
}

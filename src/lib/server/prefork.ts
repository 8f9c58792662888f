// --prefork: N workers forked ahead, each accepting on the shared listener
// and serving one connection after another; a worker that ends is replaced.
import { constants as os } from "node:os";
import { closeInherited } from "../descriptors.js";
import { SyscallError } from "../errors.js";
import { _exit, type ForkOptions } from "../fork.js";
import { native } from "../native.js";
import { warn } from "../output.js";
import { childFailed, handle } from "./connection.js";
import type { ConnectionHandler, LoopWorker } from "./types.js";

/** A worker that ends sooner than this after its start counts as a crash. */
const WORKER_MIN_LIFE_MS = 1000;
export const EMFILE_BACKOFF_MS = 100;
/** Out of descriptors or memory: wait and retry instead of spinning. */
export const exhaustion = new Set(["EMFILE", "ENFILE", "ENOBUFS", "ENOMEM"]);

/** What the pool needs from its server, in the parent. */
export interface PoolHost {
  readonly listener: number;
  /** A LoopWorker when eventLoop is on. */
  readonly handler: ConnectionHandler | LoopWorker;
  /** Async mode: workers forked with their own event loop. */
  readonly eventLoop: boolean;
  /** fork(), timed; throws on failure. */
  fork(options?: ForkOptions): number;
  /** Tracks a new worker for reaping and reports its step. */
  started(pid: number): void;
  /** A fork failure the server goes on after. */
  failed(err: Error): void;
  /** Live workers. */
  live(): number;
  /** True once the server closes: no more workers. */
  stopping(): boolean;
}

export class PreforkPool {
  readonly size: number;
  readonly #host: PoolHost;
  readonly #started = new Map<number, number>();
  #crashes = 0;
  #respawn: NodeJS.Timeout | null = null;

  constructor(size: number, host: PoolHost) {
    this.size = size;
    this.#host = host;
  }

  /** Forks the first N workers. */
  start(): void {
    for (let i = 0; i < this.size; i++) this.#later(() => this.#startWorker());
  }

  has(pid: number): boolean {
    return this.#started.has(pid);
  }

  /** A reaped worker: replace it, at once or, in a crash loop, ever more slowly (up to 8 s). */
  ended(pid: number): void {
    const startedAt = this.#started.get(pid);
    if (startedAt === undefined) return;
    this.#started.delete(pid);
    if (this.#host.stopping()) return;
    this.#crashes = Date.now() - startedAt < WORKER_MIN_LIFE_MS ? this.#crashes + 1 : 0;
    if (this.#crashes === 0) this.#later(() => this.#startWorker());
    else this.#scheduleRespawn(Math.min(8000, 125 * 2 ** this.#crashes));
  }

  /** No more replacements. */
  stop(): void {
    if (this.#respawn) clearTimeout(this.#respawn);
    this.#respawn = null;
  }

  /**
   * An async-mode child returns from fork() into the parent's call stack:
   * whatever follows in the current callback would run in the child too (the
   * rest of a reap loop, another fork). Async workers are forked from a
   * callback of their own, so nothing of the parent's follows.
   */
  #later(fn: () => void): void {
    if (this.#host.eventLoop) setImmediate(fn);
    else fn();
  }

  /** One more worker; on failure, another try in a second. True in an async worker. */
  #startWorker(): boolean {
    // An async worker's fork was queued with setImmediate: close() may have
    // come in between, and a worker forked after it would never be signalled.
    if (this.#host.stopping()) return false;
    let pid: number;
    const parent = native.getpid();
    const { listener, handler, eventLoop } = this.#host;
    const forkedAt = process.hrtime.bigint();
    try {
      pid = this.#host.fork(eventLoop ? { eventLoop, keep: [listener] } : undefined);
    } catch (err) {
      const why = err instanceof SyscallError ? err.summary : String(err);
      this.#host.failed(new Error(`${why}; starting a worker again in 1 s`, { cause: err }));
      this.#scheduleRespawn(1000);
      return false;
    }
    if (pid === 0 && eventLoop) {
      runLoopWorker(listener, handler as LoopWorker, parent, forkedAt);
      return true;
    }
    if (pid === 0) runWorker(listener, handler as ConnectionHandler, parent);
    this.#started.set(pid, Date.now());
    this.#host.started(pid);
    return false;
  }

  #scheduleRespawn(delayMs: number): void {
    if (this.#respawn || this.#host.stopping()) return;
    this.#respawn = setTimeout(() => {
      this.#respawn = null;
      // A failed fork schedules the next try (#respawn): stop here, or a
      // fork that keeps failing would be retried in a busy loop.
      while (!this.#host.stopping() && this.#host.live() < this.size && this.#respawn === null) {
        if (this.#startWorker()) return;
      }
    }, delayMs);
  }
}

/**
 * An async worker (fork({ eventLoop: true })): starts the LoopWorker and
 * returns to its own event loop. SIGTERM closes what the LoopWorker returned
 * (or ends the worker when it returned nothing); the worker ends with status
 * 0 when its loop drains, 1 when the LoopWorker throws.
 */
function runLoopWorker(listener: number, worker: LoopWorker, parent: number, forkedAt: bigint): void {
  native.parentDeathSignal(os.signals.SIGTERM);
  if (native.getppid() !== parent) process.exit(0);
  let server: { close(): unknown } | undefined;
  try {
    server = worker({ listener, forkedAt });
  } catch (err) {
    warn(childFailed("worker", err));
    process.exit(1);
  }
  process.once("SIGTERM", () => {
    if (server) server.close();
    else process.exit(0);
  });
}

/**
 * A worker: never returns. It keeps the listening socket (that is its job;
 * the listener is blocking, so it sleeps in accept() and the kernel wakes one
 * worker per connection) and runs the handler for one connection after
 * another. A throw from the handler ends the worker with status 1 (the pool
 * replaces it).
 */
function runWorker(listener: number, handler: ConnectionHandler, parent: number): never {
  let status = 0;
  try {
    // A worker keeps the port open: it must not outlive a parent that was
    // killed (Linux; elsewhere SIGTERM to the parent still ends them all).
    native.parentDeathSignal(os.signals.SIGTERM);
    if (native.getppid() !== parent) return _exit(0);
    closeInherited([listener]);
    let loggedExhaustion = false;
    for (;;) {
      const accepted = native.accept(listener);
      if (typeof accepted === "number") {
        const err = new SyscallError(accepted, "accept");
        if (exhaustion.has(err.code)) {
          if (!loggedExhaustion)
            warn(`realfork: worker ${native.getpid()}: ${err.summary}; retrying every ${EMFILE_BACKOFF_MS} ms`);
          loggedExhaustion = true;
          native.poll([], [], EMFILE_BACKOFF_MS);
          continue;
        }
        if (err.code === "ECONNABORTED" || err.code === "EPROTO") continue;
        throw err;
      }
      loggedExhaustion = false;
      handle(handler, accepted);
    }
  } catch (err) {
    warn(childFailed("worker", err));
    status = 1;
  }
  return _exit(status);
}

// --prefork: N workers forked ahead, each accepting on the shared listener
// and serving one connection after another; a worker that ends is replaced.
import { constants as os } from "node:os";
import { closeInherited } from "../descriptors.js";
import { SyscallError } from "../errors.js";
import { _exit } from "../fork.js";
import { native } from "../native.js";
import { warn } from "../output.js";
import { childFailed, handle } from "./connection.js";
import type { ConnectionHandler } from "./types.js";

/** A worker that ends sooner than this after its start counts as a crash. */
const WORKER_MIN_LIFE_MS = 1000;
export const EMFILE_BACKOFF_MS = 100;
/** Out of descriptors or memory: wait and retry instead of spinning. */
export const exhaustion = new Set(["EMFILE", "ENFILE", "ENOBUFS", "ENOMEM"]);

/** What the pool needs from its server, in the parent. */
export interface PoolHost {
  readonly listener: number;
  readonly handler: ConnectionHandler;
  /** fork(), timed; throws on failure. */
  fork(): number;
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
    for (let i = 0; i < this.size; i++) this.#startWorker();
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
    if (this.#crashes === 0) this.#startWorker();
    else this.#scheduleRespawn(Math.min(8000, 125 * 2 ** this.#crashes));
  }

  /** No more replacements. */
  stop(): void {
    if (this.#respawn) clearTimeout(this.#respawn);
    this.#respawn = null;
  }

  /** One more worker; on failure, another try in a second. */
  #startWorker(): void {
    let pid: number;
    const parent = native.getpid();
    try {
      pid = this.#host.fork();
    } catch (err) {
      const why = err instanceof SyscallError ? err.summary : String(err);
      this.#host.failed(new Error(`${why}; starting a worker again in 1 s`, { cause: err }));
      this.#scheduleRespawn(1000);
      return;
    }
    if (pid === 0) runWorker(this.#host.listener, this.#host.handler, parent);
    this.#started.set(pid, Date.now());
    this.#host.started(pid);
  }

  #scheduleRespawn(delayMs: number): void {
    if (this.#respawn || this.#host.stopping()) return;
    this.#respawn = setTimeout(() => {
      this.#respawn = null;
      while (!this.#host.stopping() && this.#host.live() < this.size) this.#startWorker();
    }, delayMs);
  }
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

// The accept-then-fork server, step for step the C loop of c/echo_mpserv.c:
// accept, fork, the child closes the listener and serves the connection, the
// parent closes the connected socket and accepts again; SIGCHLD reaps.
import { EventEmitter } from "node:events";
import { constants as os } from "node:os";
import { closeInherited } from "../descriptors.js";
import { InvalidArgTypeError, SyscallError } from "../errors.js";
import { _exit, type ForkOptions, fork, trimBeforeForking } from "../fork.js";
import { native } from "../native.js";
import { warn } from "../output.js";
import * as posix from "../posix.js";
import { Reaper } from "../reaper.js";
import * as v from "../validate.js";
import { FdWatcher } from "../watcher.js";
import { childFailed, formatAddress, handle } from "./connection.js";
import { EMFILE_BACKOFF_MS, exhaustion, PreforkPool } from "./prefork.js";
import type {
  ConnectionHandler,
  ForkingServerEvents,
  ForkingServerOptions,
  LoopWorker,
  ServerAddress,
  ServerStep,
} from "./types.js";

const EAGAIN = -os.errno.EAGAIN;
const EWOULDBLOCK = -os.errno.EWOULDBLOCK;
/** How many fork() latencies are kept between two takeForkTimes(). */
const FORK_SAMPLES = 65536;

type Resolved = Required<Omit<ForkingServerOptions, "onStep">> & Pick<ForkingServerOptions, "onStep">;

function resolveOptions(options: ForkingServerOptions): Resolved {
  if (options === null || typeof options !== "object") throw new InvalidArgTypeError("options", "an object", options);
  const host = v.numericHost("options.host", options.host ?? "0.0.0.0");
  return {
    host,
    port: v.integer("options.port", options.port ?? 0, 0, 65535),
    backlog: v.integer("options.backlog", options.backlog ?? 128, 1, 65535),
    maxChildren: v.integer("options.maxChildren", options.maxChildren ?? 256, 1, 1_000_000),
    prefork: v.integer("options.prefork", options.prefork ?? 0, 0, 4096),
    eventLoop: eventLoopOption(options),
    leakParent: options.leakParent ?? false,
    leakChild: options.leakChild ?? false,
    onStep: options.onStep,
  };
}

function eventLoopOption(options: ForkingServerOptions): boolean {
  const on = options.eventLoop ?? false;
  if (typeof on !== "boolean") throw new InvalidArgTypeError("options.eventLoop", "of type boolean", on);
  if (on && !(typeof options.prefork === "number" && options.prefork > 0)) {
    throw Object.assign(new TypeError("options.eventLoop needs options.prefork > 0 (async workers)"), {
      code: "ERR_INVALID_ARG_VALUE",
    });
  }
  return on;
}

/**
 * A forking TCP server on real fork(2), like Python's ForkingTCPServer or
 * Perl's Net::Server::Fork/PreFork; `realfork serve` is built on it.
 *
 * The parent watches the listener through the event loop (it never blocks in
 * accept(), so SIGCHLD and SIGTERM are handled while idle), accepts, forks,
 * and closes its copy of each connection. The child closes the listener and
 * the runtime's descriptors, runs `handler(conn)` synchronously, closes the
 * connection and `_exit`s: status 0, or 1 with a line on stderr when the
 * handler throws. Children are reaped on SIGCHLD ("child-exit" event).
 *
 * With `prefork: N`, N workers are forked at listen(); each accepts on the
 * shared listener and runs the handler for one connection after another.
 *
 * With `prefork: N, eventLoop: true` (async mode, Linux), each worker gets an
 * event loop of its own and the handler is a LoopWorker: it starts, say, an
 * http.Server on the shared listener; SIGTERM closes it.
 *
 * Node must run with `--single-threaded` (see `ensureNodeFlags()`).
 *
 * @example
 * ```ts
 * const server = new ForkingServer({ port: 0 }, (conn) => {
 *   writeAll(conn.fd, `hello ${conn.peer}, I am ${process.pid}\n`);
 * });
 * const { port } = server.listen();
 * process.once("SIGTERM", () => server.close());
 *
 * // Async mode: node:http in 4 workers on one listener.
 * const web = new ForkingServer({ port: 8080, prefork: 4, eventLoop: true }, ({ listener }) =>
 *   http.createServer((req, res) => res.end("hi")).listen({ fd: listener }),
 * );
 * ```
 */
export class ForkingServer extends EventEmitter<ForkingServerEvents> {
  readonly options: Readonly<Required<Omit<ForkingServerOptions, "onStep">>>;
  readonly #handler: ConnectionHandler | LoopWorker;
  readonly #onStep: ((step: ServerStep) => void) | undefined;
  #reaper: Reaper | null = null;
  #pool: PreforkPool | null = null;
  #listener = -1;
  #bound: ServerAddress | null = null;
  #watcher: FdWatcher | null = null;
  #backoff: NodeJS.Timeout | null = null;
  #loggedExhaustion = false;
  #closing = false;
  #keepAlive: NodeJS.Timeout | null = null;
  #closed: Promise<void> | null = null;
  #onClosed: (() => void) | null = null;
  #forkTimes: number[] = [];

  /**
   * @param options - where to listen and how many children; all optional.
   * @param handler - runs in the forked child (or worker) for each connection.
   */
  constructor(options: ForkingServerOptions & { eventLoop: true }, handler: LoopWorker);
  constructor(options: ForkingServerOptions, handler: ConnectionHandler);
  constructor(options: ForkingServerOptions, handler: ConnectionHandler | LoopWorker) {
    super();
    const { onStep, ...rest } = resolveOptions(options);
    if (typeof handler !== "function") throw new InvalidArgTypeError("handler", "a function", handler);
    this.options = Object.freeze(rest);
    this.#onStep = onStep;
    this.#handler = handler;
  }

  /** The listening descriptor; -1 before listen() and after close(). */
  get listener(): number {
    return this.#listener;
  }

  /** Pids of the live children (or workers). */
  get children(): number[] {
    return this.#reaper?.pids ?? [];
  }

  /** The bound address, or null when not listening. */
  address(): ServerAddress | null {
    return this.#bound;
  }

  /**
   * socket, SO_REUSEADDR, bind, listen; then accepts as connections come (or
   * forks the prefork workers). Throws SyscallError when the address cannot
   * be bound. Returns the bound address (the port the system chose for 0).
   */
  listen(): ServerAddress {
    if (this.#listener >= 0 || this.#closing) throw new Error("ForkingServer.listen(): already listening or closed");
    const { host, port, backlog } = this.options;
    const fd = posix.socket(
      v.ipFamily(host) === 6 ? native.constants.AF_INET6 : native.constants.AF_INET,
      native.constants.SOCK_STREAM,
    );
    try {
      posix.setsockopt(fd, native.constants.SOL_SOCKET, native.constants.SO_REUSEADDR, 1);
      posix.bind(fd, host, port);
      posix.listen(fd, backlog);
    } catch (err) {
      posix.close(fd);
      throw err;
    }
    this.#listener = fd;
    try {
      return this.#start(fd);
    } catch (err) {
      // A throwing onStep or 'listening' listener: nothing is left half
      // started (a listener, a keep-alive timer, workers) to hold the
      // process and the port for ever.
      void this.close("SIGKILL");
      throw err;
    }
  }

  /** After listen(2): the reaper, then the workers or the watched accept loop. */
  #start(fd: number): ServerAddress {
    const { prefork, eventLoop } = this.options;
    const bound = posix.getsockname(fd);
    this.#bound = { address: bound.address, port: bound.port };
    this.#reaper = new Reaper();
    this.#reaper.on("exit", (status) => this.#onChildExit(status));
    // Signal handles do not keep Node running, and the watcher is stopped at
    // maxChildren or during close(): without this the loop could end (and
    // the process with it) while children are still to be reaped.
    this.#keepAlive = setInterval(() => {}, 2 ** 30);
    trimBeforeForking();
    this.#onStep?.({ step: "listening", listener: fd, address: bound.address, port: bound.port });
    this.emit("listening", this.#bound);
    if (prefork > 0) {
      // The listener stays blocking: each worker sleeps in accept(), and the
      // kernel wakes one of them per connection.
      const reaper = this.#reaper;
      this.#pool = new PreforkPool(prefork, {
        listener: fd,
        handler: this.#handler,
        eventLoop,
        fork: (options) => this.#fork(options),
        started: (pid) => {
          reaper.track(pid);
          this.#onStep?.({ step: "worker-started", child: pid, listener: fd });
        },
        failed: (err) => this.#report(err),
        live: () => reaper.live,
        stopping: () => this.#closing,
      });
      this.#pool.start();
      return this.#bound;
    }
    // The loop watches the listener (uv_poll, which makes it non-blocking)
    // instead of blocking in accept(): SIGCHLD and SIGTERM are handled while
    // the parent is idle, which a blocking accept() under SA_RESTART would not.
    this.#watcher = new FdWatcher(fd, () => this.#acceptReady());
    this.#resume();
    return this.#bound;
  }

  #resume(): void {
    if (this.#watcher && !this.#watcher.active && !this.#closing) this.#watcher.start();
  }

  #pause(): void {
    if (this.#watcher?.active) this.#watcher.stop();
  }

  #acceptReady(): void {
    const reaper = this.#reaper;
    while (!this.#closing && reaper) {
      if (reaper.live >= this.options.maxChildren) {
        // At the cap: leave connections in the backlog until a child ends.
        this.#pause();
        return;
      }
      const accepted = native.accept(this.#listener);
      if (typeof accepted === "number") {
        if (accepted === EAGAIN || accepted === EWOULDBLOCK) return;
        this.#acceptFailed(accepted);
        return;
      }
      this.#loggedExhaustion = false;
      this.#serve(accepted, reaper);
    }
  }

  #acceptFailed(errno: number): void {
    const err = new SyscallError(errno, "accept");
    if (exhaustion.has(err.code)) {
      // Out of descriptors or memory: the connection stays in the backlog.
      // Retrying at once would spin at 100% CPU; wait, then try again.
      if (!this.#loggedExhaustion) {
        this.#report(new Error(`${err.summary}; retrying every ${EMFILE_BACKOFF_MS} ms`, { cause: err }));
        this.#loggedExhaustion = true;
      }
      this.#pause();
      this.#backoff = setTimeout(() => {
        this.#backoff = null;
        this.#resume();
        this.#acceptReady();
      }, EMFILE_BACKOFF_MS);
      return;
    }
    // ECONNABORTED and the like concern one connection only: go on.
    this.#report(new Error(err.summary, { cause: err }));
  }

  #serve(accepted: posix.Accepted, reaper: Reaper): void {
    const conn = accepted.fd;
    const peer = formatAddress(accepted.address, accepted.port);
    this.emit("connection", { address: accepted.address, port: accepted.port, family: accepted.family });
    this.#onStep?.({ step: "accepted", conn, peer });
    let pid: number;
    try {
      pid = this.#fork();
    } catch (err) {
      // As the C does: drop this connection, keep serving.
      posix.close(conn);
      const why = err instanceof SyscallError ? err.summary : String(err);
      this.#report(new Error(`${why}; connection from ${peer} closed`, { cause: err }));
      return;
    }
    if (pid === 0) this.#child(accepted);
    reaper.track(pid);
    this.#onStep?.({ step: "forked", conn, child: pid });
    if (!this.options.leakParent) {
      posix.close(conn);
      this.#onStep?.({ step: "parent-closed", conn, child: pid });
    }
  }

  /** The per-connection child: never returns. */
  #child(accepted: posix.Accepted): never {
    const onStep = this.#onStep;
    const { leakChild } = this.options;
    const conn = accepted.fd;
    const listener = this.#listener;
    let status = 0;
    try {
      onStep?.({ step: "child-forked", conn, listener });
      if (!leakChild) {
        posix.close(listener);
        onStep?.({ step: "child-closed-listener", listener });
      }
      // What the Node runtime left open (epoll, eventfds, pipes) goes too:
      // the child keeps stdin, stdout, stderr and its connection, as in C.
      closeInherited(leakChild ? [conn, listener] : [conn]);
      handle(this.#handler as ConnectionHandler, accepted, () => onStep?.({ step: "child-closed", conn }));
    } catch (err) {
      warn(childFailed("child", err));
      status = 1;
    }
    onStep?.({ step: "child-exiting", conn, status });
    return _exit(status);
  }

  /** fork(), with its latency in the parent kept for takeForkTimes(). */
  #fork(options?: ForkOptions): number {
    const started = performance.now();
    const pid = fork(options);
    if (pid !== 0 && this.#forkTimes.length < FORK_SAMPLES)
      this.#forkTimes.push(Math.round((performance.now() - started) * 1000));
    return pid;
  }

  /** fork() latencies the parent measured since the last call, in microseconds (then forgotten). */
  takeForkTimes(): number[] {
    const times = this.#forkTimes;
    this.#forkTimes = [];
    return times;
  }

  /** An 'error' event, or a line on stderr when nobody listens for one. */
  #report(err: Error): void {
    if (this.listenerCount("error") > 0) this.emit("error", err);
    else warn(`realfork: ${err.message}`);
  }

  #onChildExit(status: posix.WaitStatus): void {
    const worker = this.#pool?.has(status.pid) ?? false;
    this.emit("child-exit", status, worker ? "worker" : "connection");
    this.#onStep?.({ step: "reaped", child: status.pid, status });
    const reaper = this.#reaper;
    if (this.#closing) {
      // One SIGCHLD may reap several children, each with its own event: the
      // end comes after the last of them.
      if (reaper?.live === 0) queueMicrotask(() => this.#finish());
      return;
    }
    if (worker) {
      this.#pool?.ended(status.pid);
      return;
    }
    if (reaper && this.#watcher && !this.#watcher.active && this.#backoff === null) {
      if (reaper.live < this.options.maxChildren) {
        this.#resume();
        this.#acceptReady();
      }
    }
  }

  /**
   * Stops accepting, closes the listener, sends `signal` to every live child
   * (or worker) and resolves once all are reaped; then emits 'close'. Calling
   * it again sends the signal again and returns the same promise.
   */
  close(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    if (!this.#closed) {
      this.#closing = true;
      this.#closed = new Promise<void>((resolve) => {
        this.#onClosed = resolve;
      });
      if (this.#backoff) clearTimeout(this.#backoff);
      this.#backoff = null;
      this.#pool?.stop();
      this.#watcher?.close();
      this.#watcher = null;
      if (this.#listener >= 0) posix.close(this.#listener);
      this.#listener = -1;
      this.#bound = null;
    }
    this.signalChildren(signal);
    // Children that ended before SIGCHLD's handler ran are collected here, on
    // the next turn: 'child-exit' and 'close' never fire inside close() (nor
    // inside a listen() that is throwing).
    setImmediate(() => {
      this.#reaper?.reap();
      if (!this.#reaper || this.#reaper.live === 0) this.#finish();
    });
    return this.#closed;
  }

  /** Sends `signal` to every live child (or worker); ESRCH (already gone) is ignored. */
  signalChildren(signal: NodeJS.Signals): void {
    for (const pid of this.children) {
      try {
        posix.kill(pid, signal);
      } catch {}
    }
  }

  #finish(): void {
    if (this.#keepAlive) clearInterval(this.#keepAlive);
    this.#keepAlive = null;
    this.#reaper?.dispose();
    const done = this.#onClosed;
    this.#onClosed = null;
    if (done) {
      done();
      this.emit("close");
    }
  }
}

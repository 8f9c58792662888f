// The accept-then-fork echo server, step for step the C loop of
// c/echo_mpserv.c: accept, fork, the child closes the listener and echoes
// until EOF, the parent closes the connected socket and accepts again.
import { isIP } from "node:net";
import { constants as os } from "node:os";
import { closeInherited } from "./descriptors.js";
import { SyscallError } from "./errors.js";
import { _exit, fork, trimBeforeForking } from "./fork.js";
import { native } from "./native.js";
import { writeAll } from "./output.js";
import * as posix from "./posix.js";
import { Reaper } from "./reaper.js";

export interface ServeOptions {
  host: string;
  port: number;
  bufferSize: number;
  maxChildren: number;
  backlog: number;
  /** No per-connection lines (benchmarks). */
  quiet: boolean;
  /**
   * 0: fork a child per connection (the C loop). N > 0: fork N workers ahead,
   * each accepting on the shared listener and serving connections one after
   * another; a worker that ends is replaced.
   */
  prefork?: number;
  /** Negative control: the parent keeps the connected socket open. */
  leakParent?: boolean;
  /** Negative control: the child keeps the listening socket open. */
  leakChild?: boolean;
  /** Called at each step of the loop, in the process that takes it. */
  onStep?: (step: ServerStep) => void;
  out?: (line: string) => void;
  err?: (line: string) => void;
}

export type ServerStep =
  | { step: "listening"; listener: number; address: string; port: number }
  | { step: "accepted"; conn: number; peer: string }
  | { step: "forked"; conn: number; child: number }
  | { step: "parent-closed"; conn: number; child: number }
  | { step: "child-closed-listener"; listener: number }
  | { step: "child-closed"; conn: number }
  /** In the child, right after fork(), before it closes anything. */
  | { step: "child-forked"; conn: number; listener: number }
  /** In the child, just before _exit(status). */
  | { step: "child-exiting"; conn: number; status: number }
  | { step: "reaped"; child: number; status: posix.WaitStatus }
  | { step: "worker-started"; child: number; listener: number };

const EAGAIN = -os.errno.EAGAIN;
const EWOULDBLOCK = -os.errno.EWOULDBLOCK;
const EMFILE_BACKOFF_MS = 100;
/** A worker that ends sooner than this after its start counts as a crash. */
const WORKER_MIN_LIFE_MS = 1000;
/** How many fork() latencies are kept between two takeForkTimes(). */
const FORK_SAMPLES = 65536;

const exhaustion = new Set(["EMFILE", "ENFILE", "ENOBUFS", "ENOMEM"]);

export function formatAddress(address: string, port: number): string {
  return isIP(address) === 6 ? `[${address}]:${port}` : `${address}:${port}`;
}

export class EchoServer {
  readonly options: ServeOptions;
  readonly reaper = new Reaper();
  #listener = -1;
  #watcher: InstanceType<typeof native.FdWatcher> | null = null;
  #watching = false;
  #backoff: NodeJS.Timeout | null = null;
  #loggedExhaustion = false;
  #stopping = false;
  #keepAlive: NodeJS.Timeout | null = null;
  #onStopped: (() => void) | null = null;
  #forkTimes: number[] = [];
  readonly #workerStarted = new Map<number, number>();
  #workerCrashes = 0;
  #respawn: NodeJS.Timeout | null = null;
  readonly #out: (line: string) => void;
  readonly #err: (line: string) => void;

  constructor(options: ServeOptions) {
    this.options = options;
    this.#out = options.out ?? ((line) => writeAll(1, `${line}\n`));
    this.#err = options.err ?? ((line) => writeAll(2, `${line}\n`));
    this.reaper.on("exit", (status) => this.#onChildExit(status));
  }

  get listener(): number {
    return this.#listener;
  }

  get children(): number[] {
    return this.reaper.pids;
  }

  /** socket, SO_REUSEADDR, bind, listen; then accept as connections come. */
  listen(): { address: string; port: number } {
    const { host, port, backlog } = this.options;
    const fd = posix.socket(
      isIP(host) === 6 ? native.constants.AF_INET6 : native.constants.AF_INET,
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
    const bound = posix.getsockname(fd);
    // Signal handles do not keep Node running, and the watcher is stopped at
    // --max-children or during shutdown: without this the loop could end
    // (and the process with it) while children are still to be reaped.
    this.#keepAlive = setInterval(() => {}, 2 ** 30);
    trimBeforeForking();
    this.options.onStep?.({ step: "listening", listener: fd, address: bound.address, port: bound.port });
    if (this.options.prefork) {
      // The listener stays blocking: each worker sleeps in accept(), and the
      // kernel wakes one of them per connection.
      for (let i = 0; i < this.options.prefork; i++) this.#startWorker();
      return { address: bound.address, port: bound.port };
    }
    // The loop watches the listener (uv_poll, which makes it non-blocking)
    // instead of blocking in accept(): SIGCHLD and SIGTERM are handled while
    // the parent is idle, which a blocking accept() under SA_RESTART would not.
    this.#watcher = new native.FdWatcher(fd, () => this.#acceptReady());
    this.#resume();
    return { address: bound.address, port: bound.port };
  }

  #resume(): void {
    if (this.#watcher && !this.#watching && !this.#stopping) {
      this.#watcher.start();
      this.#watching = true;
    }
  }

  #pause(): void {
    if (this.#watcher && this.#watching) {
      this.#watcher.stop();
      this.#watching = false;
    }
  }

  #acceptReady(): void {
    while (!this.#stopping) {
      if (this.reaper.live >= this.options.maxChildren) {
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
      this.#serve(accepted);
    }
  }

  #acceptFailed(errno: number): void {
    const err = new SyscallError(errno, "accept");
    if (exhaustion.has(err.code)) {
      // Out of descriptors or memory: the connection stays in the backlog.
      // Retrying at once would spin at 100% CPU; wait, then try again.
      if (!this.#loggedExhaustion) {
        this.#err(`realfork: ${err.summary}; retrying every ${EMFILE_BACKOFF_MS} ms`);
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
    this.#err(`realfork: ${err.summary}`);
  }

  #serve(accepted: posix.Accepted): void {
    const { quiet, onStep } = this.options;
    const conn = accepted.fd;
    if (!quiet) this.#out("new client connected...");
    onStep?.({ step: "accepted", conn, peer: formatAddress(accepted.address, accepted.port) });
    let pid: number;
    try {
      pid = this.#fork();
    } catch (err) {
      // As the C does: drop this connection, keep serving.
      posix.close(conn);
      const why = err instanceof SyscallError ? err.summary : String(err);
      this.#err(`realfork: ${why}; connection from ${formatAddress(accepted.address, accepted.port)} closed`);
      return;
    }
    if (pid === 0) this.#child(conn);
    this.reaper.track(pid);
    onStep?.({ step: "forked", conn, child: pid });
    if (!this.options.leakParent) {
      posix.close(conn);
      onStep?.({ step: "parent-closed", conn, child: pid });
    }
  }

  /** The child: never returns. */
  #child(conn: number): never {
    const { bufferSize, quiet, leakChild, onStep } = this.options;
    let status = 0;
    try {
      onStep?.({ step: "child-forked", conn, listener: this.#listener });
      if (!leakChild) {
        posix.close(this.#listener);
        onStep?.({ step: "child-closed-listener", listener: this.#listener });
      }
      // What the Node runtime left open (epoll, eventfds, pipes) goes too:
      // the child keeps stdin, stdout, stderr and its connection, as in C.
      closeInherited(leakChild ? [conn, this.#listener] : [conn]);
      echo(conn, bufferSize, (line) => this.#err(line));
      posix.close(conn);
      onStep?.({ step: "child-closed", conn });
      if (!quiet) this.#out("client disconnected...");
    } catch (err) {
      this.#err(`realfork: child ${posix.getpid()}: ${err instanceof SyscallError ? err.summary : String(err)}`);
      status = 1;
    }
    onStep?.({ step: "child-exiting", conn, status });
    return _exit(status);
  }

  /** fork(), with its latency in the parent kept for takeForkTimes(). */
  #fork(): number {
    const started = performance.now();
    const pid = fork();
    if (pid !== 0 && this.#forkTimes.length < FORK_SAMPLES)
      this.#forkTimes.push(Math.round((performance.now() - started) * 1000));
    return pid;
  }

  /** fork() latencies seen by the parent since the last call, in microseconds. */
  takeForkTimes(): number[] {
    const times = this.#forkTimes;
    this.#forkTimes = [];
    return times;
  }

  /** --prefork: one more worker; on failure, another try in a second. */
  #startWorker(): void {
    let pid: number;
    const parent = native.getpid();
    try {
      pid = this.#fork();
    } catch (err) {
      this.#err(`realfork: ${err instanceof SyscallError ? err.summary : String(err)}; starting a worker again in 1 s`);
      this.#scheduleRespawn(1000);
      return;
    }
    if (pid === 0) this.#worker(parent);
    this.reaper.track(pid);
    this.#workerStarted.set(pid, Date.now());
    this.options.onStep?.({ step: "worker-started", child: pid, listener: this.#listener });
  }

  #scheduleRespawn(delayMs: number): void {
    if (this.#respawn || this.#stopping) return;
    this.#respawn = setTimeout(() => {
      this.#respawn = null;
      while (!this.#stopping && this.reaper.live < (this.options.prefork ?? 0)) this.#startWorker();
    }, delayMs);
  }

  /**
   * A --prefork worker: never returns. It keeps the listening socket (that is
   * its job) and serves one connection after another, each with the same
   * echo loop as a per-connection child.
   */
  #worker(parent: number): never {
    const { bufferSize, quiet } = this.options;
    const say = (line: string) => this.#err(line);
    let status = 0;
    try {
      // A worker keeps the port open: it must not outlive a parent that was
      // killed (Linux; elsewhere SIGTERM to the parent still ends them all).
      native.parentDeathSignal(os.signals.SIGTERM);
      if (native.getppid() !== parent) return _exit(0);
      closeInherited([this.#listener]);
      const buf = Buffer.allocUnsafe(bufferSize);
      let loggedExhaustion = false;
      for (;;) {
        const accepted = native.accept(this.#listener);
        if (typeof accepted === "number") {
          const err = new SyscallError(accepted, "accept");
          if (exhaustion.has(err.code)) {
            if (!loggedExhaustion)
              say(`realfork: worker ${native.getpid()}: ${err.summary}; retrying every ${EMFILE_BACKOFF_MS} ms`);
            loggedExhaustion = true;
            native.poll([], [], EMFILE_BACKOFF_MS);
            continue;
          }
          if (err.code === "ECONNABORTED" || err.code === "EPROTO") continue;
          throw err;
        }
        loggedExhaustion = false;
        if (!quiet) this.#out("new client connected...");
        echo(accepted.fd, buf, say);
        native.close(accepted.fd);
        if (!quiet) this.#out("client disconnected...");
      }
    } catch (err) {
      say(`realfork: worker ${native.getpid()}: ${err instanceof SyscallError ? err.summary : String(err)}`);
      status = 1;
    }
    return _exit(status);
  }

  #onChildExit(status: posix.WaitStatus): void {
    if (!this.options.quiet) this.#out(`removed proc id: ${status.pid} `);
    if (status.state === "signaled") this.#err(`realfork: child ${status.pid} was killed by ${status.signal}`);
    else if (status.code !== 0) this.#err(`realfork: child ${status.pid} exited with status ${status.code}`);
    this.options.onStep?.({ step: "reaped", child: status.pid, status });
    if (this.#stopping) {
      if (this.reaper.live === 0) this.#finish();
      return;
    }
    const workerStart = this.#workerStarted.get(status.pid);
    if (workerStart !== undefined) {
      this.#workerStarted.delete(status.pid);
      // A worker that dies at once (a crash loop) is replaced ever more
      // slowly, up to once every 8 s, instead of in a fork storm.
      this.#workerCrashes = Date.now() - workerStart < WORKER_MIN_LIFE_MS ? this.#workerCrashes + 1 : 0;
      if (this.#workerCrashes === 0) this.#startWorker();
      else this.#scheduleRespawn(Math.min(8000, 125 * 2 ** this.#workerCrashes));
      return;
    }
    if (!this.#watching && this.#backoff === null && this.reaper.live < this.options.maxChildren) {
      this.#resume();
      this.#acceptReady();
    }
  }

  /**
   * Stops accepting, closes the listener, sends `signal` to every live child
   * and resolves once all are reaped.
   */
  stop(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    if (!this.#stopping) {
      this.#stopping = true;
      if (this.#backoff) clearTimeout(this.#backoff);
      this.#backoff = null;
      if (this.#respawn) clearTimeout(this.#respawn);
      this.#respawn = null;
      this.#watcher?.close();
      this.#watcher = null;
      this.#watching = false;
      if (this.#listener >= 0) posix.close(this.#listener);
      this.#listener = -1;
    }
    const done = new Promise<void>((resolve) => {
      const previous = this.#onStopped;
      this.#onStopped = () => {
        previous?.();
        resolve();
      };
    });
    this.signalChildren(signal);
    // Children that ended before the signal handler ran are collected here.
    this.reaper.reap();
    if (this.reaper.live === 0) this.#finish();
    return done;
  }

  signalChildren(signal: NodeJS.Signals): void {
    for (const pid of this.reaper.pids) {
      try {
        posix.kill(pid, signal);
      } catch {}
    }
  }

  #finish(): void {
    if (this.#keepAlive) clearInterval(this.#keepAlive);
    this.#keepAlive = null;
    this.reaper.dispose();
    const cb = this.#onStopped;
    this.#onStopped = null;
    cb?.();
  }
}

/**
 * The child's loop: read up to bufferSize bytes, write them all back, until
 * EOF. A reset or a closed peer (EPIPE: Node ignores SIGPIPE, and the child
 * keeps that) ends the loop like EOF does, with a line on stderr.
 */
export function echo(conn: number, buffer: number | Buffer, err: (line: string) => void): void {
  const buf = typeof buffer === "number" ? Buffer.allocUnsafe(buffer) : buffer;
  const size = buf.byteLength;
  for (;;) {
    const n = native.read(conn, buf, 0, size);
    if (n === 0) return;
    if (n < 0) {
      err(`realfork: child ${native.getpid()}: ${new SyscallError(n, "read").summary}`);
      return;
    }
    let off = 0;
    while (off < n) {
      const w = native.write(conn, buf, off, n - off);
      if (w < 0) {
        err(`realfork: child ${native.getpid()}: ${new SyscallError(w, "write").summary}`);
        return;
      }
      off += w;
    }
  }
}

// What a ForkingServer is given, what it reports, and what its handler sees.
import type { SocketAddress, WaitStatus } from "../posix.js";

/**
 * One accepted connection, as the handler sees it in the forked child (or in
 * a prefork worker).
 */
export interface Connection {
  /** The connected socket's descriptor: plain blocking read/write/shutdown on it. */
  readonly fd: number;
  /** The peer's numeric address ("127.0.0.1", "::1"). */
  readonly address: string;
  /** The peer's port. */
  readonly port: number;
  readonly family: SocketAddress["family"];
  /** "127.0.0.1:5555" or "[::1]:5555". */
  readonly peer: string;
  /**
   * close(2) on the connection. The server does it after the handler returns
   * if the handler has not; call it yourself to do something after the last
   * reference in this process is gone. A second call does nothing.
   */
  close(): void;
}

/**
 * Runs in the forked child (or the prefork worker) for each connection,
 * synchronously: no await, no callbacks, nothing left for the event loop.
 * A throw ends the process with status 1 and a line on stderr.
 */
export type ConnectionHandler = (conn: Connection) => void;

/** What a worker of the async mode (`eventLoop: true`) is given. */
export interface LoopWorkerContext {
  /** The shared listening descriptor: `http.createServer(...).listen({ fd: listener })`. */
  readonly listener: number;
  /** process.hrtime.bigint() just before the fork, read in the parent (the child inherits it). */
  readonly forkedAt: bigint;
}

/**
 * Runs in each worker of the async mode, which has an event loop of its own
 * (fork({ eventLoop: true })): start serving on `ctx.listener` and return.
 * What it returns is closed on SIGTERM (an http.Server or net.Server: it
 * stops accepting and finishes what is in progress); the worker then ends
 * with status 0 when its loop drains. A throw ends the worker with status 1.
 */
export type LoopWorker = (ctx: LoopWorkerContext) => { close(): unknown } | undefined;

/** Options of `new ForkingServer(options, handler)`; all have defaults. */
export interface ForkingServerOptions {
  /** Numeric IPv4 or IPv6 address to listen on; default "0.0.0.0". */
  host?: string;
  /** Port to listen on; 0 (the default) lets the system pick one. */
  port?: number;
  /** listen(2) backlog; default 128. */
  backlog?: number;
  /**
   * Fork-per-connection mode: at most this many live children; more
   * connections wait in the backlog until one ends. Default 256.
   */
  maxChildren?: number;
  /**
   * 0 (default): fork a child per connection, which runs the handler once and
   * exits. N > 0: fork N workers ahead; each accepts on the shared listener
   * and runs the handler for one connection after another. A worker that ends
   * is replaced (with a growing delay when workers die within a second).
   */
  prefork?: number;
  /**
   * Async mode, with `prefork`: the workers are forked with
   * fork({ eventLoop: true, keep: [listener] }) and the handler is a
   * LoopWorker, which serves with Node's own async APIs (node:http...).
   * Linux only.
   */
  eventLoop?: boolean;
  /** Called at each step of the loop, in the process that takes it (tracing, stepping). */
  onStep?: (step: ServerStep) => void;
  /** Negative control: the parent keeps its copy of each connected socket open. */
  leakParent?: boolean;
  /** Negative control: the child keeps its copy of the listening socket open. */
  leakChild?: boolean;
}

/** The bound address, as `listen()` returns it. */
export interface ServerAddress {
  address: string;
  port: number;
}

/** What kind of process ended: a per-connection child or a prefork worker. */
export type ChildRole = "connection" | "worker";

/** Events of a ForkingServer, all emitted in the parent. */
export interface ForkingServerEvents {
  /** The listener is bound and listening. */
  listening: [address: ServerAddress];
  /** Fork-per-connection mode: accepted, about to fork a child for it. */
  connection: [peer: SocketAddress];
  /** A child or worker was reaped. */
  "child-exit": [status: WaitStatus, role: ChildRole];
  /**
   * Something failed and the server goes on (accept, fork, descriptor
   * exhaustion). The error's `cause` is the SyscallError. Without a listener,
   * the message is written to stderr instead.
   */
  error: [err: Error];
  /** close() finished: the listener is closed and every child reaped. */
  close: [];
}

/** Each step of the loop, reported by `onStep` in the process that takes it. */
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
  | { step: "reaped"; child: number; status: WaitStatus }
  | { step: "worker-started"; child: number; listener: number };

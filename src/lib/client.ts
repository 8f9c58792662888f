// The fork-split echo client of c/echo_mpclient.c: after connect(), the
// child sends what it reads on stdin and the parent prints what comes back.
import { constants as os } from "node:os";
import { closeInherited } from "./descriptors.js";
import { SyscallError } from "./errors.js";
import { _exit, fork } from "./fork.js";
import { native } from "./native.js";
import { writeAll } from "./output.js";
import * as posix from "./posix.js";
import * as v from "./validate.js";

export interface ClientOptions {
  host: string;
  port: number;
  bufferSize: number;
  /** Negative control: the writer close()s instead of shutdown(SHUT_WR). */
  closeInsteadOfShutdown?: boolean;
  /**
   * "Message from server: " once per line of the echo. By default it comes
   * once per read(), as in the C: a line longer than `bufferSize` is printed
   * in pieces, each with the prefix.
   */
  prefixPerLine?: boolean;
  /**
   * After our half-close, how long the server may stay silent (no data, no
   * close) before the client gives up, in ms; 0 waits for ever, as C does.
   */
  idleTimeoutMs?: number;
  /**
   * A descriptor that, when readable, ends the session early: one byte, a
   * signal number, as `realfork client`'s signal pipe writes on SIGTERM or
   * SIGINT (the parent waits in a synchronous poll(), where no JavaScript
   * signal handler can run). The writer is then ended and reaped.
   */
  stopFd?: number;
  /** Called at each step, in the process that takes it (the reader is the parent, the writer the child). */
  onStep?: (step: ClientStep) => void;
}

export type ClientStep =
  | { step: "connected"; sock: number }
  | { step: "forked"; sock: number; child: number }
  /** In the writer, right after fork(), before it closes anything. */
  | { step: "child-forked"; sock: number }
  /** In the writer, after shutdown(SHUT_WR) (or, with closeInsteadOfShutdown, never). */
  | { step: "half-closed"; sock: number }
  /** In the writer, after its close() of the socket. */
  | { step: "writer-closed"; sock: number }
  /** In the reader, after EOF and its close() of the socket. */
  | { step: "reader-closed"; sock: number }
  | { step: "reaped"; child: number };

export interface ClientResult {
  /** 0 when both halves ended normally. */
  status: number;
  /** Why it did not, for the user. */
  problem?: string;
  /** The signal read on `stopFd` that ended the session (status 0). */
  stoppedBy?: NodeJS.Signals;
}

const EAGAIN = -os.errno.EAGAIN;
const PREFIX = Buffer.from("Message from server: ");
const QUIT = [Buffer.from("q\n"), Buffer.from("Q\n")];

/**
 * The fork-split echo client of echo_mpclient.c, on which `realfork client`
 * is built: connect(), fork(); the forked child sends stdin line by line (a
 * line `q` or `Q`, or the end of input, half-closes with shutdown(SHUT_WR))
 * and `_exit`s; the parent prints what the server sends (prefixed "Message
 * from server: ") until EOF, then reaps the writer and returns. Synchronous;
 * node must run with --single-threaded. Throws SyscallError when the
 * connection cannot be made.
 */
export function runClient(options: ClientOptions): ClientResult {
  const { host, port, onStep } = options;
  const sock = posix.socket(
    v.ipFamily(host) === 6 ? native.constants.AF_INET6 : native.constants.AF_INET,
    native.constants.SOCK_STREAM,
  );
  try {
    posix.connect(sock, host, port);
  } catch (err) {
    posix.close(sock);
    throw err;
  }
  onStep?.({ step: "connected", sock });
  // One addition to the C model: the writer says "I half-closed" on this
  // pair *before* it calls shutdown(), so when the parent sees EOF it knows
  // exactly whether the server closed first (the writer may still be on its
  // way out at that moment, so its exit status cannot tell).
  const [ctlParent, ctlChild] = posix.socketpair(native.constants.AF_UNIX, native.constants.SOCK_STREAM);
  const pid = fork();
  if (pid === 0) {
    onStep?.({ step: "child-forked", sock });
    posix.close(ctlParent);
    writeRoutine(sock, ctlChild, options);
  }
  onStep?.({ step: "forked", sock, child: pid });
  posix.close(ctlChild);
  const print = printer(options.prefixPerLine ?? false);
  const read = readRoutine(sock, ctlParent, options.bufferSize, options.idleTimeoutMs ?? 0, options.stopFd, print);
  posix.close(sock);
  onStep?.({ step: "reader-closed", sock });
  posix.close(ctlParent);
  // The C parent never waits, and its child is left behind when the server
  // closes first. Here the parent ends the writer if it is still reading
  // stdin, and reaps it either way.
  if (!read.writerDone) posix.kill(pid, "SIGTERM");
  const writer = posix.waitpid(pid);
  onStep?.({ step: "reaped", child: pid });
  if (read.stopped !== undefined) return { status: 0, stoppedBy: posix.signalName(read.stopped) ?? "SIGTERM" };
  if (read.error) return { status: 1, problem: read.error.summary };
  if (read.timedOut) {
    const s = (options.idleTimeoutMs ?? 0) / 1000;
    return { status: 1, problem: `the server sent nothing and did not close for ${s} s after our half-close` };
  }
  if (!read.writerDone) return { status: 1, problem: "the server closed the connection" };
  if (writer.state !== "exited" || writer.code !== 0) {
    return { status: 1, problem: `the writer process ended with ${writer.signal ?? `status ${writer.code}`}` };
  }
  return { status: 0 };
}

/** The writer's word on the control pair: "h" when it half-closed; EOF when it ended without saying so. */
function writerSaidHalfClosed(ctl: number): boolean {
  return native.read(ctl, Buffer.alloc(1), 0, 1) === 1;
}

interface ReadResult {
  error?: SyscallError;
  timedOut?: boolean;
  /** The writer said it half-closed (on the control pair). */
  writerDone: boolean;
  /** The signal number read on the stop descriptor. */
  stopped?: number;
}

/**
 * The parent: print each chunk as it comes, until EOF. It also listens on
 * the control pair, so that it knows when the writer has half-closed: from
 * then on the server has `idleTimeoutMs` to send more or close.
 */
function readRoutine(
  sock: number,
  ctl: number,
  bufferSize: number,
  idleTimeoutMs: number,
  stopFd: number | undefined,
  print: (chunk: Buffer) => Buffer,
): ReadResult {
  const buf = Buffer.allocUnsafe(bufferSize);
  const { POLLIN } = native.constants;
  let writerDone = false;
  let ctlOpen = true;
  let deadline = Number.POSITIVE_INFINITY;
  for (;;) {
    const wait = deadline === Number.POSITIVE_INFINITY ? -1 : Math.max(0, Math.ceil(deadline - performance.now()));
    const watched = ctlOpen ? [sock, ctl] : [sock];
    const revents = posix.poll(
      [...watched, ...(stopFd === undefined ? [] : [stopFd])].map((fd) => ({ fd, events: POLLIN })),
      wait,
    );
    const [sockReady = 0, ctlReady = 0] = revents;
    if (stopFd !== undefined && (revents[watched.length] ?? 0) !== 0) {
      const signal = Buffer.alloc(1);
      native.read(stopFd, signal, 0, 1);
      return { writerDone, stopped: signal[0] ?? 0 };
    }
    if (ctlReady !== 0) {
      writerDone = writerSaidHalfClosed(ctl);
      ctlOpen = false;
      if (writerDone && idleTimeoutMs > 0) deadline = performance.now() + idleTimeoutMs;
    }
    if (sockReady !== 0) {
      const n = native.read(sock, buf, 0, bufferSize);
      if (n < 0) return { error: new SyscallError(n, "read"), writerDone };
      if (n === 0) {
        // The writer may have half-closed just before the server's EOF came.
        if (ctlOpen) {
          const [late = 0] = posix.poll([{ fd: ctl, events: POLLIN }], 0);
          writerDone = (late & POLLIN) !== 0 && writerSaidHalfClosed(ctl);
        }
        return { writerDone };
      }
      writeAll(1, print(buf.subarray(0, n)));
      if (deadline !== Number.POSITIVE_INFINITY) deadline = performance.now() + idleTimeoutMs;
    } else if (ctlReady === 0 && performance.now() >= deadline) {
      return { timedOut: true, writerDone };
    }
  }
}

/** What the reader writes for each read(): the prefix before it (as the C), or before each line in it. */
function printer(perLine: boolean): (chunk: Buffer) => Buffer {
  if (!perLine) return (chunk) => Buffer.concat([PREFIX, chunk]);
  let lineStart = true;
  return (chunk) => {
    const parts: Buffer[] = [];
    for (let from = 0; from < chunk.length; ) {
      if (lineStart) parts.push(PREFIX);
      const newline = chunk.indexOf(10, from);
      const to = newline < 0 ? chunk.length : newline + 1;
      parts.push(chunk.subarray(from, to));
      lineStart = newline >= 0;
      from = to;
    }
    return Buffer.concat(parts);
  };
}

/** The child: send stdin line by line; q or Q (or end of input) half-closes. Never returns. */
function writeRoutine(sock: number, ctl: number, options: ClientOptions): never {
  closeInherited([sock, ctl]);
  let status = 0;
  try {
    for (const line of stdinLines()) {
      if (QUIT.some((q) => q.equals(line))) break;
      writeAll(sock, line);
    }
    writeAll(ctl, "h");
    if (options.closeInsteadOfShutdown) {
      // The mistake the C material warns about: close() only drops this
      // process's reference. The parent still holds the socket, so no FIN
      // goes out and the server never sees EOF.
      posix.close(sock);
    } else {
      // shutdown(SHUT_WR) acts on the socket itself, whoever else holds it:
      // FIN goes out now, the server's echo loop sees EOF and closes, and the
      // parent still reads the rest of the echo that is in flight.
      posix.shutdown(sock, native.constants.SHUT_WR);
      options.onStep?.({ step: "half-closed", sock });
      // As the C main() does after write_routine() returns.
      posix.close(sock);
    }
    options.onStep?.({ step: "writer-closed", sock });
  } catch (err) {
    const what = err instanceof SyscallError ? err.summary : String(err);
    writeAll(2, `realfork: ${what}${what.includes("EPIPE") ? " (the server closed the connection)" : ""}\n`);
    status = 1;
  }
  return _exit(status);
}

/** Lines of stdin with their "\n" (the last one may lack it), read with plain read(2). */
function* stdinLines(): Generator<Buffer> {
  const chunk = Buffer.allocUnsafe(4096);
  let pending = Buffer.alloc(0);
  for (;;) {
    const n = native.read(0, chunk, 0, chunk.length);
    if (n === EAGAIN) {
      // Node may have set O_NONBLOCK on a stdin it shares with this process.
      native.poll([0], [native.constants.POLLIN], -1);
      continue;
    }
    if (n < 0) throw new SyscallError(n, "read");
    if (n === 0) break;
    pending = Buffer.concat([pending, chunk.subarray(0, n)]);
    let nl = pending.indexOf(10);
    while (nl >= 0) {
      yield pending.subarray(0, nl + 1);
      pending = pending.subarray(nl + 1);
      nl = pending.indexOf(10);
    }
  }
  if (pending.length > 0) yield pending;
}

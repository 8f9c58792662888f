// fork() for a running Node process, and the rules that keep its child sane.
// The native side makes the child's memory and signal dispositions its own;
// this side makes sure the child's JavaScript ends the way the C child does:
// synchronously, with _exit(), never back in the parent's event loop.
import { constants } from "node:os";
import { check } from "./errors.js";
import {
  checkLoopForkSafe,
  enterLoopChild,
  exitLoopChild,
  isLoopChild,
  LoopForkError,
  liveWorkers,
  uncaughtInLoopChild,
} from "./event-loop-child.js";
import { native } from "./native.js";
import { warn } from "./output.js";
import * as v from "./validate.js";

/** Exit status of a forked child that returned to the event loop. */
export const CHILD_ESCAPED_STATUS = 70;

/** The pid this module was loaded in: any other pid is a forked child. */
const originalPid = native.getpid();

/**
 * V8 hands GC and compiler work to platform threads, and the child of fork()
 * has none of them. `node --single-threaded` keeps V8's own work on the
 * calling thread (a parallel scavenge in a child waited for ever on Node 20).
 * It cannot be switched on at run time (measured: setFlagsFromString does not
 * stop the hang), so fork() refuses to run without it. V8 14 (Node 26) still
 * posts a job at every scavenge, flag or not: the native fork() parks the
 * platform's threads across fork() for that (native/platform_park.cc).
 */
export const v8SingleThreaded = process.execArgv.some((a) => /^--single[-_]threaded$/.test(a));

export class ForkSafetyError extends Error {
  readonly code = "ERR_REALFORK_V8_THREADS";
  constructor(
    message = "fork() needs V8 without background threads: start node with --single-threaded, " +
      'or call ensureNodeFlags() from "realfork" first thing in your script (it restarts the script ' +
      "with the flag, same pid). A forked child has only the calling thread; V8's first parallel GC in it would hang.",
  ) {
    super(message);
    this.name = "ForkSafetyError";
  }
}

/** Why fork() would make a child that can hang or misbehave, here and now. */
export class ForkRefusedError extends Error {
  readonly code = "ERR_REALFORK_FORK_REFUSED";
  constructor(why: string) {
    super(`fork() refused: ${why}`);
    this.name = "ForkRefusedError";
  }
}

/** This module is loaded once per thread, so the thread it runs on is known at load. */
const onMainThread = native.isMainThread();

/**
 * What any fork() refuses. The child has only the calling thread, and every
 * lock another thread held at that instant stays held in it for ever:
 * - from a Worker's thread, the child would have no main thread and no
 *   main loop (it ran, on that thread alone);
 * - while Worker threads live, one may hold a lock of the runtime's (V8's
 *   platform task queue, a process-wide mutex of Node's) that the child's
 *   next task post or GC takes;
 * - while threadpool work (fs, dns, crypto, zlib) is queued or running, a
 *   pool thread may hold a lock (OpenSSL's, the resolver's) that the child's
 *   own crypto or DNS call waits on (seen: a child forked during pbkdf2 hung
 *   in randomFill), and a batch of finished work being delivered would go on
 *   in a loop child. Finished work not yet collected is fine.
 * What is safe: fork from the main thread, with no Worker alive and no
 * threadpool request in flight; the child then may use anything synchronous.
 */
function checkForkSafe(refuse: (why: string) => Error): void {
  if (!onMainThread) throw refuse("called from a worker thread; fork from the main thread");
  const workers = liveWorkers();
  if (workers > 0) throw refuse(`${workers} Worker thread(s) alive; terminate them first`);
  const { running } = native.threadpoolWork();
  if (running > 0) {
    throw refuse(
      `${running} threadpool request(s) (fs, dns, crypto, zlib) queued or running; a pool thread may hold a lock the child would wait on for ever: fork once they are done`,
    );
  }
}

/** True in a process made by this module's fork(). */
export function isForkedChild(): boolean {
  return native.getpid() !== originalPid;
}

export interface ForkOptions {
  /**
   * Give the child an event loop of its own: it may await, use timers,
   * sockets, http, fs.promises, child_process; everything the parent had
   * running (timers, handles, listeners, descriptors) is closed in the child
   * before fork() returns 0. The child ends with _exit when its loop has
   * nothing left, on process.exit() or on an uncaught exception, after its
   * 'beforeExit'/'exit' listeners. Linux only.
   */
  eventLoop?: boolean;
  /** With eventLoop: descriptors above stderr that the child keeps (e.g. a listener). */
  keep?: readonly number[];
}

/**
 * fork(2): the child's pid in the parent, 0 in the child. The child goes on
 * running the code that follows. Without `eventLoop` it must end with
 * _exit(): its JavaScript must stay synchronous (no await, no callbacks),
 * because the event loop it would return to is the parent's (same epoll set,
 * same pending events). With `{ eventLoop: true }` it gets a loop of its own.
 */
export function fork(options: ForkOptions = {}): number {
  if (!v8SingleThreaded) throw new ForkSafetyError();
  const eventLoop = options.eventLoop === true;
  const keep = (options.keep ?? []).map((fd, i) => v.fd(fd, `keep[${i}]`));
  if (keep.length > 0 && !eventLoop) {
    // A plain child closes what it does not use itself (closeInherited).
    throw Object.assign(new TypeError("fork({ keep }) goes with eventLoop: true"), { code: "ERR_INVALID_ARG_VALUE" });
  }
  checkForkSafe((why) => (eventLoop ? new LoopForkError(why) : new ForkRefusedError(why)));
  if (eventLoop) checkLoopForkSafe();
  if (!hooksInstalled) installHooks();
  // A hold that has lasted its time ends before this fork, also in a loop of
  // forks that never gives the timer its turn.
  if (parkRelease !== null && performance.now() - parkHeldSince > PARK_HOLD_MS) releasePark();
  const result = native.fork(eventLoop);
  if (result === -constants.errno.EBUSY)
    throw new ForkSafetyError(
      `fork() refused: V8's worker threads were still running its work after ${native.parkTimeoutMs / 1000} s, ` +
        "and a child forked in the middle of it could hang in its first garbage collection; try again",
    );
  const pid = check(result, "fork");
  if (pid === 0) eventLoop ? enterLoopChild(keep) : enterChild();
  else if (parkRelease === null) {
    parkHeldSince = performance.now();
    parkRelease = setTimeout(releasePark, PARK_HOLD_MS);
  }
  return pid;
}

/**
 * fork() parks V8's worker threads (native/platform_park.cc) and keeps them
 * parked for the forks of the next few milliseconds. Let go after each fork,
 * a worker ran at once, in the parent, on the pages fork() had just made
 * copy-on-write: ~10 page faults, each a TLB shootdown to the CPU the main
 * thread runs on (~20% of a forking server's CPU, perf, Node 26). Held, a
 * burst of forks pays that once. Held for long, V8's background work (a
 * concurrent compile, sweeping) would wait, so the hold ends PARK_HOLD_MS
 * after it began: by a timer, or at the next fork when the timer could not
 * run. The timer keeps the event loop alive: at its end Node waits for the
 * platform's tasks, which a parked thread never finishes. process.exit() and
 * a fatal exception (both emit 'exit') release the threads first for the
 * same reason.
 */
const PARK_HOLD_MS = 10;
let parkRelease: NodeJS.Timeout | null = null;
let parkHeldSince = 0;

function releasePark(): void {
  if (parkRelease) clearTimeout(parkRelease);
  parkRelease = null;
  native.releasePlatformWorkers();
}

/** _exit(2): ends the process now, with no exit handlers and no flushing. */
export function _exit(code = 0): never {
  return native._exit(v.integer("code", code, 0, 255));
}

/**
 * malloc_trim(): hands the malloc heap's free pages back to the kernel. Call
 * once before a process starts forking many children (a server, before its
 * accept loop): every 4 KiB page left mapped in the parent is a page-table
 * entry that each fork() copies and each child's exit tears down. (A full GC
 * first made it worse: V8 evacuates into fresh 256 KiB pages at new
 * addresses, +11 mappings and +110 kB of page tables; docs/benchmarks.md.)
 */
export function trimBeforeForking(): void {
  native.mallocTrim();
}

let hooksInstalled = false;
const signalNumbers = constants.signals;

/**
 * What a child needs from `process` is installed once, in the parent, before
 * the first fork(), and behaves there exactly as before. Done in each child
 * instead, it cost ~0.45 ms per fork (measured in a fork+_exit+waitpid loop):
 * every object a child writes is a page the kernel copies for it.
 */
function installHooks(): void {
  hooksInstalled = true;
  // Node installs a signal handler when the first listener for a signal is
  // added and removes it with the last: the native side then looks again at
  // which signals a child must reset (it keeps the set between forks).
  const signalsChanged = (event: string | symbol) => {
    if (typeof event === "string" && event in signalNumbers) native.signalHandlersChanged();
  };
  process.on("newListener", signalsChanged);
  process.on("removeListener", signalsChanged);
  // Node reads these once at start; a getter gives each process its own.
  Object.defineProperty(process, "pid", { get: () => native.getpid(), enumerable: true, configurable: true });
  Object.defineProperty(process, "ppid", { get: () => native.getppid(), enumerable: true, configurable: true });
  // Node's own exit path runs exit handlers and joins threads that a child
  // does not have (it hangs or aborts); in a child, _exit is the only way out.
  const exit = process.exit;
  process.exit = ((code?: number | string | null) => {
    if (!isForkedChild()) return exit.call(process, code);
    if (isLoopChild()) return exitLoopChild(code);
    const status = Number(code ?? process.exitCode ?? 0);
    return native._exit(Number.isInteger(status) ? status & 0xff : 1);
  }) as typeof process.exit;
  // An uncaught exception in a child ends it with status 1, before any
  // listener of the parent's can run (and before Node's exit path).
  const emit = process.emit;
  process.emit = function (this: NodeJS.Process, event: string | symbol, ...args: unknown[]): boolean {
    if (event === "exit" && !isForkedChild()) releasePark();
    if (event === "uncaughtException" && isLoopChild()) {
      return uncaughtInLoopChild(() => (emit as (...a: unknown[]) => boolean).call(this, event, ...args), args[0]);
    }
    if (event === "uncaughtException" && isForkedChild()) {
      const err = args[0] as Error | undefined;
      warn(`realfork: uncaught exception in forked child ${native.getpid()}:\n${err?.stack ?? String(err)}`);
      native._exit(1);
    }
    return (emit as (...a: unknown[]) => boolean).call(this, event, ...args);
  } as typeof process.emit;
}

function enterChild(): void {
  const pid = native.getpid();
  // Microtasks run as soon as the child's synchronous code returns to its
  // caller (Node drains them when every callback scope closes), before libuv
  // can hand the child any event of the parent. The guard then waits one tick
  // more, so that an exception still travelling through promise reactions
  // (a throw at the top of an ES module) is reported as what it is. A promise
  // reaction, not process.nextTick, is what every child pays for: the tick
  // queue's first use in a child touches ~20 copy-on-write pages (measured:
  // 170 us against 10 us per child).
  void Promise.resolve().then(() =>
    process.nextTick(() => {
      warn(
        `realfork: forked child ${pid} returned to the event loop; a forked child must finish synchronously and call _exit(). Ending it with status ${CHILD_ESCAPED_STATUS}.`,
      );
      native._exit(CHILD_ESCAPED_STATUS);
    }),
  );
}

// fork() for a running Node process, and the rules that keep its child sane.
// The native side makes the child's memory and signal dispositions its own;
// this side makes sure the child's JavaScript ends the way the C child does:
// synchronously, with _exit(), never back in the parent's event loop.
import { check } from "./errors.js";
import { native } from "./native.js";
import { warn } from "./output.js";
import * as v from "./validate.js";

/** Exit status of a forked child that returned to the event loop. */
export const CHILD_ESCAPED_STATUS = 70;

let forkedChild = false;

/**
 * V8 hands GC and compiler work to platform threads, and the child of fork()
 * has none: its first parallel scavenge signals a condition variable whose
 * waiters were copied mid-wait from the parent, and hangs there for good.
 * `node --single-threaded` keeps all of V8's work on the calling thread.
 * It cannot be switched on at run time (measured: setFlagsFromString does not
 * stop the hang), so fork() refuses to run without it.
 */
export const v8SingleThreaded = process.execArgv.some((a) => /^--single[-_]threaded$/.test(a));

export class ForkSafetyError extends Error {
  readonly code = "ERR_REALFORK_V8_THREADS";
  constructor() {
    super(
      "fork() needs V8 without background threads: start node with --single-threaded " +
        "(a forked child has only the calling thread; V8's first parallel GC in it would hang)",
    );
    this.name = "ForkSafetyError";
  }
}

/** True in a process made by this module's fork(). */
export function isForkedChild(): boolean {
  return forkedChild;
}

/**
 * fork(2): the child's pid in the parent, 0 in the child. The child goes on
 * running the code that follows, and must end with _exit(): its JavaScript
 * must stay synchronous (no await, no callbacks), because the event loop it
 * would return to is the parent's (same epoll set, same pending events).
 */
export function fork(): number {
  if (!v8SingleThreaded) throw new ForkSafetyError();
  const pid = check(native.fork(), "fork");
  if (pid === 0) enterChild();
  return pid;
}

/** _exit(2): ends the process now, with no exit handlers and no flushing. */
export function _exit(code = 0): never {
  return native._exit(v.integer("code", code, 0, 255));
}

function enterChild(): void {
  forkedChild = true;
  const pid = native.getpid();
  // Node reads these once at start; the child's own values are different.
  Object.defineProperty(process, "pid", { value: pid, enumerable: true, configurable: true, writable: false });
  Object.defineProperty(process, "ppid", { value: native.getppid(), enumerable: true, configurable: true });
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
  // Node's own exit path runs exit handlers and joins threads that the child
  // does not have (it hangs or aborts); _exit is the only safe way out.
  process.prependListener("uncaughtException", (err) => {
    warn(`realfork: uncaught exception in forked child ${pid}:\n${err?.stack ?? String(err)}`);
    native._exit(1);
  });
  process.exit = ((code?: number | string | null) => {
    const status = Number(code ?? process.exitCode ?? 0);
    native._exit(Number.isInteger(status) ? status & 0xff : 1);
  }) as typeof process.exit;
}

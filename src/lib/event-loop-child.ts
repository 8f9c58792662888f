// fork({ eventLoop: true }): a child that returns into JavaScript with an
// event loop of its own. native/loopfork.cc gives the child its own libuv
// loop inside the fork call; this file closes, in the child and before
// fork() returns there, everything of the parent's that the loop would
// otherwise keep running (timers, immediates, sockets, servers, watchers,
// signal listeners, child-process handles), and ends the child with _exit.
import { createHook } from "node:async_hooks";
import { createRequire } from "node:module";
import { constants as osConstants } from "node:os";
import { fs } from "./builtins.js";
import { openDescriptors } from "./descriptors.js";
import { native } from "./native.js";
import { warn } from "./output.js";

/** Why fork({ eventLoop: true }) cannot be made safe here and now. */
export class LoopForkError extends Error {
  readonly code = "ERR_REALFORK_LOOP_FORK";
  constructor(why: string) {
    super(`fork({ eventLoop: true }) refused: ${why}`);
    this.name = "LoopForkError";
  }
}

type Closable = { close(): void; fd?: number; readStop?(): number; unref?(): void };

// Timers, immediates and unref'd handles are not in
// process._getActiveHandles(); an async_hooks registry installed when this
// module loads (before the user's code runs) sees every one. Promises are
// not kept: the hook returns at once for them.
const HANDLE_TYPES = new Set([
  "TCPWRAP",
  "TCPSERVERWRAP",
  "PIPEWRAP",
  "PIPESERVERWRAP",
  "TTYWRAP",
  "UDPWRAP",
  "PROCESSWRAP",
  "FSEVENTWRAP",
  "STATWATCHER",
  "SIGNALWRAP",
]);

const timeouts = new Map<number, NodeJS.Timeout>();
const immediates = new Map<number, NodeJS.Immediate>();
const handles = new Map<number, Closable>();
const workers = new Set<number>();

const registry = createHook({
  init(id, type, _trigger, resource) {
    if (type === "PROMISE") return;
    if (type === "Timeout") timeouts.set(id, resource as NodeJS.Timeout);
    else if (type === "Immediate") immediates.set(id, resource as NodeJS.Immediate);
    else if (HANDLE_TYPES.has(type)) handles.set(id, resource as Closable);
    else if (type === "WORKER") workers.add(id);
  },
  destroy(id) {
    timeouts.delete(id) || immediates.delete(id) || handles.delete(id) || workers.delete(id);
  },
});
registry.enable();
let registryOff = false;

/**
 * Switches the registry of handles off for good in this process: no more
 * promise hooks (they made a loop of awaits 5x slower), and
 * fork({ eventLoop: true }) refuses from then on. For programs that never
 * fork with eventLoop (the realfork command does this at start).
 */
export function disableLoopRegistry(): void {
  registry.disable();
  registryOff = true;
  timeouts.clear();
  immediates.clear();
  handles.clear();
  workers.clear();
}

/**
 * Throws LoopForkError when a child with its own loop cannot be made safe:
 * not the main thread, Worker threads alive (their state is not copied), the
 * inspector attached, or threadpool work queued or running (a pool thread
 * may hold a lock the child would wait on for ever; a batch of finished work
 * being delivered would go on in the child). Finished work not yet collected
 * is fine: the child drops it. Linux only.
 */
export function checkLoopForkSafe(): void {
  if (process.platform !== "linux") {
    throw new LoopForkError(`only on Linux for now (this is ${process.platform}); plain fork() works here`);
  }
  if (inLoopChild) {
    throw new LoopForkError(
      "this process is itself a child made by fork({ eventLoop: true }); its registry of handles is off (it would slow every callback), fork from the first parent",
    );
  }
  if (registryOff) {
    throw new LoopForkError("disableLoopRegistry() was called in this process: its timers and handles are not known");
  }
  // Loaded here, not at import: every plain forking parent would carry their
  // modules' pages into each fork() (docs/benchmarks.md).
  const require = createRequire(import.meta.url);
  const { isMainThread } = require("node:worker_threads") as typeof import("node:worker_threads");
  const inspector = require("node:inspector") as typeof import("node:inspector");
  if (!isMainThread) throw new LoopForkError("called from a worker thread; fork from the main thread");
  if (workers.size > 0) throw new LoopForkError(`${workers.size} Worker thread(s) alive; terminate them first`);
  if (inspector.url() !== undefined) throw new LoopForkError("the inspector is active; close it first");
  const { running } = native.threadpoolWork();
  if (running > 0) {
    throw new LoopForkError(
      `${running} threadpool request(s) (fs, dns, crypto, zlib) queued or running; a pool thread may hold a lock the child would wait on for ever: fork once they are done`,
    );
  }
}

let exiting = false;
let inLoopChild = false;

/** True in a child made by fork({ eventLoop: true }). */
export function isLoopChild(): boolean {
  return inLoopChild;
}

/**
 * Ends a loop child: 'exit' listeners run once, then _exit. Node's own exit
 * path would wait for V8 worker tasks that no thread runs in a child.
 */
export function exitLoopChild(code?: number | string | null): never {
  const status = Number(code ?? process.exitCode ?? 0);
  const c = Number.isInteger(status) ? status & 0xff : 1;
  if (!exiting) {
    exiting = true;
    process.exitCode = c;
    try {
      process.emit("exit", c);
    } catch (err) {
      reportUncaught(err);
      return native._exit(7);
    }
  }
  return native._exit(Number(process.exitCode ?? c) & 0xff);
}

/** An uncaught exception in a loop child: the child's own listeners, or status 1. */
export function uncaughtInLoopChild(emit: () => boolean, err: unknown): boolean {
  if (process.listenerCount("uncaughtException") > 0) return emit();
  reportUncaught(err);
  return exitLoopChild(1);
}

function reportUncaught(err: unknown): void {
  const text = err instanceof Error ? (err.stack ?? String(err)) : String(err);
  warn(`realfork: uncaught exception in forked child ${native.getpid()}:\n${text}`);
}

/** Runs in the child, inside fork(), before it returns 0. */
export function enterLoopChild(keep: readonly number[]): void {
  inLoopChild = true;
  // Descriptors to keep that a parent's handle holds: closing the handle
  // would close them, so they are parked on a copy and put back.
  const parked = keep.map((fd) => [fd, native.dup(fd)] as const);
  removeSignalListeners();
  for (const t of timeouts.values()) clearTimeout(t);
  for (const i of immediates.values()) clearImmediate(i);
  timeouts.clear();
  immediates.clear();
  for (const h of handles.values()) closeHandle(h);
  handles.clear();
  // The registry served the fork; in the child it would cost a JS call for
  // every promise and callback (measured: bench-http workers 4x slower).
  registry.disable();
  workers.clear();
  native.closeFdWatchers();
  for (const [fd, copy] of parked) {
    if (copy >= 0) {
      native.dup2(copy, fd);
      native.close(copy);
    }
  }
  sweepDescriptors(keep);
  native.startLoopGuard(
    () => {
      if (!exiting) process.emit("beforeExit", Number(process.exitCode ?? 0));
    },
    () => exitLoopChild(),
  );
}

// The parent's listeners would never fire anyway (the child's dispositions
// were reset), and Node creates a signal handle only for a signal it does not
// watch yet: the child's own process.on(signal) would never work.
function removeSignalListeners(): void {
  for (const name of process.eventNames()) {
    if (typeof name === "string" && name in osConstants.signals) process.removeAllListeners(name);
  }
}

// Closed at the handle: no 'close' or 'end' event runs the parent's
// listeners in the child, and nothing is shut down (a shutdown would end the
// parent's connection too). A child process's handle is closed, not killed.
function closeHandle(h: Closable): void {
  if (h.fd !== undefined && h.fd >= 0 && h.fd <= 2) {
    // stdio stays; the child does not read the parent's stdin.
    h.readStop?.();
    h.unref?.();
    return;
  }
  h.close();
}

// What no handle held: the parent's raw sockets (realfork's own listeners)
// and open files. Pipes and anonymous inodes (Node's and libuv's own: epoll,
// eventfds, the signal pipes, the platform's task queue) stay.
function sweepDescriptors(keep: readonly number[]): void {
  const dir = "/proc/self/fd";
  for (const fd of openDescriptors()) {
    if (fd <= 2 || keep.includes(fd)) continue;
    let target: string;
    try {
      target = fs.readlinkSync(`${dir}/${fd}`);
    } catch {
      continue;
    }
    if (target.startsWith("socket:") || (target.startsWith("/") && !target.startsWith("/dev/"))) native.close(fd);
  }
}

// fork({ eventLoop: true }): a child that returns into JavaScript with an
// event loop of its own. native/loopfork.cc gives the child its own libuv
// loop inside the fork call; this file closes, in the child and before
// fork() returns there, everything of the parent's that the loop would
// otherwise keep running (timers, immediates, sockets, servers, watchers,
// signal listeners, child-process handles), and ends the child with _exit.
import type { AsyncHook } from "node:async_hooks";
import { createRequire } from "node:module";
import { constants as osConstants } from "node:os";
import { fs } from "./builtins.js";
import { openDescriptors } from "./descriptors.js";
import { check } from "./errors.js";
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

const require = createRequire(import.meta.url);

// Timers, immediates and unref'd handles are not in
// process._getActiveHandles(); an async_hooks registry sees every one made
// after it is enabled. Promises are not kept: the hook returns at once for
// them. But any init hook turns on V8's promise hooks and a JS call around
// every callback (measured: a loop of 2 million awaits 10x slower), so the
// registry is off until a program forks with eventLoop (or calls
// enableLoopRegistry()); what existed before is found then, once, in V8's
// heap (adoptExisting).
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
/** The classes of those resources, as V8's heap names them. */
const HANDLE_CLASSES = new Set(["TCP", "Pipe", "TTY", "UDP", "Process", "FSEvent", "StatWatcher", "Signal"]);

const timeouts = new Map<number, NodeJS.Timeout>();
const immediates = new Map<number, NodeJS.Immediate>();
const handles = new Map<number, Closable>();
/** Keys below 0: what adoptExisting() found (no async id, never destroyed here). */
let adoptedKey = 0;

let registry: AsyncHook | null = null;
let registryOff = false;

// Worker threads, from any code: Node emits 'worker' on process for each new
// one. A listener costs nothing until a Worker is made.
const workers = new Set<object>();
process.on("worker", (worker: NodeJS.EventEmitter) => {
  workers.add(worker);
  worker.once("exit", () => workers.delete(worker));
});

/** Worker threads alive in this process (made after realfork was imported). */
export function liveWorkers(): number {
  return workers.size;
}

/**
 * Turns on the registry of timers and handles that fork({ eventLoop: true })
 * closes in its child. The first fork({ eventLoop: true }) calls it. Timers,
 * sockets or watchers made before are found then, once, in V8's heap (an
 * in-process inspector session: 0.3 to 1 s measured); called first thing in
 * a script, before any of them, it skips that search. From then on this process pays for promise hooks
 * (a loop of awaits ~10x slower): programs that never fork with eventLoop
 * never call it and pay nothing.
 */
export function enableLoopRegistry(): void {
  if (registry !== null) return;
  refuseWhenRegistryUnusable();
  const { createHook } = require("node:async_hooks") as typeof import("node:async_hooks");
  registry = createHook({
    init(id, type, _trigger, resource) {
      if (type === "PROMISE") return;
      if (type === "Timeout") timeouts.set(id, resource as NodeJS.Timeout);
      else if (type === "Immediate") immediates.set(id, resource as NodeJS.Immediate);
      else if (HANDLE_TYPES.has(type)) handles.set(id, resource as Closable);
    },
    destroy(id) {
      timeouts.delete(id) || immediates.delete(id) || handles.delete(id);
    },
  });
  // Counted before the hook's first resource: nothing alive, nothing to find.
  const existing = native.existingHandles();
  registry.enable();
  if (existing > 0) adoptExisting();
}

/**
 * Switches the registry of handles off for good in this process (it is off
 * until first used anyway): fork({ eventLoop: true }) refuses from then on.
 */
export function disableLoopRegistry(): void {
  registry?.disable();
  registryOff = true;
  timeouts.clear();
  immediates.clear();
  handles.clear();
}

function refuseWhenRegistryUnusable(): void {
  if (inLoopChild) {
    throw new LoopForkError(
      "this process is itself a child made by fork({ eventLoop: true }); its registry of handles is off (it would slow every callback), fork from the first parent",
    );
  }
  if (registryOff) {
    throw new LoopForkError("disableLoopRegistry() was called in this process: its timers and handles are not known");
  }
}

// Timers, immediates and handles made before the registry was on: every live
// instance of their classes, found by the inspector's Runtime.queryObjects
// (a heap walk after a GC). Handles through their owners, which all are
// EventEmitters (net.Socket and Server, stdio, ChildProcess, fs watchers,
// dgram.Socket): an owner's handle is null once it closed. Synchronous: an in-process
// session answers within post(). Where node has no inspector, the handles
// Node counts as active are all that can be found (not unref'd ones, not
// timers).
function adoptExisting(): void {
  type Owner = { _handle?: Closable | null };
  const adoptOwner = (o: Owner) => {
    // A dgram.Socket keeps its handle in a state object under a symbol.
    const state = Object.getOwnPropertySymbols(o).find((sym) => sym.description === "state symbol");
    const h = o._handle ?? (state ? (o as Record<symbol, { handle?: Closable }>)[state]?.handle : undefined);
    if (h && typeof h.close === "function" && HANDLE_CLASSES.has(h.constructor.name)) handles.set(--adoptedKey, h);
  };
  let session: import("node:inspector").Session;
  try {
    const { Session } = require("node:inspector") as typeof import("node:inspector");
    session = new Session();
    session.connect();
  } catch {
    for (const o of (process as unknown as { _getActiveHandles(): Owner[] })._getActiveHandles()) adoptOwner(o);
    return;
  }
  try {
    const t = setTimeout(() => {}, 0);
    clearTimeout(t);
    const i = setImmediate(() => {});
    clearImmediate(i);
    for (const x of instancesOf(session, Object.getPrototypeOf(t)) as NodeJS.Timeout[]) {
      if (!(x as unknown as { _destroyed: boolean })._destroyed) timeouts.set(--adoptedKey, x);
    }
    for (const x of instancesOf(session, Object.getPrototypeOf(i)) as NodeJS.Immediate[]) {
      if (!(x as unknown as { _destroyed: boolean })._destroyed) immediates.set(--adoptedKey, x);
    }
    const { EventEmitter } = require("node:events") as typeof import("node:events");
    for (const o of instancesOf(session, EventEmitter.prototype)) adoptOwner(o as Owner);
  } finally {
    session.disconnect();
  }
}

const QUERY_SLOT = "__realforkQueryObjects";

/** Every live object whose prototype chain holds proto (prototypes themselves left out). */
function instancesOf(session: import("node:inspector").Session, proto: object): object[] {
  const g = globalThis as Record<string, unknown>;
  const post = (method: string, params: object): Record<string, { objectId?: string }> => {
    let result: Record<string, { objectId?: string }> | undefined;
    let error: Error | null = null;
    session.post(method, params, (err, res) => {
      error = err;
      result = res as typeof result;
    });
    if (error) throw error;
    if (!result) throw new LoopForkError(`the inspector did not answer ${method} synchronously`);
    return result;
  };
  try {
    g[QUERY_SLOT] = proto;
    const { result } = post("Runtime.evaluate", { expression: `globalThis.${QUERY_SLOT}` });
    const { objects } = post("Runtime.queryObjects", { prototypeObjectId: result?.objectId });
    post("Runtime.callFunctionOn", {
      objectId: objects?.objectId,
      functionDeclaration: `function () { globalThis.${QUERY_SLOT} = this; }`,
    });
    const found = g[QUERY_SLOT] as object[];
    return found.filter((o) => !Object.hasOwn(o, "constructor"));
  } finally {
    delete g[QUERY_SLOT];
  }
}

/** Node majors and libuv minors the event-loop fork was tested on (test/event-loop*.test.ts). */
const TESTED_NODE_MAJORS = [22, 24, 26];
const TESTED_LIBUV_MINORS = { from: 46, to: 52 };

export interface RuntimeVersions {
  /** major.minor.patch */
  uv: string;
  node: string;
}

/** The libuv and Node the addon was compiled against (native.builtFor). */
export function builtVersions(): RuntimeVersions {
  const { uv, node } = native.builtFor;
  return { uv: `${Math.floor(uv / 10000)}.${Math.floor(uv / 100) % 100}.${uv % 100}`, node };
}

/**
 * Why the event-loop fork cannot trust this runtime's private state, or null.
 * native/loopfork.cc and watcher.cc read libuv's private loop fields as the
 * uv.h they were compiled with declares them; this file relies on the
 * resources async_hooks hands out (their types, fd, close(), owners). An
 * N-API addon built under one Node loads in another (native.ts refuses
 * another Node major at load; libuv is checked here, and the line).
 */
export function runtimeMismatch(built: RuntimeVersions, running: RuntimeVersions): string | null {
  const minor = (v: string) => v.split(".").slice(0, 2).join(".");
  if (minor(built.uv) !== minor(running.uv)) {
    return `the addon was compiled against libuv ${built.uv} (Node ${built.node}) and runs with libuv ${running.uv} (Node ${running.node}); its loop code reads libuv's private fields: rebuild it under this Node (npm rebuild realfork)`;
  }
  const [uvMajor, uvMinor] = running.uv.split(".").map(Number);
  const nodeMajor = Number(running.node.split(".")[0]);
  const { from, to } = TESTED_LIBUV_MINORS;
  if (!TESTED_NODE_MAJORS.includes(nodeMajor) || uvMajor !== 1 || (uvMinor ?? 0) < from || (uvMinor ?? 0) > to) {
    return `Node ${running.node} with libuv ${running.uv} is not a runtime it was tested on (Node ${TESTED_NODE_MAJORS.join(", ")}; libuv 1.${from} to 1.${to}): libuv's private loop fields or async_hooks' resources may differ there`;
  }
  return null;
}

/**
 * Throws LoopForkError when a child with its own loop cannot be made safe:
 * not Linux, a runtime the loop code was not compiled or tested for, the
 * inspector attached, or the registry off. Turns the registry on at first
 * use. What plain fork() also refuses (not the main thread, Worker threads,
 * threadpool work) is checked before this (fork.ts).
 */
/** runtimeMismatch() of this process, found at the first event-loop fork: neither side changes. */
let runtimeProblem: string | null | undefined;

export function checkLoopForkSafe(): void {
  if (process.platform !== "linux") {
    throw new LoopForkError(`only on Linux for now (this is ${process.platform}); plain fork() works here`);
  }
  if (runtimeProblem === undefined)
    runtimeProblem = runtimeMismatch(builtVersions(), { uv: process.versions.uv, node: process.versions.node });
  if (runtimeProblem) throw new LoopForkError(runtimeProblem);
  refuseWhenRegistryUnusable();
  // Loaded here, not at import: every plain forking parent would carry their
  // modules' pages into each fork() (docs/benchmarks.md).
  const inspector = require("node:inspector") as typeof import("node:inspector");
  if (inspector.url() !== undefined) throw new LoopForkError("the inspector is active; close it first");
  enableLoopRegistry();
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
  registry?.disable();
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
// A socket's owner learns it is gone, without events: it reads as destroyed
// (a write fails with ERR_STREAM_DESTROYED, not EBADF), and 'agentRemove',
// the event by which http's agents give a socket up, takes it out of the
// keep-alive pool it sits in (the globalAgents' or any other): the child's
// first request would otherwise get the parent's dead socket (write EBADF).
function closeHandle(h: Closable): void {
  if (h.fd !== undefined && h.fd >= 0 && h.fd <= 2) {
    // stdio stays; the child does not read the parent's stdin.
    h.readStop?.();
    h.unref?.();
    return;
  }
  h.close();
  const owner = ownerOf(h);
  if (owner && "_writableState" in owner) {
    (owner as unknown as { destroyed: boolean }).destroyed = true;
    owner.emit("agentRemove");
  }
}

/** The net.Socket (or other object) a handle belongs to: Node keeps it under a symbol of its own. */
function ownerOf(h: Closable): NodeJS.EventEmitter | undefined {
  const key = Object.getOwnPropertySymbols(h).find((sym) => sym.description === "owner_symbol");
  const owner = key ? (h as unknown as Record<symbol, unknown>)[key] : undefined;
  return owner && typeof (owner as NodeJS.EventEmitter).emit === "function"
    ? (owner as NodeJS.EventEmitter)
    : undefined;
}

// What no handle held: the parent's raw sockets (realfork's own listeners)
// and open files. Pipes and anonymous inodes (Node's and libuv's own: epoll,
// eventfds, the signal pipes, the platform's task queue) stay. Not closed
// but covered: an object of the parent's may still own the number (a
// FileHandle, a logger's fd) and the child's next open() would get it, so
// that object's writes would land in the child's new file. A descriptor of
// /dev/null opened O_PATH takes its place: every read and write on it fails
// with EBADF, and the number is never reused.
function sweepDescriptors(keep: readonly number[]): void {
  const dir = "/proc/self/fd";
  let placeholder = -1;
  for (const fd of openDescriptors()) {
    if (fd <= 2 || keep.includes(fd)) continue;
    let target: string;
    try {
      target = fs.readlinkSync(`${dir}/${fd}`);
    } catch {
      continue;
    }
    if (!target.startsWith("socket:") && !(target.startsWith("/") && !target.startsWith("/dev/"))) continue;
    if (placeholder < 0) {
      const { O_PATH = 0, O_RDONLY, O_CLOEXEC } = native.constants;
      placeholder = check(native.open("/dev/null", (O_PATH || O_RDONLY) | O_CLOEXEC), "open");
    }
    native.dup2(placeholder, fd);
    native.cloexec(fd, true);
  }
  if (placeholder >= 0) native.close(placeholder);
}

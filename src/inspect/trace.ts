// serve --trace: at each step of the C loop, what the kernel says about the
// sockets that step touched, read from the descriptor tables (not from the
// server's own bookkeeping), while the processes that could change them wait.
import { readlinkSync } from "node:fs";
import { native } from "../lib/native.js";
import { writeAll } from "../lib/output.js";
import * as posix from "../lib/posix.js";
import type { ServerStep } from "../lib/server/types.js";
import { type Holder, snapshot } from "./fdtable.js";
import { holderText } from "./fdview.js";

export interface TraceEvent {
  event: ServerStep["step"];
  /** CLOCK_MONOTONIC in ns, comparable between parent and child: the real order of steps. */
  at: number;
  /** The process that took the step. */
  pid: number;
  role: "parent" | "child";
  fd: number | null;
  child?: number;
  socket: { inode: number; local: string | null; remote: string | null; state: string | null } | null;
  holders: Holder[];
  refs: number;
  /** fork() only: the listening socket, which the child holds a copy of too. */
  listener?: { inode: number; holders: Holder[]; refs: number };
  /** Every TCP socket of the server's process tree at that moment. */
  sockets: ReturnType<typeof snapshot>["sockets"];
}

/** The kernel id of the socket behind a descriptor of this process. */
export function socketInode(fd: number): number | null {
  if (process.platform === "linux") {
    const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
    return m ? Number(m[1]) : null;
  }
  const list = native.listFds?.(native.getpid());
  return typeof list === "object" ? (list.find((d) => d.fd === fd)?.id ?? null) : null;
}

export interface TraceOptions {
  json: boolean;
  /**
   * Parent and child take their first steps after fork() in turn, so that
   * each reads the tables while the other waits (off for --step, where the
   * user gives the turns, and for --prefork, which forks no child per
   * connection).
   */
  inTurn: boolean;
  /** The server's negative controls: the steps that will not come. */
  leakParent: boolean;
  leakChild: boolean;
}

/**
 * The turns after fork(), so that each line's count is the count at its
 * step. Without them a quick client lets the child close and exit before the
 * parent has read the tables for its fork() line: the lines said refs 1
 * after fork(), and refs 0 while the child still held the socket. In the
 * book's order: the parent's fork() line (both hold both sockets), the
 * child's close of the listener, the parent's close of the connection; then
 * the child goes on alone. A socketpair made before fork() carries the turns,
 * one byte each way; a process whose other side died reads EOF and goes on.
 */
class Turns {
  #mine = -1;
  #theirs = -1;
  readonly #byte = new Uint8Array(1);

  /** Before fork(), in the parent (a pair left by a fork that failed is closed). */
  prepare(): void {
    this.done();
    [this.#mine, this.#theirs] = posix.socketpair(native.constants.AF_UNIX, native.constants.SOCK_STREAM);
  }

  /** Right after fork(), in the child: its end is the other one. */
  swap(): void {
    [this.#mine, this.#theirs] = [this.#theirs, this.#mine];
  }

  /** Right after fork(), in each process: the other process's end is closed here. */
  keepMine(): void {
    if (this.#theirs >= 0) posix.close(this.#theirs);
    this.#theirs = -1;
  }

  /** The other process may take its step. */
  give(): void {
    if (this.#mine < 0) return;
    try {
      posix.write(this.#mine, this.#byte);
    } catch {
      // EPIPE: the other process is gone, nobody waits for the turn.
    }
  }

  /** Until the other process gives the turn back, or is gone (EOF). */
  wait(): void {
    if (this.#mine < 0) return;
    try {
      posix.read(this.#mine, this.#byte);
    } catch {
      // As EOF: go on.
    }
  }

  /** No more turns: each process goes on by itself. */
  done(): void {
    for (const fd of [this.#mine, this.#theirs]) if (fd >= 0) posix.close(fd);
    this.#mine = -1;
    this.#theirs = -1;
  }
}

export class Tracer {
  readonly #options: TraceOptions;
  readonly #out: (line: string) => void;
  readonly #turns: Turns | null;
  #root = 0;
  #listenerInode: number | null = null;
  readonly #connInode = new Map<number, number | null>();
  readonly #childInode = new Map<number, number | null>();

  constructor(options: TraceOptions, out: (line: string) => void = (line) => writeAll(2, `${line}\n`)) {
    this.#options = options;
    this.#out = out;
    this.#turns = options.inTurn ? new Turns() : null;
  }

  onStep = (step: ServerStep): void => {
    let fd: number | null = null;
    let inode: number | null = null;
    let child: number | undefined;
    switch (step.step) {
      case "listening":
        this.#root = native.getpid();
        fd = step.listener;
        inode = this.#listenerInode = socketInode(step.listener);
        break;
      case "accepted":
        fd = step.conn;
        inode = socketInode(step.conn);
        this.#connInode.set(step.conn, inode);
        break;
      case "forked":
      case "parent-closed":
        fd = step.conn;
        child = step.child;
        inode = this.#connInode.get(step.conn) ?? null;
        this.#childInode.set(step.child, inode);
        break;
      case "child-closed-listener":
        fd = step.listener;
        inode = this.#listenerInode;
        break;
      case "child-closed":
        fd = step.conn;
        inode = this.#connInode.get(step.conn) ?? null;
        break;
      case "worker-started":
        fd = step.listener;
        inode = this.#listenerInode;
        child = step.child;
        break;
      case "reaped":
        child = step.child;
        inode = this.#childInode.get(step.child) ?? null;
        this.#childInode.delete(step.child);
        break;
      case "child-forked":
      case "child-exiting":
        // Stepping points (serve --step); the trace shows what they lead to.
        this.#turn(step);
        return;
    }
    this.#emit(step, fd, inode, child);
    this.#turn(step);
  };

  /** Whose turn it is after this step (TraceOptions.inTurn). */
  #turn(step: ServerStep): void {
    const turns = this.#turns;
    if (!turns) return;
    switch (step.step) {
      case "accepted":
        turns.prepare();
        break;
      case "forked":
        // Written while the child waits: both hold both sockets. The child
        // closes the listener, and gives the turn back.
        turns.keepMine();
        turns.give();
        turns.wait();
        // With --leak-parent no close of the connection follows: the child
        // goes on now.
        if (this.#options.leakParent) {
          turns.give();
          turns.done();
        }
        break;
      case "parent-closed":
        turns.give();
        turns.done();
        break;
      case "child-forked":
        turns.swap();
        turns.keepMine();
        turns.wait();
        // With --leak-child there is no close of the listener to show:
        // back to the parent at once, and wait for its close.
        if (this.#options.leakChild) {
          turns.give();
          turns.wait();
          turns.done();
        }
        break;
      case "child-closed-listener":
        turns.give();
        turns.wait();
        turns.done();
        break;
    }
  }

  #emit(step: ServerStep, fd: number | null, inode: number | null, child: number | undefined): void {
    const at = Number(process.hrtime.bigint());
    const pid = native.getpid();
    const role = pid === this.#root ? "parent" : "child";
    const snap = snapshot(this.#root);
    const sock = snap.sockets.find((s) => s.inode === inode);
    const holders = sock?.holders ?? holdersOf(snap, inode);
    const listener = snap.sockets.find((s) => s.inode === this.#listenerInode);
    const event: TraceEvent = {
      event: step.step,
      at,
      pid,
      role,
      fd,
      ...(child === undefined ? {} : { child }),
      socket:
        inode === null
          ? null
          : { inode, local: sock?.local ?? null, remote: sock?.remote ?? null, state: sock?.state ?? null },
      holders,
      refs: holders.length,
      ...(step.step === "forked" && listener
        ? { listener: { inode: listener.inode, holders: listener.holders, refs: listener.holders.length } }
        : {}),
      sockets: snap.sockets,
    };
    this.#out(this.#options.json ? JSON.stringify(event) : describeEvent(event));
  }
}

/**
 * The descriptors that refer to a socket the TCP table no longer lists: a
 * connection that is over (reset, or closed both ways) leaves /proc/net/tcp
 * while descriptors may still hold its socket.
 */
function holdersOf(snap: ReturnType<typeof snapshot>, inode: number | null): Holder[] {
  if (inode === null) return [];
  return snap.processes.flatMap((p) =>
    p.descriptors.filter((d) => d.inode === inode).map((d) => ({ pid: p.pid, fd: d.fd })),
  );
}

const ACTIONS: Record<ServerStep["step"], (e: TraceEvent) => string> = {
  listening: (e) => `socket/bind/listen -> fd ${e.fd}`,
  accepted: (e) => `accept() -> fd ${e.fd}`,
  forked: (e) => `fork() -> child ${e.child}`,
  "parent-closed": (e) => `close(${e.fd}) of the connected socket`,
  "child-closed-listener": (e) => `close(${e.fd}) of the listening socket`,
  "child-closed": (e) => `close(${e.fd}) of the connected socket`,
  reaped: (e) => `waitpid() reaped child ${e.child}`,
  "child-forked": (e) => `fork() returned 0: the child holds copies of the listener and fd ${e.fd}`,
  "child-exiting": () => "_exit()",
  "worker-started": (e) => `fork() -> worker ${e.child}, which keeps the listening socket and accepts on it`,
};

export function describeEvent(e: TraceEvent): string {
  const who = `[${e.role} ${e.pid}]`;
  const s = e.socket;
  let what = "";
  if (s) {
    const where = s.local
      ? ` ${s.local}${s.remote ? ` <-> ${s.remote}` : ""} ${s.state}`
      : e.refs > 0
        ? " (the connection is over: no longer in the kernel's TCP table)"
        : "";
    what = `; socket:[${s.inode}]${where} holders ${holderText(e.holders)} (refs ${e.refs})`;
    if (e.refs === 0) what += ": no descriptor left, the kernel has closed it";
  }
  const l = e.listener;
  if (l) what += `; listening socket:[${l.inode}] holders ${holderText(l.holders)} (refs ${l.refs})`;
  return `trace ${who} ${ACTIONS[e.event](e)}${what}`;
}

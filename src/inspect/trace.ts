// serve --trace: at each step of the C loop, what the kernel says about the
// sockets that step touched, read from the descriptor tables (not from the
// server's own bookkeeping).
import { readlinkSync } from "node:fs";
import { native } from "../lib/native.js";
import { writeAll } from "../lib/output.js";
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

export class Tracer {
  readonly #json: boolean;
  readonly #out: (line: string) => void;
  #root = 0;
  #listenerInode: number | null = null;
  readonly #connInode = new Map<number, number | null>();
  readonly #childInode = new Map<number, number | null>();

  constructor(json: boolean, out: (line: string) => void = (line) => writeAll(2, `${line}\n`)) {
    this.#json = json;
    this.#out = out;
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
        return;
    }
    this.#emit(step, fd, inode, child);
  };

  #emit(step: ServerStep, fd: number | null, inode: number | null, child: number | undefined): void {
    const at = Number(process.hrtime.bigint());
    const pid = native.getpid();
    const role = pid === this.#root ? "parent" : "child";
    const snap = snapshot(this.#root);
    const sock = snap.sockets.find((s) => s.inode === inode);
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
      holders: sock?.holders ?? [],
      refs: sock?.holders.length ?? 0,
      sockets: snap.sockets,
    };
    this.#out(this.#json ? JSON.stringify(event) : describeEvent(event));
  }
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
    const where = s.local ? ` ${s.local}${s.remote ? ` <-> ${s.remote}` : ""} ${s.state}` : "";
    what = `; socket:[${s.inode}]${where} holders ${holderText(e.holders)} (refs ${e.refs})`;
    if (e.refs === 0) what += ": no descriptor left, the kernel has closed it";
  }
  return `trace ${who} ${ACTIONS[e.event](e)}${what}`;
}

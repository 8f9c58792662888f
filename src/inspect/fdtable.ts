// Who holds which descriptor, from what the kernel reports: the process tree
// under a pid, each process's descriptors, and each socket with its holders
// (its reference count, in the C material's words).
import { resolve } from "node:path";
import * as darwin from "./fdtable/darwin.js";
import * as linux from "./fdtable/linux.js";
import type { FdSnapshot, Holder, ProcessEntry, SocketEntry } from "./fdtable/types.js";

export type * from "./fdtable/types.js";

const isLinux = process.platform === "linux";

/** The pid and its descendants, parents before children. */
export function processTree(root: number, parents = isLinux ? linux.parentMap() : darwin.parentMap()): number[] {
  const children = new Map<number, number[]>();
  for (const [pid, { ppid }] of parents) {
    const list = children.get(ppid) ?? [];
    list.push(pid);
    children.set(ppid, list);
  }
  const out: number[] = [];
  const queue = parents.has(root) ? [root] : [];
  while (queue.length > 0) {
    const pid = queue.shift() as number;
    out.push(pid);
    queue.push(...(children.get(pid) ?? []).sort((a, b) => a - b));
  }
  return out;
}

export interface SnapshotOptions {
  /** Report the Unix stream sockets bound to this path too (Linux), with their holders. */
  unixPath?: string;
}

/** Reads the descriptor tables of `root` and its descendants. */
export function snapshot(root: number, options: SnapshotOptions = {}): FdSnapshot {
  const parents = isLinux ? linux.parentMap() : darwin.parentMap();
  const pids = processTree(root, parents);
  const tcp = isLinux ? linux.tcpSockets(root) : new Map<number, linux.TcpSocket>();
  const unix = new Map<number, linux.UnixSocket>();
  if (isLinux && options.unixPath !== undefined) {
    for (const u of linux.unixSockets(root).named.values()) {
      if (samePath(u.path, options.unixPath)) unix.set(u.inode, u);
    }
  }
  const processes: ProcessEntry[] = pids.map((pid) => {
    const p = parents.get(pid) ?? { ppid: 0, command: "?" };
    return isLinux ? linux.readProcess(pid, p.ppid, p.command, tcp, unix) : darwin.readProcess(pid, p.ppid, p.command);
  });
  const bySocket = new Map<number, SocketEntry>();
  for (const proc of processes) {
    for (const d of proc.descriptors) {
      const named = d.type === "unix" && d.local !== undefined;
      if ((d.type !== "tcp" && !named) || d.inode === null) continue;
      const queued = tcp.get(d.inode)?.queued ?? unix.get(d.inode)?.queued;
      const entry: SocketEntry = bySocket.get(d.inode) ?? {
        ...(d.type === "unix" ? { family: "unix" as const } : {}),
        inode: d.inode,
        local: d.local ?? "?",
        remote: d.remote ?? null,
        state: d.state ?? "?",
        holders: [] as Holder[],
        descriptions: null,
        ...(queued === undefined ? {} : { queued }),
      };
      entry.holders.push({ pid: proc.pid, fd: d.fd });
      bySocket.set(d.inode, entry);
    }
  }
  const sockets = [...bySocket.values()];
  if (isLinux) for (const s of sockets) s.descriptions = linux.groupDescriptions(s.holders);
  return {
    platform: process.platform,
    root,
    unavailable: isLinux
      ? []
      : ["shared open file descriptions (dup/fork vs. separate opens): libproc does not report them"],
    processes,
    sockets,
  };
}

/** The pid of the topmost process holding the listening TCP socket on `port`, or null. */
export function listenerOwner(port: number): number | null {
  if (!isLinux) {
    const parents = darwin.parentMap();
    const holders = [...parents.keys()].filter((pid) =>
      darwin.readProcess(pid, 0, "").descriptors.some((d) => d.state === "LISTEN" && d.local?.endsWith(`:${port}`)),
    );
    return topmost(holders, parents);
  }
  const listening = [...linux.tcpSockets().values()].filter((s) => s.state === "LISTEN" && s.localPort === port);
  return topmostHolder(listening.map((s) => s.inode));
}

/** Whether a Unix socket bound to `bound` (as /proc/net/unix prints it) is the one at `asked`. */
export function samePath(bound: string, asked: string): boolean {
  return bound === asked || (!bound.startsWith("@") && resolve(bound) === resolve(asked));
}

/** The pid of the topmost process holding the listening Unix socket bound to `path` (Linux), or null. */
export function unixListenerOwner(path: string): number | null {
  if (!isLinux) return null;
  const listening = [...linux.unixSockets().named.values()].filter(
    (s) => s.state === "LISTEN" && samePath(s.path, path),
  );
  return topmostHolder(listening.map((s) => s.inode));
}

function topmostHolder(inodes: number[]): number | null {
  if (inodes.length === 0) return null;
  const parents = linux.parentMap();
  const targets = new Set(inodes.map((inode) => `socket:[${inode}]`));
  const holders = [...parents.keys()].filter((pid) =>
    linux.readProcess(pid, 0, "", new Map()).descriptors.some((d) => targets.has(d.target)),
  );
  return topmost(holders, parents);
}

/** The holder whose parent does not hold it too: the server, not a child. */
function topmost(holders: number[], parents: Map<number, { ppid: number }>): number | null {
  return holders.find((pid) => !holders.includes(parents.get(pid)?.ppid ?? -1)) ?? null;
}

/** Listening TCP ports held by `pid` itself. */
export function listeningPorts(pid: number): number[] {
  // Only this process's own table is needed (a gone process reads as empty).
  const entry = isLinux ? linux.readProcess(pid, 0, "", linux.tcpSockets(pid)) : darwin.readProcess(pid, 0, "");
  return entry.descriptors
    .filter((d) => d.state === "LISTEN" && d.local)
    .map((d) => Number(d.local?.slice(d.local.lastIndexOf(":") + 1)));
}

/** Whether `pid` exists (a zombie does), whoever owns it. */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

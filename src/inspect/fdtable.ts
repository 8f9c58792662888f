// Who holds which descriptor, from what the kernel reports: the process tree
// under a pid, each process's descriptors, and each socket with its holders
// (its reference count, in the C material's words).
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

/** Reads the descriptor tables of `root` and its descendants. */
export function snapshot(root: number): FdSnapshot {
  const parents = isLinux ? linux.parentMap() : darwin.parentMap();
  const pids = processTree(root, parents);
  const tcp = isLinux ? linux.tcpSockets(root) : new Map();
  const processes: ProcessEntry[] = pids.map((pid) => {
    const p = parents.get(pid) ?? { ppid: 0, command: "?" };
    return isLinux ? linux.readProcess(pid, p.ppid, p.command, tcp) : darwin.readProcess(pid, p.ppid, p.command);
  });
  const bySocket = new Map<number, SocketEntry>();
  for (const proc of processes) {
    for (const d of proc.descriptors) {
      if (d.type !== "tcp" || d.inode === null) continue;
      const entry = bySocket.get(d.inode) ?? {
        inode: d.inode,
        local: d.local ?? "?",
        remote: d.remote ?? null,
        state: d.state ?? "?",
        holders: [] as Holder[],
        descriptions: null,
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
  const parents = isLinux ? linux.parentMap() : darwin.parentMap();
  const holders: number[] = [];
  if (isLinux) {
    const listening = [...linux.tcpSockets().values()].filter((s) => s.state === "LISTEN" && s.localPort === port);
    if (listening.length === 0) return null;
    const inodes = new Set(listening.map((s) => `socket:[${s.inode}]`));
    for (const pid of parents.keys()) {
      const proc = linux.readProcess(pid, 0, "", new Map());
      if (proc.descriptors.some((d) => inodes.has(d.target))) holders.push(pid);
    }
  } else {
    for (const pid of parents.keys()) {
      const proc = darwin.readProcess(pid, 0, "");
      if (proc.descriptors.some((d) => d.state === "LISTEN" && d.local?.endsWith(`:${port}`))) holders.push(pid);
    }
  }
  // The holder whose parent does not hold it too: the server, not a child.
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

// What changed between two readings of a process tree's descriptor tables,
// said in the words of `serve --trace`: a socket appeared, close(18) took its
// refs from 2 to 1, it went to CLOSE_WAIT, a child exited. The watcher sees
// only the tables, one reading after another, so each line says what the
// kernel shows changed, not which call did it when two calls fall between
// two readings.
import type { FdSnapshot, Holder, ProcessEntry, SocketEntry } from "../fdtable.js";
import { holderText } from "../fdview.js";

export interface Change {
  /** "process" (forked, exited), "socket" (appeared, gone, state) or "refs". */
  kind: "process" | "socket" | "refs";
  text: string;
}

const key = (h: Holder) => `${h.pid}:${h.fd}`;

function where(s: SocketEntry): string {
  return `socket:[${s.inode}] ${s.local}${s.remote ? ` <-> ${s.remote}` : ""}`;
}

function who(pid: number, snap: FdSnapshot): string {
  return `[${pid === snap.root ? "parent" : "child"} ${pid}]`;
}

/** The changes from `before` to `after` (both of the same root), in a reading order: processes, then sockets. */
export function changes(before: FdSnapshot | null, after: FdSnapshot): Change[] {
  const out: Change[] = [];
  const oldProcs = new Map((before?.processes ?? []).map((p) => [p.pid, p]));
  const newProcs = new Map(after.processes.map((p) => [p.pid, p]));
  for (const p of after.processes) {
    if (before === null || oldProcs.has(p.pid)) continue;
    out.push({
      kind: "process",
      text: `${who(p.pid, after)} appeared (forked by ${p.ppid}), holding ${socketFds(p)}`,
    });
  }
  for (const p of before?.processes ?? []) {
    if (!newProcs.has(p.pid)) out.push({ kind: "process", text: `${who(p.pid, before as FdSnapshot)} exited` });
  }
  const oldSocks = new Map((before?.sockets ?? []).map((s) => [s.inode, s]));
  const newSocks = new Map(after.sockets.map((s) => [s.inode, s]));
  for (const s of after.sockets) {
    const old = oldSocks.get(s.inode);
    if (!old) {
      out.push({
        kind: "socket",
        text: `${where(s)} ${s.state} appeared, held by ${holderText(s.holders)} (refs ${s.holders.length})`,
      });
      continue;
    }
    if (old.state !== s.state) out.push({ kind: "socket", text: `${where(s)} ${old.state} -> ${s.state}` });
    if (old.holders.length !== s.holders.length || holderText(old.holders) !== holderText(s.holders)) {
      out.push({
        kind: "refs",
        text: `${where(s)} refs ${old.holders.length} -> ${s.holders.length}${why(old.holders, s.holders, before as FdSnapshot, after, newProcs)}`,
      });
    }
  }
  for (const s of before?.sockets ?? []) {
    if (newSocks.has(s.inode)) continue;
    out.push({
      kind: "socket",
      text: `${where(s)} ${s.state}: no descriptor left (refs ${s.holders.length} -> 0), the kernel has closed it`,
    });
  }
  return out;
}

/** ": close(18) in [parent 4242]", ": [child 4250] exited", ": fd 17 in [child 4250]". */
function why(
  was: Holder[],
  now: Holder[],
  before: FdSnapshot,
  after: FdSnapshot,
  alive: Map<number, ProcessEntry>,
): string {
  const nowKeys = new Set(now.map(key));
  const wasKeys = new Set(was.map(key));
  const reasons: string[] = [];
  for (const h of was) {
    if (nowKeys.has(key(h))) continue;
    reasons.push(alive.has(h.pid) ? `close(${h.fd}) in ${who(h.pid, before)}` : `${who(h.pid, before)} exited`);
  }
  for (const h of now) if (!wasKeys.has(key(h))) reasons.push(`fd ${h.fd} in ${who(h.pid, after)}`);
  return reasons.length > 0 ? `: ${reasons.join(", ")}` : "";
}

function socketFds(p: ProcessEntry): string {
  const fds = p.descriptors.filter((d) => d.type === "tcp").map((d) => `fd ${d.fd}`);
  return fds.length === 0 ? "no socket" : fds.join(", ");
}

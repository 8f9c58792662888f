// `realfork check`: the book's descriptor mistakes, found in the kernel's
// tables of a live forking server. judge() decides from looks (descriptor
// tables plus process states) taken in time order; checkServer() takes them,
// before, during and after probe connections of its own.
import { connect } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { durationText } from "../lib/output.js";
import { type FdSnapshot, type SocketEntry, snapshot } from "./fdtable.js";
import type { Evidence, Finding, FindingKind } from "./findings.js";
import { type ProcState, processStates, UNKNOWN_STATES } from "./procstate.js";
import type { StartedReport } from "./started-server.js";

export type Phase = "before" | "during" | "after";

/** One look at the server: its descriptor tables and what each process is doing, at one moment. */
export interface Look {
  phase: Phase;
  /** Date.now() when taken. */
  at: number;
  snap: FdSnapshot;
  states: Map<number, ProcState>;
}

/** What became of one probe connection. */
export interface ProbeResult {
  /** Our end of it ("127.0.0.1:51234"), the server's remote; null if it never connected. */
  local: string | null;
  connected: boolean;
  /** Something came back for the line sent, within the timeout. */
  echoed: boolean;
  /** The server closed its end (we read EOF) within the timeout after our half-close. */
  closedByServer: boolean;
  /** ECONNREFUSED, ECONNRESET...: what the socket reported, if anything. */
  error: string | null;
}

export interface Judgement {
  findings: Finding[];
  /** Children that hold the listener by design; null when no prefork pool was seen. */
  pool: { workers: number[]; how: string[] } | null;
  /** Nobody took the connections that wait on the listener, and no finding explains it. */
  unaccepted: Unaccepted | null;
}

export interface CheckReport {
  platform: NodeJS.Platform;
  root: number;
  command: string;
  /** Processes in the tree at the first look (the root included). */
  processes: number;
  listeners: { local: string; inode: number }[];
  probes: ProbeResult[];
  pool: Judgement["pool"];
  findings: Finding[];
  /** Kinds this run could not judge, for want of probes. */
  needsProbes: FindingKind[];
  /** Why the server could not be judged (exit 2 when nothing was found): unanswered probes. */
  notJudged: string[];
  /** Set when the server was gone before the check ended. */
  exited: { pid: number; phase: Phase } | null;
  /** Processes whose descriptors could not be read, with why. */
  unreadable: string[];
  /** Facts this OS does not give. */
  unavailable: string[];
  /** With `check -- COMMAND`: what was started and how it ended. */
  started?: StartedReport;
}

/** The target cannot be checked: no such process, or not permitted (exit 2). */
export class CheckTargetError extends Error {}

const alive = (look: Look, pid: number): boolean => {
  const s = look.states.get(pid);
  return s !== undefined && s.state !== "Z" && look.snap.processes.some((p) => p.pid === pid);
};

/** Reads the tree under `root` now (with the Unix sockets bound to `unixPath`, if given). */
export function look(root: number, phase: Phase = "before", unixPath?: string): Look {
  const snap = snapshot(root, unixPath === undefined ? {} : { unixPath });
  return { phase, at: Date.now(), snap, states: processStates(snap.processes.map((p) => p.pid)) };
}

const portOf = (address: string): number => Number(address.slice(address.lastIndexOf(":") + 1));
/** What a listener and the sockets accepted on it share: the TCP port, or the Unix socket's path. */
const addressKey = (s: SocketEntry): string => (s.family === "unix" ? `unix ${s.local}` : `tcp ${portOf(s.local)}`);

/** Who is who in one look. */
interface Roles {
  root: number;
  listeners: SocketEntry[];
  /** Sockets accepted on a listener's port (not the listener). */
  accepted: SocketEntry[];
  children: number[];
  zombies: { pid: number; ppid: number }[];
}

function roles(l: Look): Roles {
  const { snap } = l;
  const root = snap.root;
  const listening = snap.sockets.filter((s) => s.state === "LISTEN");
  const own = listening.filter((s) => s.holders.some((h) => h.pid === root));
  const listeners = own.length > 0 ? own : listening;
  const keys = new Set(listeners.map(addressKey));
  const accepted = snap.sockets.filter((s) => s.state !== "LISTEN" && keys.has(addressKey(s)));
  const children: number[] = [];
  const zombies: Roles["zombies"] = [];
  for (const p of snap.processes) {
    if (p.pid === root) continue;
    if (l.states.get(p.pid)?.state === "Z") zombies.push({ pid: p.pid, ppid: p.ppid });
    else if (l.states.has(p.pid)) children.push(p.pid);
  }
  return { root, listeners, accepted, children, zombies };
}

const held = (sockets: SocketEntry[], pid: number) =>
  sockets.flatMap((s) => s.holders.filter((h) => h.pid === pid).map((h) => ({ socket: s, fd: h.fd })));

const evidenceOf = (pid: number, fd: number, s: SocketEntry): Evidence => ({
  pid,
  fd,
  inode: s.inode,
  state: s.state,
  local: s.local,
  remote: s.remote,
});

/** The calls a process that takes connections may sleep in (poll: which descriptors is not known). */
const MAY_ACCEPT = new Set(["accept", "poll", "epoll", "lock", "running"]);

/** How `pid` takes connections from the listener (descriptors `fds`) in this look, or null. */
function acceptsIn(l: Look, pid: number, fds: number[]): string | null {
  const s = l.states.get(pid);
  const blocked = s?.blockedInAccept;
  if (blocked && (blocked.fd === null || fds.includes(blocked.fd))) return "asleep in accept() on the listener";
  if (s?.waits.some((w) => w.call === "epoll" && w.fds?.some((fd) => fds.includes(fd)))) {
    return "waiting in epoll on the listener";
  }
  return null;
}

/** What the threads of `pid` sleep in, for a message: "clock_nanosleep()", "read(), futex()". */
function sleepsIn(l: Look, pid: number): string {
  const calls = [...new Set(l.states.get(pid)?.waits.map((w) => w.call) ?? [])];
  return calls.map((c) => (c === "running" ? "running" : `${c}()`)).join(", ");
}

/** Asleep, every thread, in calls that take no connection (read, sleep, wait...): known only on Linux. */
const asleepElsewhere = (l: Look, pid: number): boolean => {
  const waits = l.states.get(pid)?.waits ?? [];
  return waits.length > 0 && waits.every((w) => !MAY_ACCEPT.has(w.call));
};

/** A holder of the listener that never takes a connection from it. */
interface Inherited {
  pid: number;
  /** It runs another program than the acceptor (exec'd with the descriptor open). */
  execd: boolean;
  look: Look;
}

/**
 * Who takes connections among the processes under the acceptor that hold its
 * listener. A worker is one the kernel shows asleep in accept() on the
 * listener, or waiting in epoll on a set that holds it; or one that holds the
 * listener and no connection at two looks in a row (a per-connection child
 * holds the listener without its connection only in the instant between its
 * close() and its exit) while it runs the acceptor's program or was seen
 * serving, and is not asleep in something else; or one that serves while
 * the acceptor, asleep in something else at two looks, takes no connection
 * (a pool's parent while every worker is busy). A holder that holds no
 * connection at two looks and is none of these (another program after exec,
 * asleep in read() or sleep()...) never accepts: it inherited the listener.
 */
function judgeHolders(looks: Look[]): { pool: Judgement["pool"]; inherited: Inherited[] } {
  const workers = new Map<number, Set<string>>();
  /** Two looks in a row that show the pid holding the listener and no connection. */
  const idlePairs = new Map<number, [Look, Look][]>();
  const served = new Set<number>();
  let idleBefore = new Set<number>();
  let previous: Look | undefined;
  let rootAsleepBefore = false;
  for (const l of looks) {
    const r = roles(l);
    const idle = new Set<number>();
    // A parent asleep in something else than accept, poll or epoll at two looks in a
    // row takes no connection: the children that serve then are its workers.
    const rootAsleep = asleepElsewhere(l, r.root);
    const parentIdle = rootAsleep && rootAsleepBefore && previous !== undefined && l !== previous;
    rootAsleepBefore = rootAsleep;
    for (const pid of r.children) {
      const listenerFds = held(r.listeners, pid).map((h) => h.fd);
      if (listenerFds.length === 0) continue;
      const how = acceptsIn(l, pid, listenerFds);
      if (how) workers.set(pid, (workers.get(pid) ?? new Set()).add(how));
      if (held(r.accepted, pid).length > 0) {
        served.add(pid);
        if (parentIdle) {
          const why = `served connections while their parent did not accept (asleep in ${sleepsIn(l, r.root)})`;
          workers.set(pid, (workers.get(pid) ?? new Set()).add(why));
        }
        continue;
      }
      idle.add(pid);
      // Two looks, not one look twice (judgeSnapshot).
      if (previous && idleBefore.has(pid) && l !== previous) {
        idlePairs.set(pid, [...(idlePairs.get(pid) ?? []), [previous, l]]);
      }
    }
    idleBefore = idle;
    previous = l;
  }
  const inherited: Inherited[] = [];
  for (const [pid, pairs] of idlePairs) {
    const last = (pairs.at(-1) as [Look, Look])[1];
    const program = (p: number) => last.states.get(p)?.exe ?? last.snap.processes.find((x) => x.pid === p)?.command;
    const root = last.snap.root;
    const sameExe = program(pid) === program(root);
    // Asleep elsewhere at both looks of a pair: a worker between two connections is not.
    const elsewhere = pairs.some(([a, b]) => asleepElsewhere(a, pid) && asleepElsewhere(b, pid));
    if (!elsewhere && (sameExe || served.has(pid))) {
      workers.set(pid, (workers.get(pid) ?? new Set()).add("held the listener and no connection at two looks"));
      continue;
    }
    if (workers.has(pid)) continue;
    const args = (p: number) => last.states.get(p)?.cmdline;
    inherited.push({ pid, execd: !sameExe || args(pid) !== args(root), look: last });
  }
  const how = new Set([...workers.values()].flatMap((h) => [...h]));
  const pool = workers.size > 0 ? { workers: [...workers.keys()].sort((a, b) => a - b), how: [...how] } : null;
  return { pool, inherited };
}

/** A finding before its words: the kind, the process it is about, and what shows it. */
interface Item {
  kind: FindingKind;
  subject: number;
  evidence: Evidence[];
  /** listener-inherited: what was seen of the holder. */
  inherited?: Inherited;
  /** orphaned-listener: what shows that nobody accepts. */
  unaccepted?: Unaccepted;
}

/** Connections wait on the listener and no holder takes them. */
export interface Unaccepted {
  /** The last look that showed it. */
  look: Look;
  /** The accept queue then (connections the kernel completed, waiting for accept()). */
  queued: number;
  /** Probe connections that nobody accepted within the timeout (0 without probes). */
  probes: number;
}

const listenerHolders = (l: Look): { pid: number; fd: number; socket: SocketEntry }[] => {
  const r = roles(l);
  return [r.root, ...r.children].flatMap((pid) => held(r.listeners, pid).map((h) => ({ pid, ...h })));
};

/**
 * Nobody takes connections from the listener: with probes, none of them was
 * accepted (none answered, closed, or held by a process of the tree) while
 * the accept queue held connections, and no holder sleeps in accept() or in
 * epoll on it; without probes, the accept queue held connections at two
 * looks in a row with no holder accepting.
 */
function unaccepted(looks: Look[], probes: ProbeResult[]): Unaccepted | null {
  const phase: Phase = probes.length > 0 ? "during" : "before";
  const pair = looks.filter((l) => l.phase === phase).slice(-2);
  const [a, b] = pair;
  if (!a || !b || a === b || !alive(b, b.snap.root)) return null;
  const queued = (l: Look) => roles(l).listeners.reduce((n, s) => n + (s.queued ?? 0), 0);
  const accepting = (l: Look) =>
    listenerHolders(l).some(
      (h) =>
        acceptsIn(
          l,
          h.pid,
          held(roles(l).listeners, h.pid).map((x) => x.fd),
        ) !== null,
    );
  if (queued(b) === 0 || accepting(a) || accepting(b)) return null;
  if (probes.length === 0) return queued(a) > 0 ? { look: b, queued: queued(b), probes: 0 } : null;
  const connected = probes.filter((p) => p.connected);
  if (connected.length === 0 || connected.some((p) => p.echoed || p.closedByServer)) return null;
  const remotes = new Set(
    looks.flatMap((l) =>
      roles(l)
        .accepted.filter((s) => s.holders.length > 0)
        .map((s) => s.remote),
    ),
  );
  const unix = roles(b).listeners.some((s) => s.family === "unix");
  // A Unix probe has no address to find it by: the queue must hold them all.
  if (unix ? queued(b) < connected.length : connected.some((p) => remotes.has(p.local))) return null;
  return { look: b, queued: queued(b), probes: connected.length };
}

/**
 * An orphaned listener: nobody accepts, and the topmost holder was
 * reparented (its parent is pid 1, or the leader of its process group, the
 * server that started it, is gone: a subreaper may have become its parent),
 * with no child of its own on the listener.
 */
function orphaned(u: Unaccepted | null): Item | null {
  if (!u) return null;
  const r = roles(u.look);
  const root = u.look.snap.processes.find((p) => p.pid === r.root);
  const reparented = root?.ppid === 1 || u.look.states.get(r.root)?.groupLeaderGone === true;
  if (!reparented || r.children.some((pid) => held(r.listeners, pid).length > 0)) return null;
  return {
    kind: "orphaned-listener",
    subject: r.root,
    evidence: listenerHolders(u.look).map((h) => evidenceOf(h.pid, h.fd, h.socket)),
    unaccepted: u,
  };
}

function itemsOf(l: Look, pool: boolean, forks: boolean, inherited: Set<number>): Item[] {
  const r = roles(l);
  const items: Item[] = [];
  const add = (kind: FindingKind, subject: number, evidence: Evidence[]) => {
    if (evidence.length > 0) items.push({ kind, subject, evidence });
  };
  const childSet = new Set(r.children);
  if (!pool) {
    add(
      "listener-in-child",
      r.root,
      r.children
        .filter((pid) => !inherited.has(pid))
        .flatMap((pid) => held(r.listeners, pid).map((h) => evidenceOf(pid, h.fd, h.socket))),
    );
  }
  // The acceptor holds a connection a child holds too, or one in CLOSE_WAIT in a
  // tree seen forking: the acceptor never reads a connection it handed over,
  // so nobody will close that one.
  add(
    "connection-in-parent",
    r.root,
    held(r.accepted, r.root)
      .filter(({ socket }) =>
        socket.holders.some((h) => childSet.has(h.pid)) ? true : forks && socket.state === "CLOSE_WAIT",
      )
      .map((h) => evidenceOf(r.root, h.fd, h.socket)),
  );
  // A connection held by several children: all but the one serving it got it
  // at fork() from a parent that had not closed it.
  add(
    "connection-in-sibling",
    r.root,
    r.children.flatMap((pid) =>
      held(r.accepted, pid)
        .filter(({ socket }) => new Set(socket.holders.filter((h) => childSet.has(h.pid)).map((h) => h.pid)).size > 1)
        .map((h) => evidenceOf(pid, h.fd, h.socket)),
    ),
  );
  for (const p of [r.root, ...r.children]) {
    add(
      "close-wait",
      p,
      held(
        l.snap.sockets.filter((s) => s.state === "CLOSE_WAIT"),
        p,
      ).map((h) => evidenceOf(p, h.fd, h.socket)),
    );
  }
  const byParent = new Map<number, Evidence[]>();
  for (const z of r.zombies) byParent.set(z.ppid, [...(byParent.get(z.ppid) ?? []), { pid: z.pid, state: "Z" }]);
  for (const [ppid, evidence] of byParent) add("zombie", ppid, evidence);
  return items;
}

const evidenceKey = (kind: FindingKind, e: Evidence) => `${kind}|${e.pid}:${e.fd ?? ""}:${e.inode ?? ""}`;

/** The items of `later` whose evidence `earlier` showed too: what lasted, not a step in passing. */
function confirmed(earlier: Item[], later: Item[]): Item[] {
  const seen = new Set(earlier.flatMap((i) => i.evidence.map((e) => evidenceKey(i.kind, e))));
  return later
    .map((i) => ({ ...i, evidence: i.evidence.filter((e) => seen.has(evidenceKey(i.kind, e))) }))
    .filter((i) => i.evidence.length > 0);
}

function descriptorGrowth(looks: Look[]): Item | null {
  const before = looks.filter((l) => l.phase === "before").at(-1);
  const after = looks.filter((l) => l.phase === "after");
  const root = before?.snap.root;
  const table = (l: Look | undefined) => l?.snap.processes.find((p) => p.pid === root)?.descriptors ?? [];
  if (!before || after.length < 2 || root === undefined) return null;
  const key = (d: { fd: number; target: string }) => `${d.fd} ${d.target}`;
  const had = new Set(table(before).map(key));
  if (!after.every((l) => table(l).length > table(before).length)) return null;
  // New descriptors that both looks after the probes show: under other load the
  // acceptor holds some connection at any moment, never the same one for long.
  const kept = new Set(table(after.at(-2)).map(key));
  const last = after.at(-1) as Look;
  const grown = table(last).filter((d) => !had.has(key(d)) && kept.has(key(d)));
  if (grown.length === 0) return null;
  const sockets = new Map(last.snap.sockets.map((s) => [s.inode, s]));
  return {
    kind: "descriptor-growth",
    subject: root,
    evidence: grown.map((d) => {
      const s = d.inode === null ? undefined : sockets.get(d.inode);
      if (s) return evidenceOf(root, d.fd, s);
      return { pid: root, fd: d.fd, ...(d.inode === null ? {} : { inode: d.inode }), target: d.target };
    }),
  };
}

const plural = (n: number, word: string, many = `${word}s`) => `${n} ${n === 1 ? word : many}`;
const fds = (evidence: Evidence[]) => evidence.map((e) => e.fd).join(", ");
const holders = (evidence: Evidence[]) => evidence.map((e) => `${e.pid}:${e.fd}`).join(", ");
const pids = (evidence: Evidence[]) => [...new Set(evidence.map((e) => e.pid))];

function words(item: Item, looks: Look[]): Finding {
  const { kind, subject: pid, evidence } = item;
  const n = evidence.length;
  const forks = looks.some((l) => l.snap.processes.length > 1);
  const isRoot = pid === looks[0]?.snap.root;
  switch (kind) {
    case "listener-in-child":
      return {
        kind,
        evidence,
        message: `${plural(pids(evidence).length, "child", "children")} of ${pid} ${pids(evidence).length === 1 ? "holds" : "hold"} the listening socket ${evidence[0]?.local} (pid:fd ${holders(evidence)}): a child that does not close(serv_sock) after fork() keeps the port open as long as it lives, even after the parent is gone`,
        fix: "close(serv_sock) in the child right after fork(); the child needs only clnt_sock",
      };
    case "connection-in-parent":
      return {
        kind,
        evidence,
        message: `the acceptor ${pid} holds ${plural(n, "connected socket")} (fd ${fds(evidence)}) that it handed to a child or kept after the child ended: it did not close(clnt_sock), so the client never sees EOF while the parent lives`,
        fix: "close(clnt_sock) in the parent right after fork()",
      };
    case "connection-in-sibling":
      return {
        kind,
        evidence,
        message: `children of ${pid} hold connections that another child serves (pid:fd ${holders(evidence)}): each got them at fork() because the parent still held them, and keeps them open until it exits, so those clients see no EOF`,
        fix: "close(clnt_sock) in the parent right after fork(); then each child inherits only the listener, which it closes",
      };
    case "close-wait":
      return {
        kind,
        evidence,
        message: `${isRoot ? "the acceptor" : "child"} ${pid} holds ${plural(n, "socket")} in CLOSE_WAIT (fd ${fds(evidence)}): the client closed its end, and this process does not close() its own`,
        fix:
          isRoot && forks
            ? "close(clnt_sock) in the parent right after fork() (the child that reads EOF then closes the last reference)"
            : isRoot
              ? "close(clnt_sock) when read() returns 0 (EOF); a forking server's parent closes it right after fork()"
              : "close(clnt_sock) when read() returns 0 (EOF)",
      };
    case "listener-inherited": {
      const h = item.inherited as Inherited;
      const proc = (p: number) => h.look.snap.processes.find((x) => x.pid === p);
      const parent = proc(proc(pid)?.ppid ?? -1);
      const program = h.look.states.get(pid)?.exe ?? proc(pid)?.command ?? "?";
      const sleeping = sleepsIn(h.look, pid);
      const from = parent ? `from its parent ${parent.pid} (${parent.command})` : "from its parent";
      return {
        kind,
        evidence,
        message: `${pid} (${program}${sleeping ? `, asleep in ${sleeping}` : ""}) holds the listening socket ${evidence[0]?.local} (fd ${fds(evidence)}) and never accepts on it: it got the descriptor ${from} ${h.execd ? "and kept it across execve()" : "at fork() and never closed it"}, so the ${evidence[0]?.local?.includes(":") ? "port" : "socket"} stays taken for as long as ${pid} lives, even after the server stops`,
        fix: h.execd
          ? "make the listener close-on-exec: socket(..., SOCK_CLOEXEC, ...) or fcntl(fd, F_SETFD, FD_CLOEXEC) (Python: close_fds=True and a non-inheritable socket); or close it in the child before execve()"
          : "close the listening socket in the child right after fork(): it takes no connection",
      };
    }
    case "orphaned-listener": {
      const u = item.unaccepted as Unaccepted;
      const where = evidence[0]?.local ?? "?";
      const others = pids(evidence);
      const sleeping = sleepsIn(u.look, pid);
      const serving = held(roles(u.look).accepted, pid).length > 0;
      const holder = u.look.snap.processes.find((p) => p.pid === pid);
      const parent = u.look.snap.processes.find((p) => p.pid === holder?.ppid);
      const gone =
        holder?.ppid === 1
          ? "its parent is now pid 1: the server that started it is gone"
          : `the leader of its process group, the server that started it, is gone (its parent is now ${holder?.ppid}${parent ? ` (${parent.command})` : ""})`;
      const waiting =
        u.probes > 0
          ? `${plural(u.probes, "probe connection")} waited unanswered in the backlog (accept queue ${u.queued})`
          : `${plural(u.queued, "connection")} wait unanswered in the backlog`;
      const restart = roles(u.look).listeners.some((s) => s.family === "unix")
        ? `a server started again on ${where} fails with EADDRINUSE, or, if it unlinks the path first, leaves ${others.join(", ")} holding a socket nobody can reach`
        : `a server started again on this port fails with EADDRINUSE while ${others.join(", ")} ${others.length === 1 ? "lives" : "live"}`;
      return {
        kind,
        evidence,
        message: `nobody accepts on ${where}: ${others.join(", ")} (${u.look.snap.processes.find((p) => p.pid === pid)?.command ?? "?"}${sleeping ? `, asleep in ${sleeping}` : ""}) ${others.length === 1 ? "holds" : "hold"} the listener${serving ? " while serving a client" : ""}, and ${gone}. ${waiting}, and ${restart}`,
        // A holder serving a client is a per-connection child; one that serves nobody got the listener some other way.
        fix: `${serving ? "close(serv_sock) in each child right after fork()" : "close the listener in every process the server starts: close(serv_sock) after fork(), close-on-exec before execve() (SOCK_CLOEXEC, FD_CLOEXEC, close_fds=True)"}, so that it ends with the server; to free it now, end ${others.join(", ")} (kill ${others.join(" ")})`,
      };
    }
    case "zombie": {
      const zombieLooks = looks.filter((l) => evidence.some((e) => l.states.get(e.pid)?.state === "Z"));
      const span = ((zombieLooks.at(-1)?.at ?? 0) - (zombieLooks[0]?.at ?? 0)) / 1000;
      const ages = evidence.flatMap((e) => zombieLooks.at(-1)?.states.get(e.pid)?.ageSeconds ?? []);
      const started =
        ages.length === 0
          ? ""
          : `, started ${Math.min(...ages).toFixed(1)}${ages.length > 1 ? ` to ${Math.max(...ages).toFixed(1)}` : ""} s ago`;
      return {
        kind,
        evidence,
        message: `${pid} did not reap ${plural(n, "exited child", "exited children")} (${evidence.map((e) => e.pid).join(", ")}${started}; zombies for at least ${span.toFixed(1)} s): each keeps its process-table entry until waited for`,
        fix: "in the SIGCHLD handler, call waitpid(-1, &status, WNOHANG) until it returns 0 or -1 (one signal can stand for several children)",
      };
    }
    case "descriptor-growth": {
      const before = looks.filter((l) => l.phase === "before").at(-1);
      const after = looks.at(-1);
      const count = (l: Look | undefined) => l?.snap.processes.find((p) => p.pid === pid)?.descriptors.length ?? 0;
      return {
        kind,
        evidence,
        message: `the acceptor ${pid} held ${count(before)} descriptors before the probes and ${count(after)} after they ended: ${plural(count(after) - count(before), "descriptor")} not given back (fd ${fds(evidence)})`,
        fix: forks
          ? "close every descriptor made for a connection once it is handed to the child (clnt_sock in the parent right after fork())"
          : "close every descriptor made for a connection when the connection ends",
      };
    }
  }
}

/**
 * Judges looks taken in time order. A finding is reported only when two
 * consecutive looks of one phase both show it: a correct server passes
 * through each mistake for an instant (the parent holds a connection between
 * fork() and its close(), a child exits before it is reaped). Zombies count
 * only from the last two looks. The descriptor-growth judgement needs looks
 * before and after probes.
 */
export function judge(all: Look[], probes: ProbeResult[] = []): Judgement {
  // Probes nobody answered or closed within the timeout leave their
  // connections wherever they were: the looks during and after them are not
  // judged (a slow server and a leaky one look alike then), only whether anyone accepts.
  const answered = probes.length === 0 || probes.some((p) => p.echoed || p.closedByServer);
  const looks = answered ? all : all.filter((l) => l.phase === "before");
  const { pool, inherited } = judgeHolders(looks);
  const forks = looks.some((l) => l.snap.processes.length > 1);
  const items: Item[] = [];
  const helpers = new Set(inherited.map((h) => h.pid));
  for (let i = 1; i < looks.length; i++) {
    const [a, b] = [looks[i - 1] as Look, looks[i] as Look];
    if (a.phase !== b.phase || !alive(b, b.snap.root)) continue;
    // A zombie counts only if the last two looks show it: a busy parent reaps late, not never.
    const found = confirmed(itemsOf(a, !!pool, forks, helpers), itemsOf(b, !!pool, forks, helpers));
    items.push(...(i === looks.length - 1 ? found : found.filter((x) => x.kind !== "zombie")));
  }
  const growth = descriptorGrowth(looks);
  if (growth) items.push(growth);
  for (const h of inherited) {
    const r = roles(h.look);
    items.push({
      kind: "listener-inherited",
      subject: h.pid,
      evidence: held(r.listeners, h.pid).map((x) => evidenceOf(h.pid, x.fd, x.socket)),
      inherited: h,
    });
  }
  const nobody = unaccepted(all, probes);
  const orphan = orphaned(nobody);
  if (orphan) items.push(orphan);
  // One finding per kind and process: evidence from every phase, the latest state of each socket.
  const merged = new Map<string, Item>();
  for (const item of items) {
    const key = `${item.kind} ${item.subject}`;
    const into = merged.get(key) ?? { ...item, evidence: [] };
    for (const e of item.evidence) {
      const at = into.evidence.findIndex((x) => evidenceKey(item.kind, x) === evidenceKey(item.kind, e));
      if (at >= 0) into.evidence[at] = e;
      else into.evidence.push(e);
    }
    merged.set(key, into);
  }
  return {
    findings: [...merged.values()].map((item) => words(item, looks)),
    pool,
    unaccepted: orphan ? null : nobody,
  };
}

/**
 * Judges one snapshot without probes (for pictures of it): what it shows, not
 * confirmed by a second look, so a step a correct server is passing through
 * can show up. Process states are read now unless given.
 */
export function judgeSnapshot(snap: FdSnapshot, states?: Map<number, ProcState>): Judgement {
  const l: Look = {
    phase: "before",
    at: Date.now(),
    snap,
    states: states ?? processStates(snap.processes.map((p) => p.pid)),
  };
  return judge([l, l]);
}

/** Where a probe connects: a TCP host and port, or a Unix socket's path. */
type ProbeTarget = { host: string; port: number } | { path: string };

function startProbe(to: ProbeTarget, index: number, timeoutMs: number) {
  const result: ProbeResult = { local: null, connected: false, echoed: false, closedByServer: false, error: null };
  const socket = connect(to);
  const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
  socket.on("error", (err: NodeJS.ErrnoException) => {
    result.error ??= err.code ?? err.message;
  });
  socket.on("end", () => {
    result.closedByServer = true;
  });
  // An answer after the timeout is not counted: check has judged by then.
  let inTime = true;
  const answered = new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      inTime = false;
      resolve();
    }, timeoutMs);
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    socket.once("connect", () => {
      result.connected = true;
      const a = socket.localAddress;
      if (a !== undefined) result.local = `${a.includes(":") ? `[${a}]` : a}:${socket.localPort}`;
      socket.write(`realfork check probe ${index}\n`);
    });
    socket.on("data", () => {
      if (inTime) result.echoed = true;
      done();
    });
    void closed.then(done);
  });
  /** Half-closes, then waits for the server's close; a server that never closes costs timeoutMs. */
  const finish = async () => {
    if (!socket.destroyed) socket.end();
    const timer = setTimeout(() => socket.destroy(), timeoutMs);
    await closed;
    clearTimeout(timer);
  };
  return { result, answered, finish };
}

/** Where to connect for the listener's address: the wildcard means this host's loopback. */
function probeHost(local: string): string {
  const host = local.slice(0, local.lastIndexOf(":")).replace(/^\[|\]$/g, "");
  if (host === "0.0.0.0") return "127.0.0.1";
  if (host === "::") return "::1";
  return host.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/, "$1");
}

export interface CheckOptions {
  /** Probe connections to make (0: judge what is there). */
  probes: number;
  /** The port to probe; the root's first listener when not given. */
  port?: number;
  /** The Unix stream socket to judge and probe, by path (Linux). */
  unixPath?: string;
  /** How long to wait for each answer, each close, and for children to end. */
  timeoutMs: number;
  /** Between the two looks that confirm a finding. */
  settleMs?: number;
}

/** The topmost process under `pid` that holds a listening socket (the acceptor), or `pid`. */
function acceptorIn(snap: FdSnapshot): number {
  const listening = snap.sockets.filter((s) => s.state === "LISTEN");
  const holds = (pid: number) => listening.some((s) => s.holders.some((h) => h.pid === pid));
  if (holds(snap.root)) return snap.root;
  return snap.processes.find((p) => holds(p.pid))?.pid ?? snap.root;
}

/**
 * Checks the acceptor at or under `pid` (a wrapper such as a shell or
 * `timeout` is looked through) and its descendants; throws
 * CheckTargetError when they cannot be checked.
 */
export async function checkServer(pid: number, options: CheckOptions): Promise<CheckReport> {
  let root = pid;
  const settle = options.settleMs ?? 300;
  const looks: Look[] = [];
  let exited: CheckReport["exited"] = null;
  const take = (phase: Phase): boolean => {
    if (exited) return false;
    const l = look(root, phase, options.unixPath);
    if (!alive(l, root)) {
      exited = { pid: root, phase };
      return false;
    }
    looks.push(l);
    return true;
  };
  if (!take("before")) throw new CheckTargetError(`no process ${root}`);
  const acceptor = acceptorIn((looks[0] as Look).snap);
  if (acceptor !== root) {
    root = acceptor;
    looks.length = 0;
    if (!take("before")) throw new CheckTargetError(`no process ${root}`);
  }
  const first = looks[0] as Look;
  const rootEntry = first.snap.processes[0];
  if (rootEntry?.error) {
    throw new CheckTargetError(
      rootEntry.error.startsWith("permission denied")
        ? `not permitted: ${rootEntry.error}`
        : `cannot read pid ${root}: ${rootEntry.error}`,
    );
  }
  const listeners = roles(first).listeners;
  const target =
    options.unixPath === undefined
      ? listeners.find((s) => s.family !== "unix" && (options.port === undefined || portOf(s.local) === options.port))
      : listeners.find((s) => s.family === "unix");
  if (!target) {
    const who = `pid ${root} (${rootEntry?.command ?? "?"}) and its descendants`;
    throw new CheckTargetError(
      options.unixPath !== undefined
        ? `${who} hold no listening Unix socket at ${options.unixPath}: nothing to judge`
        : options.port !== undefined
          ? `pid ${root} does not listen on port ${options.port}: nothing to judge`
          : `${who} hold no listening socket: nothing to judge (a server's pid, or --port P)`,
    );
  }
  await sleep(settle);
  take("before");
  const probes: ProbeResult[] = [];
  if (options.probes > 0 && !exited) {
    const to: ProbeTarget =
      target.family === "unix" ? { path: target.local } : { host: probeHost(target.local), port: portOf(target.local) };
    const running = Array.from({ length: options.probes }, (_, i) => startProbe(to, i + 1, options.timeoutMs));
    probes.push(...running.map((p) => p.result));
    await Promise.all(running.map((p) => p.answered));
    if (take("during")) {
      await sleep(settle);
      take("during");
    }
    await Promise.all(running.map((p) => p.finish()));
    // Let the children that served the probes end before looking again (known
    // workers stay); only their states are read meanwhile, which is cheap.
    const during = looks.filter((l) => l.phase === "during").at(-1);
    const ours = new Set(probes.map((p) => p.local));
    const serving = during
      ? roles(during)
          .accepted.filter((s) => s.family === "unix" || ours.has(s.remote))
          .flatMap((s) => s.holders.map((h) => h.pid))
          .filter((p) => p !== root)
      : [];
    const workers = new Set(judgeHolders(looks).pool?.workers ?? []);
    const until = Date.now() + options.timeoutMs;
    while (Date.now() < until) {
      const states = processStates([...new Set(serving)], { stateOnly: true });
      if (![...states.values()].some((s) => s.state !== "Z" && !workers.has(s.pid))) break;
      await sleep(50);
    }
    if (take("after")) {
      await sleep(settle);
      take("after");
    }
  }
  if (judge(looks, probes).findings.some((f) => f.kind === "zombie")) {
    // A parent under load may reap a second late; one that does not reap at all
    // still has them after this.
    await sleep(Math.max(settle, 1000));
    take(looks.at(-1)?.phase ?? "after");
  }
  const { findings, pool, unaccepted } = judge(looks, probes);
  const needsProbes: FindingKind[] = [];
  if (options.probes === 0) {
    if (roles(first).children.length === 0) {
      needsProbes.push("listener-in-child", "connection-in-parent", "connection-in-sibling");
    }
    needsProbes.push("descriptor-growth");
    if (!findings.some((f) => f.kind === "orphaned-listener")) needsProbes.push("orphaned-listener");
  }
  const notJudged: string[] = [];
  const wait = `--timeout ${durationText(options.timeoutMs)}`;
  // Without probes, connections that wait are only a busy moment, unless they make an orphan (a finding).
  if (unaccepted && unaccepted.probes > 0) {
    const u = unaccepted;
    const who = listenerHolders(u.look)
      .map((h) => h.pid)
      .filter((p, i, all) => all.indexOf(p) === i)
      .map((p) => `${p}${sleepsIn(u.look, p) ? ` asleep in ${sleepsIn(u.look, p)}` : ""}`)
      .join("; ");
    notJudged.push(
      `nobody accepted the ${plural(u.probes, "probe connection")} within ${wait} (accept queue ${u.queued}): the holders of the listener (${who}) are busy or have stopped accepting`,
    );
  } else if (
    probes.length > 0 &&
    !exited &&
    !probes.some((p) => p.echoed || p.closedByServer) &&
    !findings.some((f) => f.kind === "orphaned-listener")
  ) {
    const refused = probes.find((p) => !p.connected && p.error);
    notJudged.push(
      refused
        ? `no probe connected (${refused.error})`
        : `none of the ${plural(probes.length, "probe")} was answered or closed by the server within ${wait}, so what they left behind was not judged, only the looks before them (a longer --timeout, or a server that answers a line)`,
    );
  }
  return {
    platform: first.snap.platform,
    root,
    command: rootEntry?.command ?? "?",
    processes: first.snap.processes.length,
    listeners: listeners.map((s) => ({ local: s.local, inode: s.inode })),
    probes,
    pool,
    findings,
    needsProbes,
    notJudged,
    exited,
    // A process that ended between two reads is gone, not unreadable.
    unreadable: [
      ...new Set(
        looks.flatMap((l) =>
          l.snap.processes.filter((p) => p.error?.startsWith("permission denied")).map((p) => `${p.pid}: ${p.error}`),
        ),
      ),
    ],
    unavailable: [...first.snap.unavailable, ...UNKNOWN_STATES],
  };
}

function summary(report: CheckReport): string {
  const others = report.processes - 1;
  const what = [`pid ${report.root} (${report.command}${others > 0 ? `, with ${plural(others, "descendant")}` : ""})`];
  what.push(
    report.listeners.length > 0
      ? `listening on ${report.listeners.map((l) => l.local).join(", ")}`
      : "holding no listening socket",
  );
  const p = report.probes;
  if (p.length > 0) {
    const echoed = p.filter((r) => r.echoed).length;
    const closed = p.filter((r) => r.closedByServer).length;
    what.push(`after ${plural(p.length, "probe")} (${echoed} answered, ${closed} closed by the server)`);
  }
  if (report.pool) {
    what.push(
      `a prefork pool of ${plural(report.pool.workers.length, "worker")} (${report.pool.workers.join(", ")}: ${report.pool.how.join("; ")})`,
    );
  }
  return what.join(", ");
}

/** Exit status: 1 findings (or the server exited), 2 nothing judged, 0 nothing found. */
export function checkStatus(report: CheckReport): number {
  if (report.findings.length > 0 || report.exited) return 1;
  return report.notJudged.length > 0 ? 2 : 0;
}

/** The report as text: one line when nothing is found. */
export function renderCheck(report: CheckReport): string {
  const lines: string[] = [];
  const n = report.findings.length;
  const verdict =
    n > 0 ? `${plural(n, "finding")} in` : report.notJudged.length > 0 ? "could not judge" : "no findings in";
  lines.push(`realfork check: ${verdict} ${summary(report)}`);
  const st = report.started;
  if (st) {
    const ended = st.ended
      ? st.ended.how === "exited"
        ? `it had exited by itself (${st.ended.signal ?? `status ${st.ended.code}`})`
        : `stopped with ${st.ended.how}${st.killed.length > 0 ? ` (SIGKILL for ${st.killed.join(", ")} after the grace period)` : ""}`
      : "";
    lines.push(
      `started: ${st.command.join(" ")} (pid ${st.pid}), listening after ${st.listenedAfterMs} ms; ${ended}${st.left.length > 0 ? `; still there: ${st.left.join(", ")}` : ""}`,
    );
  }
  for (const why of report.notJudged) lines.push(`not judged: ${why}`);
  if (report.exited) {
    const when = { before: "before the probes", during: "during the probes", after: "after the probes" }[
      report.exited.phase
    ];
    lines.push(`the server (pid ${report.exited.pid}) exited ${when}; judged from the looks before that`);
  }
  if (report.needsProbes.length > 0) {
    lines.push(`not judged without probes: ${report.needsProbes.join(", ")} (--probe N makes connections)`);
  }
  for (const u of report.unreadable) lines.push(`not readable: ${u}`);
  for (const u of report.unavailable) lines.push(`not available on ${report.platform}: ${u}`);
  for (const f of report.findings) {
    lines.push("", `${f.kind}: ${f.message}`);
    f.evidence.forEach((e, i) => {
      const where = e.fd === undefined ? `pid ${e.pid}` : `${e.pid}:${e.fd}`;
      let what = `  ${e.target ?? ""}`;
      if (e.state === "Z") what = "  zombie";
      else if (e.local !== undefined) what = `  inode ${e.inode}  ${e.state}  ${e.local} -> ${e.remote ?? "*"}`;
      lines.push(`  ${i === 0 ? "evidence" : "        "}  ${where}${what}`);
    });
    lines.push(`  fix       ${f.fix}`);
  }
  return `${lines.join("\n")}\n`;
}

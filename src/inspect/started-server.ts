// `realfork check -- COMMAND`: the server check starts itself (for CI). It is
// started in a process group of its own, watched until it or a descendant
// listens, and stopped afterwards: SIGTERM to every process of its tree and
// group, SIGKILL to what is left after a grace period, so that nothing it
// started outlives the check.
import { type ChildProcess, spawn } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import { unixSockets } from "./fdtable/linux.js";
import { processTree, samePath, snapshot } from "./fdtable.js";
import { statFields } from "./procstate.js";

/** What check started and how it ended (the `started` field of check --json). */
export interface StartedReport {
  command: string[];
  pid: number;
  /** Milliseconds from the start until it or a descendant listened; null if it never did. */
  listenedAfterMs: number | null;
  /** The first listener seen: its address (a TCP "ip:port" or a Unix socket's path) and its holder. */
  listener: { local: string; unix: boolean; pid: number } | null;
  /** "exited": on its own (code or signal); "SIGTERM": stopped by it; "SIGKILL": not stopped within the grace period. */
  ended: { how: "exited" | "SIGTERM" | "SIGKILL"; code: number | null; signal: string | null } | null;
  /** Processes of its tree that SIGTERM did not end within the grace period (they got SIGKILL). */
  killed: number[];
  /** Processes of its tree still there after SIGKILL (none, unless the kernel is slow to end them). */
  left: number[];
  /** The last lines it wrote to stderr. */
  stderrTail: string;
}

export interface ListenWanted {
  port?: number | undefined;
  unixPath?: string | undefined;
}

const TAIL = 4000;

/** The start time of `pid` (/proc/PID/stat), to tell it from a later process with the same pid; null if gone or a zombie. */
function identity(pid: number): string | null {
  const f = statFields(pid);
  return f === null || f[0] === "Z" ? null : (f[19] ?? "");
}

export class StartedServer {
  readonly report: StartedReport;
  private readonly child: ChildProcess;
  private readonly started = Date.now();
  /** Every process seen in its tree, with its start time. */
  private readonly seen = new Map<number, string>();
  private exit: { code: number | null; signal: string | null } | null = null;
  private readonly exited: Promise<void>;
  private stderr = "";
  /** Why it could not be started ("spawn ./server ENOENT"), if it could not. */
  spawnError: string | null = null;

  constructor(command: string[]) {
    const [file = "", ...args] = command;
    // Its own process group (and session), so that the group can be signalled.
    this.child = spawn(file, args, { stdio: ["ignore", "pipe", "pipe"], detached: true });
    this.report = {
      command,
      pid: this.child.pid ?? 0,
      listenedAfterMs: null,
      listener: null,
      ended: null,
      killed: [],
      left: [],
      stderrTail: "",
    };
    this.child.stdout?.resume();
    this.child.stderr?.setEncoding("utf8").on("data", (d: string) => {
      this.stderr = (this.stderr + d).slice(-TAIL);
      this.report.stderrTail = this.stderr;
    });
    this.exited = new Promise((resolve) => {
      this.child.once("error", (err) => {
        this.spawnError = err.message;
        this.exit ??= { code: null, signal: null };
        resolve();
      });
      this.child.once("exit", (code, signal) => {
        this.exit = { code, signal };
        resolve();
      });
    });
  }

  /** How it ended, in words ("exited with status 1", "was ended by SIGSEGV", "could not be started (...)"), or null while it runs. */
  get exitText(): string | null {
    if (!this.exit) return null;
    if (this.spawnError) return `could not be started (${this.spawnError})`;
    if (this.exit.signal) return `was ended by ${this.exit.signal}`;
    return `exited with status ${this.exit.code}`;
  }

  /** Notes the processes of its tree (by default, as they are now). */
  private remember(tree = this.child.pid === undefined ? [] : processTree(this.child.pid)): void {
    for (const pid of tree) {
      const id = identity(pid);
      if (id !== null && !this.seen.has(pid)) this.seen.set(pid, id);
    }
  }

  /** Where it or a descendant listens now, as wanted, or null; notes its tree on the way. */
  private listening(want: ListenWanted): StartedReport["listener"] {
    if (this.child.pid === undefined) return null;
    const snap = snapshot(this.child.pid, want.unixPath === undefined ? {} : { unixPath: want.unixPath });
    this.remember(snap.processes.map((p) => p.pid));
    const holder = (inode: number) =>
      snap.processes.find((p) => p.descriptors.some((d) => d.inode === inode))?.pid ?? this.report.pid;
    if (want.unixPath === undefined) {
      const tcp = snap.sockets.find(
        (s) => s.state === "LISTEN" && (want.port === undefined || s.local.endsWith(`:${want.port}`)),
      );
      if (tcp) return { local: tcp.local, unix: false, pid: holder(tcp.inode) };
      if (want.port !== undefined || process.platform !== "linux") return null;
    }
    const held = new Set(snap.processes.flatMap((p) => p.descriptors.map((d) => d.inode)));
    for (const u of unixSockets(this.child.pid).named.values()) {
      if (u.state !== "LISTEN" || !held.has(u.inode)) continue;
      if (want.unixPath === undefined || samePath(u.path, want.unixPath)) {
        return { local: u.path, unix: true, pid: holder(u.inode) };
      }
    }
    return null;
  }

  /** Waits until it or a descendant listens (null: it exited, or timeoutMs passed first). */
  async waitListening(want: ListenWanted, timeoutMs: number): Promise<StartedReport["listener"]> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      if (this.exit) return null;
      const found = this.listening(want);
      if (found) {
        this.report.listener = found;
        this.report.listenedAfterMs = Date.now() - this.started;
        return found;
      }
      if (Date.now() >= until) return null;
      await Promise.race([sleep(50), this.exited]);
    }
  }

  /** The processes it started that are still there (pids of its tree, or seen in it, not reused since). */
  private alive(): number[] {
    this.remember();
    return [...this.seen].filter(([pid, id]) => identity(pid) === id).map(([pid]) => pid);
  }

  private signal(name: NodeJS.Signals): void {
    const pids = this.alive();
    // Its group, when it was started at all: kill(-0) would signal check's own group.
    if (this.report.pid > 0) {
      try {
        process.kill(-this.report.pid, name);
      } catch {}
    }
    for (const pid of pids) {
      try {
        process.kill(pid, name);
      } catch {}
    }
  }

  private async gone(timeoutMs: number): Promise<boolean> {
    const until = Date.now() + timeoutMs;
    while (this.exit === null || this.alive().length > 0) {
      if (Date.now() >= until) return false;
      await Promise.race([sleep(50), this.exited]);
    }
    return true;
  }

  /** Ends it and everything it started: SIGTERM, then SIGKILL after graceMs. */
  async stop(graceMs: number): Promise<StartedReport> {
    const before = this.exit;
    let how: "exited" | "SIGTERM" | "SIGKILL" = before ? "exited" : "SIGTERM";
    this.signal("SIGTERM");
    if (!(await this.gone(graceMs))) {
      if (this.exit === null) how = "SIGKILL";
      this.report.killed = this.alive();
      this.signal("SIGKILL");
      await this.gone(2000);
    }
    const end = this.exit ?? { code: null, signal: null };
    this.report.ended = { how, code: end.code, signal: end.signal };
    this.report.left = this.alive();
    this.report.stderrTail = this.stderr;
    return this.report;
  }
}

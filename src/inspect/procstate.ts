// What the kernel says each process is doing, for `realfork check`: its state
// (a zombie is "Z"), when it started, and the system call it sleeps in.
// Linux: /proc/PID/stat and /proc/PID/syscall (wchan as a fallback).
// macOS: ps gives the state and the age; nothing says which call a process
// sleeps in, so a prefork worker is known there only by outliving its
// connections.
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";

export interface ProcState {
  pid: number;
  /** One letter as ps shows it: R running, S sleeping, Z zombie, T stopped... */
  state: string;
  /** Seconds since the process started, or null where unknown. */
  ageSeconds: number | null;
  /**
   * The call it sleeps in, when it sleeps in accept(): with the descriptor
   * where the kernel says which (Linux /proc/PID/syscall), without it where
   * only the kernel function is known (wchan "inet_csk_accept"). null
   * otherwise, or where the OS does not tell.
   */
  blockedInAccept: { fd: number | null } | null;
  /** What each thread sleeps in (Linux; empty where unknown). */
  waits: ThreadWait[];
  /** The program it runs (Linux /proc/PID/exe), or null where unknown. */
  exe: string | null;
  /** Its arguments (Linux /proc/PID/cmdline, NULs as spaces), or null where unknown. */
  cmdline: string | null;
  /**
   * The leader of its process group is gone (Linux; null where unknown): a
   * child whose server was the group leader outlived it, even where a
   * subreaper, not pid 1, became its parent.
   */
  groupLeaderGone: boolean | null;
}

/** The system call a thread sleeps in, as far as check needs to know it. */
export interface ThreadWait {
  /**
   * "accept" (accept, accept4), "poll" (poll, ppoll, select, pselect6),
   * "epoll" (epoll_wait, epoll_pwait, epoll_pwait2), "lock" (futex, semop,
   * flock, fcntl: a pool's accept mutex), "running", or the call's name
   * ("read", "wait4", "clock_nanosleep"...; "syscall N" when not named here).
   */
  call: string;
  /** accept: the descriptor; epoll: the descriptors in its set (fdinfo); null otherwise or unreadable. */
  fds: number[] | null;
}

const isLinux = process.platform === "linux";

// accept and accept4, by architecture (asm/unistd.h).
const ACCEPT_CALLS: Record<string, number[]> = { x64: [43, 288], arm64: [202, 242], arm: [285, 366], ia32: [] };

// The calls a server's threads sleep in, by number (asm/unistd.h), for x64 and arm64.
const CALL_NAMES: Record<string, Record<number, string>> = {
  x64: {
    0: "read",
    7: "poll",
    23: "select",
    270: "pselect6",
    271: "ppoll",
    232: "epoll_wait",
    281: "epoll_pwait",
    441: "epoll_pwait2",
    202: "futex",
    65: "semop",
    220: "semtimedop",
    73: "flock",
    72: "fcntl",
    61: "wait4",
    247: "waitid",
    35: "nanosleep",
    230: "clock_nanosleep",
    34: "pause",
    130: "rt_sigsuspend",
    45: "recvfrom",
    47: "recvmsg",
    1: "write",
    44: "sendto",
    22: "pipe",
    43: "accept",
    288: "accept4",
  },
  arm64: {
    63: "read",
    73: "ppoll",
    72: "pselect6",
    22: "epoll_pwait",
    441: "epoll_pwait2",
    98: "futex",
    193: "semop",
    192: "semtimedop",
    32: "flock",
    25: "fcntl",
    260: "wait4",
    95: "waitid",
    101: "nanosleep",
    115: "clock_nanosleep",
    133: "rt_sigsuspend",
    207: "recvfrom",
    212: "recvmsg",
    64: "write",
    202: "accept",
    242: "accept4",
  },
};
const KINDS: Record<string, string> = {
  accept: "accept",
  accept4: "accept",
  poll: "poll",
  ppoll: "poll",
  select: "poll",
  pselect6: "poll",
  epoll_wait: "epoll",
  epoll_pwait: "epoll",
  epoll_pwait2: "epoll",
  futex: "lock",
  semop: "lock",
  semtimedop: "lock",
  flock: "lock",
  fcntl: "lock",
};

/** The descriptors in an epoll set, from /proc/PID/fdinfo/EPFD ("tfd: N events: ..."). */
function epollTargets(pid: number, epfd: number): number[] | null {
  const info = read(`/proc/${pid}/fdinfo/${epfd}`);
  return info === null ? null : [...info.matchAll(/^tfd:\s+(\d+)/gm)].map((m) => Number(m[1]));
}

/** What one thread sleeps in, from /proc/PID/task/TID/syscall ("NR arg0 ... sp pc", "running", "-1 sp pc"). */
function threadWait(pid: number, fields: string[]): ThreadWait | null {
  if (fields[0] === "running") return { call: "running", fds: null };
  const nr = Number(fields[0]);
  if (!Number.isInteger(nr) || nr < 0) return null;
  const name =
    CALL_NAMES[process.arch]?.[nr] ?? (ACCEPT_CALLS[process.arch]?.includes(nr) ? "accept" : `syscall ${nr}`);
  const call = KINDS[name] ?? name;
  const arg0 = Number.parseInt(fields[1] ?? "", 16);
  if (call === "accept") return { call, fds: [arg0] };
  if (call === "epoll") return { call, fds: epollTargets(pid, arg0) };
  return { call, fds: null };
}

function threadWaits(pid: number): ThreadWait[] {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  return tids.flatMap((tid) => {
    const fields = read(`/proc/${pid}/task/${tid}/syscall`)?.trim().split(" ");
    const w = fields ? threadWait(pid, fields) : null;
    return w ? [w] : [];
  });
}

function exeOf(pid: number): string | null {
  try {
    return readlinkSync(`/proc/${pid}/exe`);
  } catch {
    return null;
  }
}

let ticksPerSecond: number | null = null;
function clockTicks(): number {
  if (ticksPerSecond === null) {
    try {
      ticksPerSecond = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

function read(path: string): string | null {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return null;
  }
}

/**
 * The fields of /proc/PID/stat after "pid (comm) " (state is [0], utime
 * [11], stime [12], cutime [13], cstime [14], starttime [19]), or null when
 * the process is gone. The command name may hold spaces and parentheses:
 * the fields start after the last ")".
 */
export function statFields(pid: number): string[] | null {
  const stat = read(`/proc/${pid}/stat`);
  return stat === null ? null : stat.slice(stat.lastIndexOf(")") + 2).split(" ");
}

function linuxState(
  pid: number,
  uptime: number,
  stateOnly: boolean,
  leaders: Map<number, string[] | null>,
): ProcState | null {
  const fields = statFields(pid);
  if (fields === null) return null;
  const state = fields[0] ?? "?";
  const start = Number(fields[19]);
  const ageSeconds = Number.isFinite(start) ? Math.max(0, uptime - start / clockTicks()) : null;
  if (stateOnly)
    return {
      pid,
      state,
      ageSeconds,
      blockedInAccept: null,
      waits: [],
      exe: null,
      cmdline: null,
      groupLeaderGone: null,
    };
  const pgid = Number(fields[2]);
  if (!leaders.has(pgid)) leaders.set(pgid, pgid === pid ? fields : statFields(pgid));
  const leader = leaders.get(pgid);
  // Each thread's "NR arg0 arg1 ... sp pc" while blocked in a call, "running"
  // or "-1 ..." otherwise; readable by the process's user or root (ptrace
  // access). Any thread may be the one in accept() (a pool of threads per
  // process); the first is the main thread.
  const waits = threadWaits(pid);
  const accepting = waits.find((w) => w.call === "accept");
  let blockedInAccept: ProcState["blockedInAccept"] = accepting ? { fd: accepting.fds?.[0] ?? null } : null;
  if (waits.length === 0 && read(`/proc/${pid}/wchan`)?.trim() === "inet_csk_accept") blockedInAccept = { fd: null };
  return {
    pid,
    state,
    ageSeconds,
    blockedInAccept,
    waits,
    exe: exeOf(pid),
    cmdline: read(`/proc/${pid}/cmdline`)?.replace(/\0+$/, "").replaceAll("\0", " ") ?? null,
    groupLeaderGone: Number.isInteger(pgid) && pgid > 0 ? leader === null || leader?.[0] === "Z" : null,
  };
}

function psElapsed(text: string): number | null {
  // [[dd-]hh:]mm:ss
  const m = /^(?:(?:(\d+)-)?(\d+):)?(\d+):(\d+)$/.exec(text.trim());
  if (!m) return null;
  return ((Number(m[1] ?? 0) * 24 + Number(m[2] ?? 0)) * 60 + Number(m[3])) * 60 + Number(m[4]);
}

/**
 * The state of each pid that still exists (a pid that is gone has no entry).
 * With stateOnly, only `state` and `ageSeconds` are read (one file a process
 * on Linux): for a caller that polls.
 */
export function processStates(pids: number[], { stateOnly = false } = {}): Map<number, ProcState> {
  const out = new Map<number, ProcState>();
  if (pids.length === 0) return out;
  if (isLinux) {
    const uptime = Number((read("/proc/uptime") ?? "0").split(" ")[0]);
    const leaders = new Map<number, string[] | null>();
    for (const pid of pids) {
      const s = linuxState(pid, uptime, stateOnly, leaders);
      if (s) out.set(pid, s);
    }
    return out;
  }
  let text = "";
  try {
    text = execFileSync("ps", ["-o", "pid=,stat=,etime=", "-p", pids.join(",")], { encoding: "utf8" });
  } catch (err) {
    // ps exits 1 when some pid is gone, still printing the others.
    text = String((err as { stdout?: string }).stdout ?? "");
  }
  for (const line of text.split("\n")) {
    const m = /^\s*(\d+)\s+(\S+)\s+(\S+)/.exec(line);
    if (m) {
      out.set(Number(m[1]), {
        pid: Number(m[1]),
        state: (m[2] ?? "?").slice(0, 1),
        ageSeconds: psElapsed(m[3] ?? ""),
        blockedInAccept: null,
        waits: [],
        exe: null,
        cmdline: null,
        groupLeaderGone: null,
      });
    }
  }
  return out;
}

/** What this OS cannot tell check, said once in its report. */
export const UNKNOWN_STATES: string[] = isLinux
  ? []
  : [
      "which system call a process sleeps in (no /proc/PID/syscall): a prefork worker is recognised only by holding the listener without a connection at two looks",
    ];

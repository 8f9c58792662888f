// What the kernel says each process is doing, for `realfork check`: its state
// (a zombie is "Z"), when it started, and the system call it sleeps in.
// Linux: /proc/PID/stat and /proc/PID/syscall (wchan as a fallback).
// macOS: ps gives the state and the age; nothing says which call a process
// sleeps in, so a prefork worker is known there only by outliving its
// connections.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

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
}

const isLinux = process.platform === "linux";

// accept and accept4, by architecture (asm/unistd.h).
const ACCEPT_CALLS: Record<string, number[]> = { x64: [43, 288], arm64: [202, 242], arm: [285, 366], ia32: [] };

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

function linuxState(pid: number, uptime: number): ProcState | null {
  const fields = statFields(pid);
  if (fields === null) return null;
  const state = fields[0] ?? "?";
  const start = Number(fields[19]);
  const ageSeconds = Number.isFinite(start) ? Math.max(0, uptime - start / clockTicks()) : null;
  let blockedInAccept: ProcState["blockedInAccept"] = null;
  // "NR arg0 arg1 ... sp pc" while blocked in a call, "running" or "-1 ..." otherwise;
  // readable by the process's user or root (ptrace access).
  const call = read(`/proc/${pid}/syscall`)?.trim().split(" ");
  const accepts = ACCEPT_CALLS[process.arch] ?? [];
  if (call && call.length > 1 && accepts.includes(Number(call[0]))) {
    blockedInAccept = { fd: Number.parseInt(call[1] ?? "", 16) };
  } else if (call === undefined && read(`/proc/${pid}/wchan`)?.trim() === "inet_csk_accept") {
    blockedInAccept = { fd: null };
  }
  return { pid, state, ageSeconds, blockedInAccept };
}

function psElapsed(text: string): number | null {
  // [[dd-]hh:]mm:ss
  const m = /^(?:(?:(\d+)-)?(\d+):)?(\d+):(\d+)$/.exec(text.trim());
  if (!m) return null;
  return ((Number(m[1] ?? 0) * 24 + Number(m[2] ?? 0)) * 60 + Number(m[3])) * 60 + Number(m[4]);
}

/** The state of each pid that still exists (a pid that is gone has no entry). */
export function processStates(pids: number[]): Map<number, ProcState> {
  const out = new Map<number, ProcState>();
  if (pids.length === 0) return out;
  if (isLinux) {
    const uptime = Number((read("/proc/uptime") ?? "0").split(" ")[0]);
    for (const pid of pids) {
      const s = linuxState(pid, uptime);
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

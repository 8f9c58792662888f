// Every process a test starts goes through spawnTracked(): it runs in its own
// process group, so that whatever it forks can be found after the test, and
// checkLeftovers() kills what is left and reports each process it killed (a
// failing test is reported, and leaves nothing running for the next one).
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { afterEach, expect } from "vitest";

export interface Tracked {
  child: ChildProcess;
  pid: number;
  stdout: () => string;
  stderr: () => string;
  /** Resolves with the exit code/signal; rejects after timeoutMs. */
  exited: (timeoutMs?: number) => Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves when the process itself has ended, even if a descendant still holds its stdio. */
  died: (timeoutMs?: number) => Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves when stdout (or stderr) matches; rejects after timeoutMs. */
  waitFor: (pattern: RegExp, timeoutMs?: number, stream?: "stdout" | "stderr") => Promise<RegExpMatchArray>;
}

const started: Tracked[] = [];

// A test file that ends without its afterEach (its worker torn down after a
// hang) still takes what it started with it.
process.on("exit", () => {
  for (const t of started) killGroup(t.pid);
});

function killGroup(leader: number): void {
  try {
    process.kill(-leader, "SIGKILL");
  } catch {}
}

export function spawnTracked(
  command: string,
  args: string[],
  options: { stdin?: "pipe" | "ignore"; env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Tracked {
  const child = spawn(command, args, {
    stdio: [options.stdin ?? "pipe", "pipe", "pipe"],
    detached: true,
    env: options.env ?? process.env,
    cwd: options.cwd,
  });
  if (child.pid === undefined) throw new Error(`could not start ${command}`);
  let out = "";
  let err = "";
  child.stdout?.setEncoding("utf8").on("data", (d: string) => {
    out += d;
  });
  child.stderr?.setEncoding("utf8").on("data", (d: string) => {
    err += d;
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on("close", (code, signal) => resolve({ code, signal }));
  });
  const died = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on("exit", (code, signal) => resolve({ code, signal }));
  });
  const tracked: Tracked = {
    died: (timeoutMs = 10_000) => withTimeout(died, timeoutMs, `${command} ${args.join(" ")} did not end`),
    child,
    pid: child.pid,
    stdout: () => out,
    stderr: () => err,
    exited: (timeoutMs = 10_000) =>
      withTimeout(
        exit,
        timeoutMs,
        `${command} ${args.join(" ")} did not exit; stdout ends:\n${out.slice(-2000)}\nstderr ends:\n${err.slice(-2000)}`,
      ),
    waitFor: (pattern, timeoutMs = 10_000, stream = "stdout") =>
      withTimeout(
        new Promise<RegExpMatchArray>((resolve) => {
          const look = () => {
            const m = (stream === "stdout" ? out : err).match(pattern);
            if (m) {
              resolve(m);
              return true;
            }
            return false;
          };
          if (look()) return;
          const source = stream === "stdout" ? child.stdout : child.stderr;
          const onData = () => {
            if (look()) source?.off("data", onData);
          };
          source?.on("data", onData);
        }),
        timeoutMs,
        `waiting for ${pattern} in ${stream} of ${command}; got:\n${stream === "stdout" ? out : err}`,
      ),
  };
  started.push(tracked);
  return tracked;
}

export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timeout after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

export interface PsRow {
  pid: number;
  ppid: number;
  pgid: number;
  stat: string;
  command: string;
}

/** Every process, from /proc on Linux (no procps needed), from ps elsewhere. */
export function ps(): PsRow[] {
  if (process.platform === "linux") {
    const rows: PsRow[] = [];
    for (const name of readdirSync("/proc")) {
      if (!/^\d+$/.test(name)) continue;
      let stat: string;
      try {
        stat = readFileSync(`/proc/${name}/stat`, "utf8");
      } catch {
        continue; // gone since the listing
      }
      // pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
      const close = stat.lastIndexOf(")");
      const [state, ppid, pgid] = stat.slice(close + 2).split(" ");
      rows.push({
        pid: Number(name),
        ppid: Number(ppid),
        pgid: Number(pgid),
        stat: state ?? "",
        command: stat.slice(stat.indexOf("(") + 1, close),
      });
    }
    return rows;
  }
  const text = execFileSync("ps", ["-A", "-o", "pid=,ppid=,pgid=,stat=,comm="], { encoding: "utf8" });
  return text
    .split("\n")
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length >= 5)
    .map(([pid, ppid, pgid, stat, ...rest]) => ({
      pid: Number(pid),
      ppid: Number(ppid),
      pgid: Number(pgid),
      stat: stat ?? "",
      command: rest.join(" "),
    }));
}

/** Processes still in the groups of the given leaders (leaders included). */
export function inGroups(leaders: number[]): PsRow[] {
  return ps().filter((p) => leaders.includes(p.pgid));
}

/** Zombie children of this (test) process: started but never waited for. */
export function ourZombies(): PsRow[] {
  return ps().filter((p) => p.ppid === process.pid && p.stat.startsWith("Z"));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * The processes of the given leaders: their groups, and their descendants that
 * left the group (setsid, setpgid), found through their parents.
 */
export function familyOf(leaders: number[], rows = ps()): PsRow[] {
  const pids = new Set(rows.filter((p) => leaders.includes(p.pgid)).map((p) => p.pid));
  for (let grew = true; grew; ) {
    grew = false;
    for (const p of rows)
      if (pids.has(p.ppid) && !pids.has(p.pid)) {
        pids.add(p.pid);
        grew = true;
      }
  }
  return rows.filter((p) => pids.has(p.pid));
}

const describeRow = (p: PsRow) => `pid ${p.pid} (${p.command}, parent ${p.ppid}, state ${p.stat})`;

/**
 * Ends what the tests started since the last call and had not ended: after a
 * moment for processes on their way out, SIGKILL to every tracked process
 * group and to every descendant outside them. Returns one line per process
 * it killed ("killed: ..."), and per process still there after that; a test
 * that cleaned up after itself gets an empty list.
 */
export async function checkLeftovers(): Promise<string[]> {
  const leaders = started.splice(0).map((t) => t.pid);
  if (leaders.length === 0) return [];
  const alive = () => familyOf(leaders).filter((p) => !p.stat.startsWith("Z"));
  for (let i = 0; i < 40 && alive().length > 0; i++) await sleep(50);
  const left = alive();
  for (const leader of leaders) killGroup(leader);
  for (const p of left) {
    try {
      process.kill(p.pid, "SIGKILL");
    } catch {}
  }
  for (let i = 0; i < 40 && familyOf(leaders).length > 0; i++) await sleep(50);
  const report = left.map((p) => `killed: ${describeRow(p)}, left running by the test`);
  for (const z of familyOf(leaders)) report.push(`zombie or unkillable after SIGKILL: ${describeRow(z)}`);
  return report;
}

/** Registers the after-each check in the calling test file. */
export function useLeftoverCheck(): void {
  afterEach(async () => {
    expect(await checkLeftovers(), "processes this test left running, now killed").toEqual([]);
  });
}

/**
 * Runs the CLI as an unprivileged user (nobody) when the tests run as root,
 * so that permission errors can be tested; as the CLI itself otherwise.
 */
export function spawnCliAsUser(cliPath: string, args: string[]): Tracked {
  if (process.getuid?.() !== 0) return spawnTracked(cliPath, args);
  const drop = ["--reuid=65534", "--regid=65534", "--clear-groups"];
  return spawnTracked("setpriv", [...drop, process.execPath, "--single-threaded", cliPath, ...args]);
}

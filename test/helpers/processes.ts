// Every process a test starts goes through spawnTracked(): it runs in its own
// process group, so that whatever it forks can be found and killed after the
// test, and checkLeftovers() reports any process or zombie left behind.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
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

export function ps(): PsRow[] {
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
 * Kills what a test left running (by process group) and returns a report of
 * it. A test that cleans up after itself has an empty report.
 */
export async function checkLeftovers(): Promise<string[]> {
  const leaders = started.splice(0).map((t) => t.pid);
  if (leaders.length === 0) return [];
  // Give processes that are on their way out a moment to finish.
  for (let i = 0; i < 40 && inGroups(leaders).some((p) => !p.stat.startsWith("Z")); i++) await sleep(50);
  const left = inGroups(leaders).filter((p) => !p.stat.startsWith("Z"));
  for (const leader of leaders) {
    try {
      process.kill(-leader, "SIGKILL");
    } catch {}
  }
  for (let i = 0; i < 40 && inGroups(leaders).length > 0; i++) await sleep(50);
  const report = left.map((p) => `left running: pid ${p.pid} (${p.command}, parent ${p.ppid}, state ${p.stat})`);
  for (const z of inGroups(leaders)) report.push(`zombie or unkillable: pid ${z.pid} (${z.command}, state ${z.stat})`);
  return report;
}

/** Registers the after-each check in the calling test file. */
export function useLeftoverCheck(): void {
  afterEach(async () => {
    expect(await checkLeftovers(), "processes left behind by this test").toEqual([]);
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

import { connect, type Socket } from "node:net";
import { statTimes } from "../../src/bench/bench.js";
import { listeningPorts, snapshot } from "../../src/inspect/fdtable.js";
import { cBin, cli } from "./paths.js";
import { sleep, spawnTracked, type Tracked, withTimeout } from "./processes.js";

export interface Server {
  proc: Tracked;
  port: number;
  pid: number;
}

/** realfork serve on a port the OS picks, on loopback. */
export async function startServe(extra: string[] = [], host = "127.0.0.1"): Promise<Server> {
  const proc = spawnTracked(cli, ["serve", "0", "--host", host, ...extra]);
  const m = await proc.waitFor(/listening on .*:(\d+) \(pid (\d+)\)/, 10_000, "stderr");
  return { proc, port: Number(m[1]), pid: proc.pid };
}

/** A C server from c/build, given port 0; its port is read from its descriptor table. */
export async function startC(name = "echo_mpserv_fixed"): Promise<Server> {
  const proc = spawnTracked(cBin(name), ["0"]);
  for (let i = 0; i < 100; i++) {
    const [port] = listeningPorts(proc.pid);
    if (port) return { proc, port, pid: proc.pid };
    await sleep(20);
  }
  throw new Error(`${name} did not listen; stderr: ${proc.stderr()}`);
}

export async function stop(
  server: Server,
  signal: NodeJS.Signals = "SIGTERM",
): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  server.proc.child.kill(signal);
  return server.proc.exited(10_000);
}

/** Opens a connection and resolves once connected. */
export function open(port: number, host = "127.0.0.1"): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, host, () => resolve(s));
    s.once("error", reject);
  });
}

/** Sends data, half-closes, and resolves with everything echoed until the server closes. */
export function echo(port: number, data: Buffer, host = "127.0.0.1", timeoutMs = 20_000): Promise<Buffer> {
  const done = new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = connect(port, host, () => s.end(data));
    s.on("data", (c) => chunks.push(c));
    s.on("error", reject);
    s.on("close", () => resolve(Buffer.concat(chunks)));
  });
  return withTimeout(done, timeoutMs, `echo of ${data.length} bytes on port ${port}`);
}

/** Runs `count` echoes, `concurrency` at a time; returns the mismatches. */
export async function echoMany(
  port: number,
  count: number,
  concurrency: number,
  make: (i: number) => Buffer,
): Promise<number[]> {
  const bad: number[] = [];
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      const data = make(i);
      const got = await echo(port, data);
      if (!got.equals(data)) bad.push(i);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return bad;
}

/** Waits until `pid` has no child processes left (all reaped). */
export async function childrenGone(pid: number, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (snapshot(pid).processes.length > 1) {
    if (Date.now() > until)
      throw new Error(`children of ${pid} still there: ${JSON.stringify(snapshot(pid).processes.map((p) => p.pid))}`);
    await sleep(25);
  }
}

export function count(text: string, needle: string): number {
  return text.split(needle).length - 1;
}

/** c/build/loadgen with these arguments; its JSON result. */
export async function loadgen(args: string[], timeoutMs = 120_000): Promise<Record<string, unknown>> {
  const p = spawnTracked(cBin("loadgen"), args, { stdin: "ignore" });
  await p.exited(timeoutMs);
  return JSON.parse(p.stdout()) as Record<string, unknown>;
}

/** CPU time (user + system) a process has used, in clock ticks (Linux). */
export function cpuTicks(pid: number): number {
  const [user = Number.NaN, system = Number.NaN] = statTimes(pid) ?? [];
  return user + system;
}

/** The pids of `pid`'s children, once there are `n` of them. */
export async function childrenOf(pid: number, n: number, timeoutMs = 10_000): Promise<number[]> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const kids = snapshot(pid)
      .processes.map((p) => p.pid)
      .filter((p) => p !== pid);
    if (kids.length === n) return kids.sort((a, b) => a - b);
    if (Date.now() > until) throw new Error(`${pid} has ${kids.length} children, not ${n}`);
    await sleep(20);
  }
}

/** Connects, sends a line and resolves once it came back: a child is then serving it. */
export async function openServed(port: number, line = "ping\n"): Promise<Socket> {
  const s = await open(port);
  s.on("error", () => {});
  const echoed = new Promise((r) => s.once("data", r));
  s.write(line);
  await withTimeout(echoed, 10_000, `echo of ${JSON.stringify(line)} on port ${port}`);
  return s;
}

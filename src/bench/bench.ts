// realfork bench and compare: start a server (realfork serve, the C reference,
// a peer from peers.ts, or none for an external one), drive it with c/build/loadgen, and read what
// the kernel says about its memory. Numbers only; the commands format them.
import { type ChildProcess, type SpawnOptions, spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { listeningPorts, processTree } from "../inspect/fdtable.js";
import { statFields } from "../inspect/procstate.js";
import { _exit, fork } from "../lib/fork.js";
import { waitpid } from "../lib/posix.js";
import { DEFAULT_WORKERS, isPeer, type PeerKind, peerCommand, peerLabel, peerMissing } from "./peers.js";

const packageRoot = fileURLToPath(new URL("../../", import.meta.url));
export const cliPath = `${packageRoot}bin/realfork.js`;
export const cProgram = (name: string): string => `${packageRoot}c/build/${name}`;

/** Which server a run drives. */
export type ServerKind = "ts" | "c" | "c-book" | "external" | PeerKind;

export interface ServerSpec {
  kind: ServerKind;
  /** Bytes per read in the server's echo loop (not settable for c-book or external). */
  bufferSize: number;
  /** realfork serve --prefork N; the workers of a prefork peer. */
  prefork?: number;
  /** More realfork serve arguments (the negative controls). */
  extra?: string[];
  /** Keep the per-connection lines (stdout) instead of --quiet. */
  verbose?: boolean;
  /** external: where it listens. */
  host?: string;
  port?: number;
}

export interface Percentiles {
  p50: number;
  p99: number;
}

export interface ShortResult {
  connections: number;
  concurrency: number;
  size: number;
  ok: number;
  failed: number;
  mismatched: number;
  firstError: string | null;
  seconds: number;
  connsPerSec: number;
  latencyUs: Percentiles;
}

export interface StreamResult {
  bytes: number;
  chunk: number;
  received: number;
  mismatchedAt: number | null;
  firstError: string | null;
  seconds: number;
  mibPerSec: number;
}

export interface MemoryUse {
  rssKb: number;
  /** Linux only (smaps_rollup): the share of shared pages, and what is the process's alone. */
  pssKb: number | null;
  ussKb: number | null;
}

export interface ForkCost {
  /** fork() as the server's parent measured it (SIGUSR2 report); null where the server cannot say. */
  parentLatencyUs: (Percentiles & { forks: number }) | null;
  parentRss: { idleKb: number; loadedKb: number } | null;
  /** What fork() copies of the idle parent (Linux): page tables, mappings, 4 KiB anonymous pages. */
  parentTables: PageTables | null;
  /** Median over the children alive while connections were held open. */
  child: (MemoryUse & { measured: number; privateKb: Record<string, number> | null }) | null;
}

/** CPU time per connection of a short run, in ms, split by who spent it (Linux). */
export interface CpuPerConnection {
  parent: number;
  children: number;
  /** Page faults per connection (minflt; cminflt for reaped children): counts, unlike the CPU, not moved by load. */
  faults: { parent: number; children: number };
}

/** The parts of a process that fork() copies and its children's exits free (Linux). */
export interface PageTables {
  /** VmPTE: the kernel's page-table pages. */
  pageTablesKb: number;
  mappings: number;
  /** Anonymous memory not on huge pages: one page-table entry per 4 KiB. */
  anon4kKb: number;
}

export interface FloorResult {
  iterations: number;
  seconds: number;
  perSec: number;
  forkUs: Percentiles;
}

export interface RunningServer {
  spec: ServerSpec;
  label: string;
  host: string;
  port: number;
  /** null for an external server. */
  pid: number | null;
  stdout: () => string;
  stderr: () => string;
  /** SIGTERM, then SIGKILL to it and its descendants if it lingers. */
  stop: () => Promise<void>;
}

export class BenchError extends Error {
  override name = "BenchError";
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.round(p * (sorted.length - 1))] ?? 0;
}

export function median(values: readonly number[]): number {
  return percentile(
    [...values].sort((a, b) => a - b),
    0.5,
  );
}

function requireProgram(path: string): string {
  if (!existsSync(path)) throw new BenchError(`${path} is missing; build the C programs with: npm run build:c`);
  return path;
}

export function serverLabel(spec: ServerSpec): string {
  switch (spec.kind) {
    case "ts": {
      const unpacked = spec.extra?.includes("--no-packed-heap") ? " --no-packed-heap" : "";
      return `realfork serve${spec.prefork ? ` --prefork ${spec.prefork}` : ""}${unpacked}`;
    }
    case "c":
      return "C echo_mpserv_fixed";
    case "c-book":
      return "C echo_mpserv (the book's)";
    case "external":
      return `server at ${spec.host}:${spec.port}`;
    default:
      return peerLabel(spec.kind, spec.prefork ?? DEFAULT_WORKERS);
  }
}

/** Everything a child prints (on the streams that are piped), as it comes. */
function gather(child: ChildProcess): { out: () => string; err: () => string } {
  let out = "";
  let err = "";
  child.stdout?.setEncoding("utf8").on("data", (d: string) => {
    out += d;
  });
  child.stderr?.setEncoding("utf8").on("data", (d: string) => {
    err += d;
  });
  return { out: () => out, err: () => err };
}

/** Starts the server a spec names, on 127.0.0.1 and a port from the OS. */
export async function startServer(spec: ServerSpec): Promise<RunningServer> {
  const label = serverLabel(spec);
  if (spec.kind === "external") {
    return {
      spec,
      label,
      host: spec.host ?? "127.0.0.1",
      port: spec.port ?? 0,
      pid: null,
      stdout: () => "",
      stderr: () => "",
      stop: async () => {},
    };
  }
  let child: ChildProcess;
  // In this process's group: a Ctrl-C reaches the servers too, and each
  // stops as it does on SIGINT.
  const options: SpawnOptions = { stdio: ["ignore", spec.verbose ? "pipe" : "ignore", "pipe"] };
  if (spec.kind === "ts") {
    const args = ["serve", "0", "--host", "127.0.0.1", "--buffer-size", String(spec.bufferSize)];
    if (!spec.verbose) args.push("--quiet");
    if (spec.prefork) args.push("--prefork", String(spec.prefork));
    child = spawn(cliPath, [...args, ...(spec.extra ?? [])], options);
  } else if (spec.kind === "c") {
    child = spawn(requireProgram(cProgram("echo_mpserv_fixed")), ["0", String(spec.bufferSize)], options);
  } else if (isPeer(spec.kind)) {
    const missing = peerMissing(spec.kind);
    if (missing) throw new BenchError(`${label} cannot run here: ${missing}`);
    const [path, args] = peerCommand(spec.kind, 0, spec.bufferSize, spec.prefork ?? DEFAULT_WORKERS);
    child = spawn(path, args, options);
  } else {
    child = spawn(requireProgram(cProgram("echo_mpserv")), ["0"], options);
  }
  const { out, err } = gather(child);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  const pid = child.pid as number;
  const stop = async () => {
    if (gone) return;
    child.kill("SIGTERM");
    // A server that does not stop within 5 s is killed with all it forked.
    const timer = setTimeout(() => {
      for (const p of processTree(pid).reverse()) {
        try {
          process.kill(p, "SIGKILL");
        } catch {}
      }
    }, 5000);
    await exited;
    clearTimeout(timer);
  };
  for (let i = 0; i < 250; i++) {
    if (gone) throw new BenchError(`${label} ended at start: ${err().trim() || "no message"}`);
    const [port] = listeningPorts(pid);
    if (port) return { spec, label, host: "127.0.0.1", port, pid, stdout: out, stderr: err, stop };
    await sleep(20);
  }
  await stop();
  throw new BenchError(`${label} did not listen within 5 s`);
}

interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  out: string;
  err: string;
}

/** Runs a program to its end (killed after timeoutMs) and collects what it printed. */
function runProgram(path: string, args: string[], timeoutMs: number): Promise<Finished> {
  return new Promise((resolve) => {
    const child = spawn(path, args, { stdio: ["ignore", "pipe", "pipe"] });
    const { out, err } = gather(child);
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, out: out(), err: err() });
    });
  });
}

async function runLoadgen(args: string[], timeoutMs: number): Promise<Record<string, unknown>> {
  const r = await runProgram(requireProgram(cProgram("loadgen")), args, timeoutMs);
  try {
    return JSON.parse(r.out) as Record<string, unknown>;
  } catch {
    throw new BenchError(`loadgen ${args[0]} gave no result (${r.signal ?? `exit ${r.code}`}): ${r.err.trim()}`);
  }
}

/** Starts a server, runs `run` against it, and stops it whatever happens. */
export async function withServer<T>(spec: ServerSpec, run: (server: RunningServer) => Promise<T>): Promise<T> {
  const server = await startServer(spec);
  try {
    return await run(server);
  } finally {
    await server.stop();
  }
}

/** What went wrong in a short-connection run (failed or differing echoes), or null. */
export function shortProblem(r: ShortResult): string | null {
  if (r.failed === 0 && r.mismatched === 0) return null;
  return `${r.failed} of ${r.connections} short connections failed (first: ${r.firstError ?? "?"}), ${r.mismatched} echoes differed`;
}

/** What went wrong in a stream run (bytes missing or wrong), or null. */
export function streamProblem(r: StreamResult): string | null {
  if (r.received === r.bytes && r.mismatchedAt === null && !r.firstError) return null;
  const wrong = r.mismatchedAt !== null ? `, the first wrong one at ${r.mismatchedAt}` : "";
  return `the stream returned ${r.received} of ${r.bytes} bytes${wrong}${r.firstError ? ` (${r.firstError})` : ""}`;
}

/** COUNT connections, CONCURRENCY at a time: connect, send SIZE bytes, read them back, close. */
export async function runShort(
  server: RunningServer,
  connections: number,
  concurrency: number,
  size: number,
  timeoutS = 10,
): Promise<ShortResult> {
  const r = await runLoadgen(
    [
      "short",
      server.host,
      String(server.port),
      String(connections),
      String(concurrency),
      String(size),
      String(timeoutS),
    ],
    (timeoutS + 60) * 1000 + connections * 20,
  );
  const latency = r.latency_us as Percentiles;
  return {
    connections,
    concurrency,
    size,
    ok: r.ok as number,
    failed: r.failed as number,
    mismatched: r.mismatched as number,
    firstError: (r.first_error as string | null) ?? null,
    seconds: r.seconds as number,
    connsPerSec: r.conns_per_s as number,
    latencyUs: { p50: latency.p50, p99: latency.p99 },
  };
}

/** One connection: BYTES written in CHUNK-byte writes while being read back. */
export async function runStream(
  server: RunningServer,
  bytes: number,
  chunk: number,
  timeoutS = 30,
): Promise<StreamResult> {
  const r = await runLoadgen(
    ["stream", server.host, String(server.port), String(bytes), String(chunk), String(timeoutS)],
    (timeoutS + 60) * 1000,
  );
  return {
    bytes,
    chunk,
    received: r.received as number,
    mismatchedAt: (r.mismatched_at as number | null) ?? null,
    firstError: (r.first_error as string | null) ?? null,
    seconds: r.seconds as number,
    mibPerSec: r.mib_per_s as number,
  };
}

/** USER_HZ: /proc reports CPU times in these ticks, 100 a second on every Linux ABI. */
const TICKS_PER_MS = 0.1;

/** A count of the server's own, of its reaped children (summed by the kernel) and of its live children, by pid. */
interface Counter {
  parent: number;
  reaped: number;
  live: Map<number, number>;
}

/** CPU (utime + stime, cutime + cstime) and page faults (minflt, cminflt). */
interface CpuSample {
  cpu: Counter;
  faults: Counter;
}

/** utime, stime, cutime, cstime of a process in ticks (Linux /proc), or null when it is gone. */
export function statTimes(pid: number): number[] | null {
  const fields = statFields(pid);
  return fields === null ? null : [11, 12, 13, 14].map((i) => Number(fields[i]));
}

/** utime + stime, cutime + cstime, minflt and cminflt of a process, from one read of /proc/PID/stat. */
function statCounts(pid: number): [cpu: number, reapedCpu: number, faults: number, reapedFaults: number] | null {
  const fields = statFields(pid);
  if (fields === null) return null;
  const n = (i: number) => Number(fields[i]);
  return [n(11) + n(12), n(13) + n(14), n(7), n(8)];
}

/** VmPTE, the number of mappings and the 4 KiB anonymous memory of a process (Linux; null elsewhere). */
export function pageTablesOf(pid: number): PageTables | null {
  if (process.platform !== "linux") return null;
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const smaps = readFileSync(`/proc/${pid}/smaps`, "utf8");
    const sum = (name: string) =>
      [...smaps.matchAll(new RegExp(`^${name}:\\s+(\\d+) kB`, "gm"))].reduce((n, m) => n + Number(m[1]), 0);
    return {
      pageTablesKb: Number(/^VmPTE:\s+(\d+)/m.exec(status)?.[1] ?? 0),
      mappings: readFileSync(`/proc/${pid}/maps`, "utf8").split("\n").filter(Boolean).length,
      anon4kKb: sum("Anonymous") - sum("AnonHugePages"),
    };
  } catch {
    return null;
  }
}

function cpuSample(pid: number): CpuSample | null {
  if (process.platform !== "linux") return null;
  const own = statCounts(pid);
  if (!own) return null;
  const cpu: Counter = { parent: own[0], reaped: own[1], live: new Map() };
  const faults: Counter = { parent: own[2], reaped: own[3], live: new Map() };
  for (const child of processTree(pid)) {
    const counts = child === pid ? null : statCounts(child);
    if (counts === null) continue;
    cpu.live.set(child, counts[0]);
    faults.live.set(child, counts[2]);
  }
  return { cpu, faults };
}

/** What the children spent between two samples: the reaped ones' sum, and each live one's own. */
function childrenDelta(before: Counter, after: Counter): number {
  let delta = after.reaped - before.reaped;
  for (const [child, n] of after.live) delta += n - (before.live.get(child) ?? 0);
  return delta;
}

/**
 * Runs `work` (a load of `connections`) and returns the CPU it cost the
 * server per connection: the parent's own, and its children's (reaped ones
 * from cutime/cstime, workers that are still alive from their own times).
 */
export async function cpuPerConnection(
  server: RunningServer,
  connections: number,
  work: () => Promise<void>,
): Promise<CpuPerConnection | null> {
  const pid = server.pid;
  const before = pid === null ? null : cpuSample(pid);
  await work();
  if (pid === null || before === null) return null;
  // Children of a fork-per-connection server are reaped a moment after their client left.
  if (!server.spec.prefork) {
    for (let i = 0; i < 150 && processTree(pid).length > 1; i++) await sleep(20);
  }
  const after = cpuSample(pid);
  if (!after) return null;
  const msPerConnection = (ticks: number) => ticks / TICKS_PER_MS / connections;
  return {
    parent: msPerConnection(after.cpu.parent - before.cpu.parent),
    children: msPerConnection(childrenDelta(before.cpu, after.cpu)),
    faults: {
      parent: (after.faults.parent - before.faults.parent) / connections,
      children: childrenDelta(before.faults, after.faults) / connections,
    },
  };
}

/** Resident, proportional and unique memory of a process, as the kernel counts them. */
export function memoryOf(pid: number): MemoryUse | null {
  if (process.platform === "linux") {
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
    } catch {
      return null;
    }
    const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? 0);
    return {
      rssKb: field("Rss"),
      pssKb: field("Pss"),
      ussKb: field("Private_Clean") + field("Private_Dirty"),
    };
  }
  const ps = spawnSync("ps", ["-o", "rss=", "-p", String(pid)], { encoding: "utf8" });
  const rss = Number(ps.stdout.trim());
  return ps.status === 0 && Number.isFinite(rss) ? { rssKb: rss, pssKb: null, ussKb: null } : null;
}

/**
 * What a process's private memory is made of (Linux, /proc/PID/smaps):
 * anonymous mappings (the V8 heap, the largest part), the malloc heap, the
 * stack, and written pages of mapped files (relocated data of node and libs).
 */
export function privateBreakdown(pid: number): Record<string, number> | null {
  if (process.platform !== "linux") return null;
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/smaps`, "utf8");
  } catch {
    return null;
  }
  const out: Record<string, number> = { anonymous: 0, "malloc heap": 0, stack: 0, "file-backed": 0 };
  let kind = "anonymous";
  for (const line of text.split("\n")) {
    const header = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (header) {
      const name = header[1] ?? "";
      kind =
        name === "[heap]"
          ? "malloc heap"
          : name === "[stack]"
            ? "stack"
            : name.startsWith("/")
              ? "file-backed"
              : "anonymous";
      continue;
    }
    const m = /^Private_(?:Clean|Dirty):\s+(\d+) kB/.exec(line);
    if (m) out[kind] = (out[kind] ?? 0) + Number(m[1]);
  }
  return out;
}

/** Opens `count` connections and waits until each has echoed one byte (its child is then running). */
async function holdConnections(server: RunningServer, count: number): Promise<Socket[]> {
  const open = (): Promise<Socket> =>
    new Promise((resolve, reject) => {
      const s = connect(server.port, server.host, () => s.write("x"));
      s.once("data", () => resolve(s));
      s.once("error", reject);
      s.setTimeout(5000, () => reject(new BenchError("no echo within 5 s while measuring memory")));
    });
  const sockets: Socket[] = [];
  try {
    for (let i = 0; i < count; i++) sockets.push(await open());
  } catch (err) {
    for (const s of sockets) s.destroy();
    throw err;
  }
  return sockets;
}

/** The servers that report their fork() latencies on SIGUSR2 (to the others it is fatal). */
const REPORTS_FORKS: readonly ServerKind[] = ["ts", "c", "c-prefork"];

/** Asks the server for its fork() latencies (SIGUSR2); null if it does not answer. */
export async function forkLatencies(server: RunningServer): Promise<number[] | null> {
  if (server.pid === null || !REPORTS_FORKS.includes(server.spec.kind)) return null;
  const before = server.stderr().length;
  process.kill(server.pid, "SIGUSR2");
  for (let i = 0; i < 100; i++) {
    const m = /fork-us:([ \d]*)\n/.exec(server.stderr().slice(before));
    if (m) return (m[1] ?? "").trim().split(/\s+/).filter(Boolean).map(Number);
    await sleep(20);
  }
  return null;
}

/**
 * The cost of fork for this server: the parent's fork() latencies and RSS,
 * and each child's memory while `hold` connections are open. Call it after
 * a load has run (the latencies are those of that load).
 */
export async function measureForkCost(
  server: RunningServer,
  idle: { rssKb: number | null; tables: PageTables | null },
  hold = 4,
): Promise<ForkCost> {
  if (server.pid === null) return { parentLatencyUs: null, parentRss: null, parentTables: null, child: null };
  const latencies = await forkLatencies(server);
  const loaded = memoryOf(server.pid);
  // A --prefork worker serves one connection at a time: hold no more than there are workers.
  const sockets = await holdConnections(server, server.spec.prefork ? Math.min(hold, server.spec.prefork) : hold);
  try {
    const children = processTree(server.pid).filter((pid) => pid !== server.pid);
    const mems = children.map(memoryOf).filter((m): m is MemoryUse => m !== null);
    const mid = (pick: (m: MemoryUse) => number | null) => {
      const values = mems.map(pick).filter((v): v is number => v !== null);
      return values.length > 0 ? median(values) : null;
    };
    const sorted = latencies ? [...latencies].sort((a, b) => a - b) : null;
    return {
      parentLatencyUs: sorted
        ? { p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), forks: sorted.length }
        : null,
      parentRss: idle.rssKb !== null && loaded ? { idleKb: idle.rssKb, loadedKb: loaded.rssKb } : null,
      parentTables: idle.tables,
      child:
        mems.length > 0
          ? {
              measured: mems.length,
              rssKb: mid((m) => m.rssKb) ?? 0,
              pssKb: mid((m) => m.pssKb),
              ussKb: mid((m) => m.ussKb),
              privateKb: children[0] === undefined ? null : privateBreakdown(children[0]),
            }
          : null,
    };
  } finally {
    for (const s of sockets) s.destroy();
  }
}

export interface ShortMeasurement {
  short: ShortResult;
  cpu: CpuPerConnection | null;
  cost: ForkCost;
}

/**
 * The short-connection measurement as bench and compare take it: a warm-up
 * (its forks not counted), then the load with the CPU it cost, then what
 * fork costs this server (latencies of that load, RSS, children's memory).
 */
export async function measureShort(
  server: RunningServer,
  connections: number,
  concurrency: number,
  size: number,
): Promise<ShortMeasurement> {
  await runShort(server, Math.min(200, connections), concurrency, size);
  await forkLatencies(server);
  const idle = {
    rssKb: server.pid === null ? null : (memoryOf(server.pid)?.rssKb ?? null),
    tables: server.pid === null ? null : pageTablesOf(server.pid),
  };
  let short: ShortResult | undefined;
  const cpu = await cpuPerConnection(server, connections, async () => {
    short = await runShort(server, connections, concurrency, size);
  });
  return { short: short as ShortResult, cpu, cost: await measureForkCost(server, idle) };
}

/**
 * The floor under a fork-per-connection server: fork(), the child calls
 * _exit(0) at once, the parent waits. For "ts" in a fresh realfork process
 * (`realfork bench --workload fork`, realfork's own fork with its pre-fork
 * pass and child guards), for "c" in c/build/forkloop.
 */
export async function forkFloor(kind: "ts" | "c", iterations: number): Promise<FloorResult> {
  const [path, args] =
    kind === "c"
      ? [requireProgram(cProgram("forkloop")), [String(iterations)]]
      : [cliPath, ["bench", "--workload", "fork", "--forks", String(iterations), "--json"]];
  const r = await runProgram(path, args, 300_000);
  if (r.code !== 0) throw new BenchError(`the fork loop failed: ${r.err.trim() || `exit ${r.code}`}`);
  if (kind === "ts") return (JSON.parse(r.out) as { fork: FloorResult }).fork;
  const j = JSON.parse(r.out) as { iterations: number; seconds: number; per_s: number; fork_us: Percentiles };
  return { iterations: j.iterations, seconds: j.seconds, perSec: j.per_s, forkUs: j.fork_us };
}

/** The fork floor loop, in this process (which must have been started with --single-threaded). */
export function forkLoop(iterations: number): FloorResult {
  const times: number[] = [];
  const start = performance.now();
  for (let i = 0; i < iterations; i++) {
    const t0 = performance.now();
    const pid = fork();
    if (pid === 0) _exit(0);
    times.push((performance.now() - t0) * 1000);
    waitpid(pid);
  }
  const seconds = (performance.now() - start) / 1000;
  times.sort((a, b) => a - b);
  return {
    iterations,
    seconds,
    perSec: iterations / seconds,
    forkUs: { p50: percentile(times, 0.5), p99: percentile(times, 0.99) },
  };
}

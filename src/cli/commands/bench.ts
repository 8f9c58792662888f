import { cpus, type as osType, release } from "node:os";
import { parseArgs } from "node:util";
import {
  type CpuPerConnection,
  type FloorResult,
  type ForkCost,
  forkFloor,
  forkLoop,
  measureShort,
  type RunningServer,
  runStream,
  type ServerSpec,
  type ShortResult,
  type StreamResult,
  shortProblem,
  streamProblem,
  withServer,
} from "../../bench/bench.js";
import { DEFAULT_WORKERS, isPeer, isPreforkPeer, PEERS } from "../../bench/peers.js";
import { table } from "../../inspect/fdview.js";
import { native } from "../../lib/native.js";
import { warn } from "../../lib/output.js";
import * as posix from "../../lib/posix.js";
import { ipFamily } from "../../lib/validate.js";
import { intOption, parse, positionals, UsageError } from "./usage.js";

export const BENCH_USAGE = `Usage: realfork bench [options]

Drives one echo server on loopback with the C load generator (c/build/loadgen,
threads, every echoed byte checked) and reports:
  short    connections per second: connect, send --size bytes, read them back, close
  stream   MiB/s through one connection, --stream-buffer bytes per read and write
  fork     the floor: fork() + _exit() + waitpid() in a loop, no server (in this
           Node process for --server ts, c/build/forkloop for --server c)
With short, also what fork costs: fork() latency in the parent (p50/p99, from
the server's SIGUSR2 report), the parent's RSS, and each child's memory while
connections are open (USS, PSS and what the private part is made of; Linux).

Options
  --server S           ts (realfork serve, default), c (c/echo_mpserv_fixed),
                       c-book (c/echo_mpserv), a peer, or HOST:PORT of a running server
                       Peers (shipped in peers/ and c/; loopback only):
                         python        Python socketserver.ForkingTCPServer
                         perl-fork     Perl Net::Server::Fork (libnet-server-perl)
                         perl-prefork  Perl Net::Server::PreFork, --prefork workers
                         c-prefork     C echo_preforkserv: workers blocking in accept()
                       REALFORK_PYTHON and REALFORK_PERL name other interpreters
  --prefork N          with --server ts: realfork serve --prefork N; with
                       perl-prefork or c-prefork: N workers (default ${DEFAULT_WORKERS})
  --no-packed-heap     with --server ts: realfork serve --no-packed-heap (Linux: V8's
                       pages at a random address each, see realfork serve --help)
  --workload LIST      short,stream,fork in any combination (default short,stream)
  --connections N      short: how many (default 2000)
  --concurrency N      short: how many at once (default 16)
  --size N             short: bytes sent on each (default 30)
  --buffer-size N      short: the server's buffer (default 30, the book's BUF_SIZE)
  --stream-bytes N     stream: bytes in all (default 1073741824, 1 GiB)
  --stream-buffer N    stream: the server's buffer and the write size (default 65536)
  --forks N            fork: iterations (default 1000)
  --json               one JSON object instead of the table
  -h, --help           this text

Examples
  $ realfork bench
  $ realfork bench --server c --workload short --connections 5000
  $ realfork bench --server ts --prefork 8 --json
  $ realfork bench --server python --workload short
  $ realfork bench --server ts --no-packed-heap --workload short
  $ realfork bench --server c-prefork --prefork 4 --workload short
  $ realfork bench --server 127.0.0.1:9190 --workload stream
  $ realfork bench --workload fork --forks 2000`;

const options = {
  server: { type: "string" },
  prefork: { type: "string" },
  "no-packed-heap": { type: "boolean" },
  workload: { type: "string" },
  connections: { type: "string" },
  concurrency: { type: "string" },
  size: { type: "string" },
  "buffer-size": { type: "string" },
  "stream-bytes": { type: "string" },
  "stream-buffer": { type: "string" },
  forks: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

const WORKLOADS = ["short", "stream", "fork"] as const;
type Workload = (typeof WORKLOADS)[number];

/** The options each workload reads: given without it, they would do nothing. */
const PER_WORKLOAD: Record<Workload, readonly (keyof typeof options)[]> = {
  short: ["connections", "concurrency", "size", "buffer-size"],
  stream: ["stream-bytes", "stream-buffer"],
  fork: ["forks"],
};

export interface BenchReport {
  machine: string;
  server: string;
  short?: ShortResult & { forkCost: ForkCost; cpuMsPerConnection: CpuPerConnection | null };
  stream?: StreamResult & { bufferSize: number };
  fork?: FloorResult;
}

export function machineLine(): string {
  return `${osType()} ${release()} ${process.arch}, ${cpus().length} CPUs, node ${process.version}`;
}

const PREFORK_WITH = "--prefork goes with --server ts, perl-prefork or c-prefork";

function serverSpec(text: string, prefork: number, unpackedHeap: boolean): ServerSpec {
  if (unpackedHeap && text !== "ts") throw new UsageError("--no-packed-heap goes with --server ts", BENCH_USAGE);
  if (unpackedHeap)
    return { kind: "ts", bufferSize: 30, extra: ["--no-packed-heap"], ...(prefork > 0 ? { prefork } : {}) };
  const takesWorkers = text === "ts" || (isPeer(text) && isPreforkPeer(text));
  if (prefork > 0 && !takesWorkers) throw new UsageError(PREFORK_WITH, BENCH_USAGE);
  if (isPeer(text)) {
    const workers = isPreforkPeer(text) ? { prefork: prefork || DEFAULT_WORKERS } : {};
    return { kind: text, bufferSize: 30, ...workers };
  }
  if (text === "ts" || text === "c" || text === "c-book") {
    return { kind: text, bufferSize: 30, ...(prefork > 0 ? { prefork } : {}) };
  }
  const m = /^(\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]):(\d+)$/.exec(text);
  const port = Number(m?.[2]);
  if (!m || port < 1 || port > 65535)
    throw new UsageError(
      `--server must be ts, c, c-book, ${PEERS.join(", ")} or a numeric HOST:PORT, not '${text}'`,
      BENCH_USAGE,
    );
  return { kind: "external", bufferSize: 0, host: (m[1] ?? "").replace(/^\[|\]$/g, ""), port };
}

export async function benchCommand(argv: string[]): Promise<void> {
  const { values, positionals: pos } = parse(BENCH_USAGE, () =>
    parseArgs({ args: argv, options, allowPositionals: true, strict: true }),
  );
  if (values.help) {
    process.stdout.write(`${BENCH_USAGE}\n`);
    return;
  }
  positionals(pos, [], BENCH_USAGE);
  const int = (name: keyof typeof values, fallback: number, min: number, max: number) =>
    intOption(`--${name}`, values[name] as string | undefined, fallback, min, max, BENCH_USAGE);
  const spec = serverSpec(values.server ?? "ts", int("prefork", 0, 1, 4096), values["no-packed-heap"] ?? false);
  const workloads = (values.workload ?? "short,stream").split(",");
  for (const w of workloads) {
    if (!(WORKLOADS as readonly string[]).includes(w))
      throw new UsageError(`--workload takes short, stream and fork, not '${w}'`, BENCH_USAGE);
  }
  const wants = (w: Workload) => workloads.includes(w);
  if (wants("fork") && spec.kind !== "ts" && spec.kind !== "c")
    throw new UsageError("--workload fork needs --server ts or c", BENCH_USAGE);
  if (wants("fork") && values["no-packed-heap"])
    throw new UsageError(
      "--no-packed-heap is realfork serve's: --workload fork runs in bench's own process",
      BENCH_USAGE,
    );
  for (const w of WORKLOADS) {
    const given = PER_WORKLOAD[w].find((name) => values[name] !== undefined);
    if (!wants(w) && given)
      throw new UsageError(
        `--${given} is for the ${w} workload, which --workload ${workloads.join(",")} leaves out`,
        BENCH_USAGE,
      );
  }
  if (values["buffer-size"] !== undefined && (spec.kind === "external" || spec.kind === "c-book"))
    throw new UsageError(
      `--buffer-size sets the buffer of the server bench starts; ${spec.kind === "c-book" ? "c-book has the book's BUF_SIZE, 30" : "a HOST:PORT server is not started by bench"}`,
      BENCH_USAGE,
    );
  const connections = int("connections", 2000, 1, 10_000_000);
  const concurrency = int("concurrency", 16, 1, 4096);
  const size = int("size", 30, 1, 64 << 20);
  const bufferSize = int("buffer-size", 30, 1, 16 << 20);
  const streamBytes = int("stream-bytes", 1 << 30, 1, 2 ** 40);
  const streamBuffer = int("stream-buffer", 65536, 1, 16 << 20);
  const forks = int("forks", 1000, 1, 1_000_000);
  // A server bench does not start must be there: a refused connection is one
  // line (as client says it) and exit 1, not a table of zeros.
  if (spec.kind === "external") reach(spec.host ?? "", spec.port ?? 0);

  const report: BenchReport = { machine: machineLine(), server: "" };
  const stopping: (() => Promise<void>)[] = [];
  const onSignal = () => {
    for (const stop of stopping) void stop();
    process.exitCode = 130;
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    // The fork floor first, while this process is as small as a fresh server.
    if (wants("fork")) {
      report.server = spec.kind === "c" ? "C (c/build/forkloop)" : "realfork (this process)";
      report.fork = spec.kind === "c" ? await forkFloor("c", forks) : forkLoop(forks);
    }
    const started = (server: RunningServer) => {
      stopping.push(server.stop);
      report.server = server.label;
    };
    if (wants("short")) {
      const m = await withServer({ ...spec, bufferSize }, (server) => {
        started(server);
        return measureShort(server, connections, concurrency, size);
      });
      report.short = { ...m.short, cpuMsPerConnection: m.cpu, forkCost: m.cost };
    }
    if (wants("stream")) {
      const r = await withServer({ ...spec, bufferSize: streamBuffer }, (server) => {
        started(server);
        return runStream(server, streamBytes, streamBuffer);
      });
      report.stream = { ...r, bufferSize: streamBuffer };
    }
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
  process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : renderBench(report));
  const problems = benchProblems(report);
  for (const p of problems) warn(`realfork bench: ${p}`);
  if (problems.length > 0) process.exitCode = 1;
}

/** One connection to HOST:PORT, closed at once; throws the SyscallError of connect() when refused. */
function reach(host: string, port: number): void {
  const { AF_INET, AF_INET6, SOCK_STREAM } = native.constants;
  const fd = posix.socket(ipFamily(host) === 6 ? AF_INET6 : AF_INET, SOCK_STREAM);
  try {
    posix.connect(fd, host, port);
  } finally {
    posix.close(fd);
  }
}

/** What went wrong in a run: failed or wrong echoes. */
export function benchProblems(r: BenchReport): string[] {
  const problems = [r.short ? shortProblem(r.short) : null, r.stream ? streamProblem(r.stream) : null];
  return problems.filter((p): p is string => p !== null);
}

const kb = (n: number | null | undefined) =>
  n === null || n === undefined ? "n/a" : n < 1024 ? `${n} kB` : `${(n / 1024).toFixed(1)} MB`;
const us = (n: number) => (n >= 1000 ? `${(n / 1000).toFixed(2)} ms` : `${n.toFixed(0)} us`);

export function renderBench(r: BenchReport): string {
  const rows: string[][] = [["WORKLOAD", "RESULT"]];
  if (r.short) {
    const s = r.short;
    rows.push([
      `short: ${s.connections} x ${s.size} B, ${s.concurrency} at a time`,
      `${s.connsPerSec.toFixed(0)} conn/s, latency p50 ${us(s.latencyUs.p50)} p99 ${us(s.latencyUs.p99)}, ${s.ok} echoes exact`,
    ]);
    const cpu = s.cpuMsPerConnection;
    rows.push([
      "CPU per connection",
      cpu ? `parent ${cpu.parent.toFixed(3)} ms, children ${cpu.children.toFixed(3)} ms` : "n/a (Linux /proc only)",
    ]);
    if (cpu)
      rows.push([
        "page faults per connection",
        `parent ${cpu.faults.parent.toFixed(1)}, children ${cpu.faults.children.toFixed(1)}`,
      ]);
    const c = s.forkCost;
    rows.push([
      "fork() in the parent",
      !c.parentLatencyUs
        ? "not reported by this server"
        : c.parentLatencyUs.forks === 0
          ? "none during the load (the workers were forked at start)"
          : `p50 ${us(c.parentLatencyUs.p50)}, p99 ${us(c.parentLatencyUs.p99)} (${c.parentLatencyUs.forks} forks)`,
    ]);
    if (c.parentTables)
      rows.push([
        "what fork() copies (idle parent)",
        `page tables ${kb(c.parentTables.pageTablesKb)}, ${c.parentTables.mappings} mappings, ${kb(c.parentTables.anon4kKb)} in 4 KiB anonymous pages`,
      ]);
    rows.push([
      "parent RSS",
      c.parentRss ? `${kb(c.parentRss.idleKb)} idle, ${kb(c.parentRss.loadedKb)} after the load` : "n/a",
    ]);
    if (c.child) {
      rows.push([
        `each child (median of ${c.child.measured})`,
        `private (USS) ${kb(c.child.ussKb)}, PSS ${kb(c.child.pssKb)}, RSS ${kb(c.child.rssKb)}`,
      ]);
      if (c.child.privateKb)
        rows.push([
          "  its private memory",
          Object.entries(c.child.privateKb)
            .map(([what, n]) => `${what} ${n} kB`)
            .join(", "),
        ]);
    } else {
      rows.push(["each child", "n/a"]);
    }
  }
  if (r.stream) {
    const s = r.stream;
    rows.push([
      `stream: ${(s.bytes / 1048576).toFixed(0)} MiB, buffer ${s.bufferSize}`,
      `${s.mibPerSec.toFixed(1)} MiB/s, ${s.received === s.bytes && s.mismatchedAt === null ? "every byte exact" : "BYTES LOST OR WRONG"}`,
    ]);
  }
  if (r.fork) {
    rows.push([
      `fork floor: ${r.fork.iterations} x fork+_exit+waitpid`,
      `${r.fork.perSec.toFixed(0)} /s, fork() p50 ${us(r.fork.forkUs.p50)} p99 ${us(r.fork.forkUs.p99)}`,
    ]);
  }
  return `realfork bench: ${r.server} (${r.machine})\n\n${table(rows).join("\n")}\n`;
}

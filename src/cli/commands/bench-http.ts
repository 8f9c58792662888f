import { parseArgs } from "node:util";
import { benchHttp, type HttpServerKind, type HttpSide } from "../../bench/http.js";
import { table } from "../../inspect/fdview.js";
import { machineLine } from "./bench.js";
import { intOption, parse, positionals, UsageError } from "./usage.js";

export const BENCH_HTTP_USAGE = `Usage: realfork bench-http [options]

Forked http workers (examples/http-prefork/server.mjs: the parent loads a
table, fork({ eventLoop: true }) workers answer from it) against node:cluster
(cluster.mjs: same handler, every worker loads the table itself), same Node
flags, one after the other in one run, on loopback. Reports requests/s with
one connection per request and with keep-alive (every answer checked), each
worker's private memory (USS) idle and after the load, the parent's, and the
time from fork to listening. Linux.

Options
  --workers N          workers per server (default 4)
  --requests N         requests per mode (default 5000)
  --concurrency N      requests at once (default 16)
  --rows N             table rows, ~60 bytes each (default 500000)
  --semi-space MB      --max-semi-space-size for both servers (default: V8's)
  --servers LIST       fork,cluster-rr,cluster-none (default all three)
  --json               one JSON object instead of the table
  -h, --help           this text

Examples
  $ realfork bench-http
  $ realfork bench-http --semi-space 1 --requests 20000
  $ realfork bench-http --servers fork,cluster-rr --workers 2 --json`;

const options = {
  workers: { type: "string" },
  requests: { type: "string" },
  concurrency: { type: "string" },
  rows: { type: "string" },
  "semi-space": { type: "string" },
  servers: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

const KINDS: readonly HttpServerKind[] = ["fork", "cluster-rr", "cluster-none"];

export async function benchHttpCommand(argv: string[]): Promise<void> {
  const { values, positionals: pos } = parse(BENCH_HTTP_USAGE, () =>
    parseArgs({ args: argv, options, allowPositionals: true, strict: true }),
  );
  if (values.help) {
    process.stdout.write(`${BENCH_HTTP_USAGE}\n`);
    return;
  }
  positionals(pos, [], BENCH_HTTP_USAGE);
  const int = (name: keyof typeof values, fallback: number, min: number, max: number) =>
    intOption(`--${name}`, values[name] as string | undefined, fallback, min, max, BENCH_HTTP_USAGE);
  const kinds = (values.servers ?? KINDS.join(",")).split(",") as HttpServerKind[];
  for (const k of kinds) {
    if (!KINDS.includes(k)) throw new UsageError(`--servers takes ${KINDS.join(", ")}, not '${k}'`, BENCH_HTTP_USAGE);
  }
  if (process.platform !== "linux") throw new UsageError("bench-http runs on Linux only", BENCH_HTTP_USAGE);
  const semi = values["semi-space"] === undefined ? null : int("semi-space", 0, 1, 1024);
  const o = {
    workers: int("workers", 4, 1, 64),
    requests: int("requests", 5000, 1, 1_000_000),
    concurrency: int("concurrency", 16, 1, 1024),
    rows: int("rows", 500_000, 1, 20_000_000),
    nodeFlags: semi === null ? [] : [`--max-semi-space-size=${semi}`],
    kinds,
  };
  const sides = await benchHttp(o);
  const errors = sides.reduce((n, s) => n + s.errors, 0);
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ machine: machineLine(), options: o, sides }, null, 2)}\n`);
  } else {
    process.stdout.write(`${render(machineLine(), o, sides).join("\n")}\n`);
  }
  if (errors > 0) {
    process.stderr.write(`realfork: bench-http: ${errors} wrong or failed answers\n`);
    process.exitCode = 1;
  }
}

const mb = (kb: number | null) => (kb === null || Number.isNaN(kb) ? "?" : (kb / 1024).toFixed(1));
const range = (xs: number[], f: (x: number) => string) =>
  xs.length === 0 ? "?" : `${f(Math.min(...xs))}-${f(Math.max(...xs))}`;

function render(
  machine: string,
  o: { workers: number; requests: number; concurrency: number; rows: number; nodeFlags: string[] },
  sides: HttpSide[],
): string[] {
  const rows = [
    ["figure", ...sides.map((s) => s.kind)],
    ["req/s, one connection each", ...sides.map((s) => s.rpsClose.toFixed(0))],
    ["req/s, keep-alive", ...sides.map((s) => s.rpsKeepAlive.toFixed(0))],
    ["worker USS idle (MB)", ...sides.map((s) => range(s.idleUssKb, mb))],
    ["worker USS after load (MB)", ...sides.map((s) => range(s.loadedUssKb, mb))],
    ["parent USS (MB)", ...sides.map((s) => mb(s.parentUssKb))],
    ["fork to listening (ms)", ...sides.map((s) => range(s.forkToListenMs, (x) => x.toFixed(0)))],
    ["wrong or failed answers", ...sides.map((s) => `${s.errors}`)],
  ];
  return [
    machine,
    `${o.workers} workers, ${o.rows} rows, ${o.requests} requests per mode, ${o.concurrency} at a time, node --single-threaded ${o.nodeFlags.join(" ")}`.trimEnd(),
    "",
    ...table(rows),
  ];
}

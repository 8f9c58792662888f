import { parseArgs } from "node:util";
import { type CompareResult, type Figure, type PeerRow, runCompare } from "../../bench/compare.js";
import { DEFAULT_WORKERS, PEERS } from "../../bench/peers.js";
import { table } from "../../inspect/fdview.js";
import { warn } from "../../lib/output.js";
import { machineLine } from "./bench.js";
import { intOption, parse, positionals, UsageError } from "./usage.js";

export const COMPARE_USAGE = `Usage: realfork compare [options]

The C reference (c/echo_mpserv_fixed) and realfork serve in one run.

Behaviour first: each server is taken through the same story (a client held
open, a second one echoing 64 KiB of every byte value and half-closing, then
the first one closing), and compared on the book's messages, the TCP
descriptors held by parent and child (read from the kernel), the echoed bytes,
and what is left afterwards.

Then speed, interleaved (C, TS, C, TS, ...) for --rounds rounds, with the same
buffer sizes and workloads (see realfork bench): the medians, and TS/C as the
median of each round's ratio (the two ran back to back, so the machine's
drift cancels).

With --peers, the peers run in the same rounds and go through the same
behaviour story: Python's socketserver.ForkingTCPServer and Perl's
Net::Server::Fork next to the fork-per-connection servers, a C prefork server
(c/echo_preforkserv) and Perl's Net::Server::PreFork next to realfork serve
--prefork N (N = --prefork, default ${DEFAULT_WORKERS}). Their behaviour is shown, not
judged; a table gives each server's short-connection figures and realfork's
ratio to it. A peer whose runtime or module is missing is skipped with a line
that says how to install it (REALFORK_PYTHON and REALFORK_PERL name other
interpreters).

Exit 0 when the behaviour matches and every echo was exact; 1 otherwise, with
the differences (speed is then not measured).

Options
  --rounds N           rounds of each measurement (default 7)
  --connections N      short: connections per round (default 2000)
  --concurrency N      short: at once (default 16)
  --size N             short: bytes sent on each (default 30)
  --buffer-size N      short: both servers' buffer (default 30)
  --stream-bytes N     stream: bytes per round (default 1073741824, 1 GiB)
  --stream-buffer N    stream: both servers' buffer and the write size (default 65536)
  --forks N            iterations of the fork floor loop (default 1000; 0 skips it)
  --prefork N          also measure realfork serve --prefork N on short connections
  --prefork-connections N
                       short: connections per round of the prefork servers (default
                       10 x --connections: they serve ~20 times faster, and a round of
                       2000 would last ~100 ms, which one scheduler hiccup moves by 10%)
  --peers              also run the peers (${PEERS.join(", ")})
  --no-packed-heap     also realfork serve --no-packed-heap in the same rounds (short
                       connections; Linux), a row of the table with its own ratio
                       column: what serve's default packed heap gains
  --leak-parent        negative control: realfork serve --leak-parent (behaviour must differ)
  --leak-child         negative control: realfork serve --leak-child (behaviour must differ)
  --json               one JSON object instead of the tables
  -h, --help           this text

Examples
  $ realfork compare
  $ realfork compare --rounds 5 --prefork 8
  $ realfork compare --rounds 1 --connections 300 --stream-bytes 16777216 --json
  $ realfork compare --peers
  $ realfork compare --peers --no-packed-heap
  $ realfork compare --leak-parent`;

const options = {
  rounds: { type: "string" },
  connections: { type: "string" },
  concurrency: { type: "string" },
  size: { type: "string" },
  "buffer-size": { type: "string" },
  "stream-bytes": { type: "string" },
  "stream-buffer": { type: "string" },
  forks: { type: "string" },
  prefork: { type: "string" },
  "prefork-connections": { type: "string" },
  peers: { type: "boolean" },
  "no-packed-heap": { type: "boolean" },
  "leak-parent": { type: "boolean" },
  "leak-child": { type: "boolean" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

export async function compareCommand(argv: string[]): Promise<void> {
  const { values, positionals: pos } = parse(COMPARE_USAGE, () =>
    parseArgs({ args: argv, options, allowPositionals: true, strict: true }),
  );
  if (values.help) {
    process.stdout.write(`${COMPARE_USAGE}\n`);
    return;
  }
  positionals(pos, [], COMPARE_USAGE);
  const int = (name: keyof typeof values, fallback: number, min: number, max: number) =>
    intOption(`--${name}`, values[name] as string | undefined, fallback, min, max, COMPARE_USAGE);
  const connections = int("connections", 2000, 1, 10_000_000);
  const prefork = int("prefork", values.peers ? DEFAULT_WORKERS : 0, 1, 4096);
  if (values["prefork-connections"] !== undefined && prefork === 0)
    throw new UsageError(
      "--prefork-connections is for the prefork servers, and neither --prefork nor --peers is given",
      COMPARE_USAGE,
    );
  const result = await runCompare({
    rounds: int("rounds", 7, 1, 100),
    connections,
    concurrency: int("concurrency", 16, 1, 4096),
    size: int("size", 30, 1, 64 << 20),
    bufferSize: int("buffer-size", 30, 1, 16 << 20),
    streamBytes: int("stream-bytes", 1 << 30, 1, 2 ** 40),
    streamBuffer: int("stream-buffer", 65536, 1, 16 << 20),
    forks: int("forks", 1000, 0, 1_000_000),
    prefork,
    preforkConnections: int("prefork-connections", Math.min(10 * connections, 10_000_000), 1, 10_000_000),
    peers: values.peers ? [...PEERS] : [],
    unpackedHeap: values["no-packed-heap"] ?? false,
    extra: [...(values["leak-parent"] ? ["--leak-parent"] : []), ...(values["leak-child"] ? ["--leak-child"] : [])],
    ...(values.json ? {} : { onProgress: (line: string) => warn(`realfork compare: ${line}`) }),
  });
  process.stdout.write(
    values.json ? `${JSON.stringify({ machine: machineLine(), ...result }, null, 2)}\n` : renderCompare(result),
  );
  for (const b of result.behaviour.filter((x) => !x.same))
    warn(`realfork compare: behaviour differs: ${b.what}: C ${b.c}; realfork ${b.ts}`);
  for (const f of result.failures) warn(`realfork compare: ${f}`);
  for (const s of result.peers?.skipped ?? []) warn(`realfork compare: skipped ${s.server}: ${s.reason}`);
  if (!result.behaviourMatches || result.failures.length > 0) process.exitCode = 1;
}

function number(n: number | null, unit: string): string {
  if (n === null) return "n/a";
  const digits = n >= 100 ? 0 : n >= 10 ? 1 : 2;
  return `${n.toFixed(digits)} ${unit}`;
}

function ratio(f: Figure): string {
  if (f.ratio === null) return "";
  return `${f.ratio.toFixed(2)}x`;
}

export function renderCompare(r: CompareResult): string {
  const peerNames = Object.keys(r.behaviour[0]?.peers ?? {});
  const behaviour = table([
    ["BEHAVIOUR", "C echo_mpserv_fixed", "realfork serve", "SAME", ...peerNames],
    ...r.behaviour.map((b) => [
      b.what,
      b.c,
      b.ts,
      b.same ? "yes" : "NO",
      ...peerNames.map((p) => b.peers?.[p as keyof typeof b.peers] ?? ""),
    ]),
  ]);
  const skipped = (r.peers?.skipped ?? []).map((s) => `skipped ${s.server}: ${s.reason}\n`).join("");
  if (r.figures.length === 0)
    return `realfork compare (${machineLine()})\n\n${behaviour.join("\n")}\n\nSpeed not measured: the behaviour differs.\n${skipped}`;
  const rounds = r.figures[0]?.c.length ?? 0;
  const figures = table([
    ["FIGURE", `C (median of ${rounds})`, "realfork", "TS/C"],
    ...r.figures.map((f) => [f.what, number(f.cMedian, f.unit), number(f.tsMedian, f.unit), ratio(f)]),
  ]);
  const peers = r.peers ? `\n${renderPeers(r.peers.rows, rounds).join("\n")}\n${skipped}` : "";
  return `realfork compare (${machineLine()})\n\n${behaviour.join("\n")}\n\n${figures.join("\n")}\n${peers}`;
}

/** The peer table: one row per server, grouped, with realfork's ratio to each. */
function renderPeers(rows: PeerRow[], rounds: number): string[] {
  const lines: string[][] = [
    [
      "SHORT CONNECTIONS",
      `conn/s (median of ${rounds})`,
      "range",
      "latency p50",
      "CPU/conn",
      "child USS",
      "realfork/it",
    ],
  ];
  const unpacked = rows.some((p) => p.unpackedRatio !== undefined);
  if (unpacked) lines[0]?.push("unpacked/it");
  let group = "";
  for (const p of rows) {
    if (p.group !== group) {
      group = p.group;
      lines.push([`${group}, ${p.connections} a round:`, "", "", "", "", "", "", ...(unpacked ? [""] : [])]);
    }
    lines.push([
      `  ${p.label}`,
      p.median.toFixed(0),
      `${Math.min(...p.connsPerSec).toFixed(0)}-${Math.max(...p.connsPerSec).toFixed(0)}`,
      number(p.latencyP50Us, "us"),
      number(p.cpuMs, "ms"),
      number(p.childUssKb, "kB"),
      p.realforkRatio === null ? "" : `${p.realforkRatio.toFixed(2)}x`,
      ...(unpacked ? [p.unpackedRatio == null ? "" : `${p.unpackedRatio.toFixed(2)}x`] : []),
    ]);
  }
  return table(lines);
}

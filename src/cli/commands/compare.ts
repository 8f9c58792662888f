import { parseArgs } from "node:util";
import { type CompareResult, type Figure, runCompare } from "../../bench/compare.js";
import { table } from "../../inspect/fdview.js";
import { warn } from "../../lib/output.js";
import { machineLine } from "./bench.js";
import { intOption, parse, positionals } from "./usage.js";

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
  --leak-parent        negative control: realfork serve --leak-parent (behaviour must differ)
  --leak-child         negative control: realfork serve --leak-child (behaviour must differ)
  --json               one JSON object instead of the tables
  -h, --help           this text

Examples
  $ realfork compare
  $ realfork compare --rounds 5 --prefork 8
  $ realfork compare --rounds 1 --connections 300 --stream-bytes 16777216 --json
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
  const result = await runCompare({
    rounds: int("rounds", 7, 1, 100),
    connections: int("connections", 2000, 1, 10_000_000),
    concurrency: int("concurrency", 16, 1, 4096),
    size: int("size", 30, 1, 64 << 20),
    bufferSize: int("buffer-size", 30, 1, 16 << 20),
    streamBytes: int("stream-bytes", 1 << 30, 1, 2 ** 40),
    streamBuffer: int("stream-buffer", 65536, 1, 16 << 20),
    forks: int("forks", 1000, 0, 1_000_000),
    prefork: int("prefork", 0, 1, 4096),
    extra: [...(values["leak-parent"] ? ["--leak-parent"] : []), ...(values["leak-child"] ? ["--leak-child"] : [])],
    ...(values.json ? {} : { onProgress: (line: string) => warn(`realfork compare: ${line}`) }),
  });
  process.stdout.write(
    values.json ? `${JSON.stringify({ machine: machineLine(), ...result }, null, 2)}\n` : renderCompare(result),
  );
  for (const b of result.behaviour.filter((x) => !x.same))
    warn(`realfork compare: behaviour differs: ${b.what}: C ${b.c}; realfork ${b.ts}`);
  for (const f of result.failures) warn(`realfork compare: ${f}`);
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
  const behaviour = table([
    ["BEHAVIOUR", "C echo_mpserv_fixed", "realfork serve", "SAME"],
    ...r.behaviour.map((b) => [b.what, b.c, b.ts, b.same ? "yes" : "NO"]),
  ]);
  if (r.figures.length === 0)
    return `realfork compare (${machineLine()})\n\n${behaviour.join("\n")}\n\nSpeed not measured: the behaviour differs.\n`;
  const rounds = r.figures[0]?.c.length ?? 0;
  const figures = table([
    ["FIGURE", `C (median of ${rounds})`, "realfork", "TS/C"],
    ...r.figures.map((f) => [f.what, number(f.cMedian, f.unit), number(f.tsMedian, f.unit), ratio(f)]),
  ]);
  return `realfork compare (${machineLine()})\n\n${behaviour.join("\n")}\n\n${figures.join("\n")}\n`;
}

import { createServer } from "node:net";
import { describe, expect, it } from "vitest";
import type { CompareResult } from "../src/bench/compare.js";
import type { BenchReport } from "../src/cli/commands/bench.js";
import { runCli } from "./helpers/cli.js";
import { useLeftoverCheck } from "./helpers/processes.js";
import { startServe, stop } from "./helpers/servers.js";

useLeftoverCheck();

const run = <T = BenchReport>(args: string[], timeoutMs = 60_000) => runCli<T>(args, { timeoutMs });

const short = ["--connections", "150", "--concurrency", "4"];
const small = [...short, "--stream-bytes", "2097152"];

describe("realfork bench", () => {
  it.each(["ts", "c"])("--server %s: short and stream, every byte checked, and the cost of fork", async (server) => {
    const r = await run(["bench", "--server", server, ...small, "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const { short, stream } = r.json as Required<BenchReport>;
    expect(short).toMatchObject({ connections: 150, ok: 150, failed: 0, mismatched: 0 });
    expect(short.connsPerSec).toBeGreaterThan(0);
    expect(short.latencyUs.p99).toBeGreaterThanOrEqual(short.latencyUs.p50);
    // One fork per connection of the measured run; the warm-up's are not counted.
    const { parentLatencyUs, parentRss, child } = short.forkCost;
    expect(parentLatencyUs?.forks).toBe(150);
    expect(parentLatencyUs?.p50).toBeGreaterThan(0);
    expect(parentRss?.loadedKb).toBeGreaterThan(0);
    expect(child?.measured).toBe(4);
    if (process.platform === "linux") {
      if (server === "ts") {
        // Read from /proc: a Node parent's fork alone is tenths of a millisecond.
        expect(short.cpuMsPerConnection?.parent).toBeGreaterThan(0);
        expect(short.cpuMsPerConnection?.children).toBeGreaterThan(0);
      }
      // Counts, which load does not move: every child faults in some pages; the parent has page tables.
      expect(short.cpuMsPerConnection?.faults.children).toBeGreaterThan(10);
      expect(short.forkCost.parentTables?.pageTablesKb).toBeGreaterThan(0);
      expect(short.forkCost.parentTables?.mappings).toBeGreaterThan(10);
      expect(short.forkCost.parentTables?.anon4kKb).toBeGreaterThan(0);
      expect(child?.ussKb).toBeGreaterThan(0);
      expect(child?.pssKb).toBeGreaterThanOrEqual(child?.ussKb ?? Number.POSITIVE_INFINITY);
      expect(Object.keys(child?.privateKb ?? {})).toEqual(["anonymous", "malloc heap", "stack", "file-backed"]);
    }
    expect(stream).toMatchObject({
      bytes: 2097152,
      received: 2097152,
      mismatchedAt: null,
      firstError: null,
      bufferSize: 65536,
    });
  });

  it("prints a readable table by default", async () => {
    const r = await run(["bench", "--server", "c", ...small]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^realfork bench: C echo_mpserv_fixed \(/);
    expect(r.stdout).toMatch(/short: 150 x 30 B, 4 at a time +\d+ conn\/s, latency p50 .* 150 echoes exact/);
    expect(r.stdout).toMatch(/fork\(\) in the parent +p50 .*\(150 forks\)/);
    if (process.platform === "linux") {
      expect(r.stdout).toMatch(/page faults per connection +parent [\d.]+, children [\d.]+\n/);
      expect(r.stdout).toMatch(
        /what fork\(\) copies \(idle parent\) +page tables \d+ kB, \d+ mappings, [\d.]+ (kB|MB) in 4 KiB/,
      );
    }
    expect(r.stdout).toMatch(/stream: 2 MiB, buffer 65536 +[\d.]+ MiB\/s, every byte exact/);
  });

  it("drives --prefork workers, and the book's server (which cannot report fork times)", async () => {
    const pre = await run(["bench", "--server", "ts", "--prefork", "2", "--workload", "short", ...short, "--json"]);
    expect(pre.code, pre.stderr).toBe(0);
    expect(pre.json?.server).toBe("realfork serve --prefork 2");
    expect(pre.json?.short).toMatchObject({ ok: 150, failed: 0 });
    expect(pre.json?.short?.forkCost.parentLatencyUs?.forks).toBe(0);
    const book = await run(["bench", "--server", "c-book", "--workload", "short", ...short, "--json"]);
    expect(book.code, book.stderr).toBe(0);
    expect(book.json?.short).toMatchObject({ ok: 150, failed: 0, mismatched: 0 });
    expect(book.json?.short?.forkCost.parentLatencyUs).toBeNull();
  });

  it("measures an external server without signalling it", async () => {
    const server = await startServe(["--quiet"]);
    const r = await run(["bench", "--server", `127.0.0.1:${server.port}`, ...small, "--json"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json?.short).toMatchObject({ ok: 150, failed: 0 });
    expect(r.json?.short?.forkCost).toEqual({
      parentLatencyUs: null,
      parentRss: null,
      parentTables: null,
      child: null,
    });
    expect(server.proc.stderr()).not.toContain("fork-us");
    expect(await stop(server)).toEqual({ code: 0, signal: null });
  });

  it.each(["ts", "c"])("--workload fork --server %s: the fork+_exit+waitpid floor", async (server) => {
    const r = await run(["bench", "--server", server, "--workload", "fork", "--forks", "40", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json?.fork).toMatchObject({ iterations: 40 });
    expect(r.json?.fork?.perSec).toBeGreaterThan(0);
    expect(r.json?.fork?.forkUs.p99).toBeGreaterThanOrEqual(r.json?.fork?.forkUs.p50 ?? Number.POSITIVE_INFINITY);
  });

  it("reports a closed port in one line, exit 1, and leaves nothing running", async () => {
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
    const { port } = probe.address() as { port: number };
    await new Promise((r) => probe.close(r));
    const r = await run(["bench", "--server", `127.0.0.1:${port}`, "--workload", "short", ...short]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      "realfork: connect: ECONNREFUSED: connection refused (is the server running on that port?)\n",
    );
    expect(r.stdout).toBe("");
  });

  it.each([
    [
      ["--server", "nginx"],
      "--server must be ts, c, c-book, python, perl-fork, perl-prefork, c-prefork or a numeric HOST:PORT, not 'nginx'",
    ],
    [["--server", "127.0.0.1:0"], "or a numeric HOST:PORT, not '127.0.0.1:0'"],
    [["--server", "Python"], "not 'Python'"],
    [["--workload", "short,long"], "--workload takes short, stream and fork, not 'long'"],
    [["--server", "c", "--prefork", "2"], "--prefork goes with --server ts, perl-prefork or c-prefork"],
    [["--server", "python", "--prefork", "2"], "--prefork goes with --server ts, perl-prefork or c-prefork"],
    [["--server", "perl-fork", "--workload", "fork"], "--workload fork needs --server ts or c"],
    [["--server", "c-book", "--workload", "fork"], "--workload fork needs --server ts or c"],
    [["--server", "c", "--no-packed-heap"], "--no-packed-heap goes with --server ts"],
    [
      ["--no-packed-heap", "--workload", "fork"],
      "--no-packed-heap is realfork serve's: --workload fork runs in bench's own process",
    ],
    [["--connections", "0"], "--connections must be a whole number from 1"],
    [["extra"], "unexpected argument 'extra'"],
    [["--workload", "short", "--forks", "10"], "--forks is for the fork workload, which --workload short leaves out"],
    [
      ["--workload", "fork", "--connections", "10"],
      "--connections is for the short workload, which --workload fork leaves out",
    ],
    [
      ["--stream-bytes", "10", "--workload", "short,fork"],
      "--stream-bytes is for the stream workload, which --workload short,fork leaves out",
    ],
    [
      ["--server", "c-book", "--buffer-size", "64"],
      "--buffer-size sets the buffer of the server bench starts; c-book has the book's BUF_SIZE, 30",
    ],
    [["--server", "127.0.0.1:9", "--buffer-size", "64"], "a HOST:PORT server is not started by bench"],
  ])("bench %j: one line on stderr, exit 2", async (args, message) => {
    const r = await run(["bench", ...args]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(message);
    expect(r.stderr).toContain("(see realfork bench --help)\n");
    expect(r.stderr.split("\n")).toHaveLength(2);
  });
});

describe("realfork compare", () => {
  it("finds the same behaviour and gives every figure with a ratio", async () => {
    const r = await run<CompareResult>(
      ["compare", "--rounds", "1", ...small, "--forks", "20", "--prefork", "2", "--json"],
      120_000,
    );
    expect(r.code, r.stderr).toBe(0);
    const result = r.json as CompareResult;
    expect(result.behaviourMatches).toBe(true);
    expect(result.failures).toEqual([]);
    expect(result.behaviour.map((b) => b.what)).toContain("connected socket held by");
    for (const b of result.behaviour) expect(b.c).toBe(b.ts);
    const byName = Object.fromEntries(result.figures.map((f) => [f.what, f]));
    const short = byName["short connections, 30 B, 4 at a time, buffer 30"];
    expect(short?.c).toHaveLength(1);
    // One round: the median of the per-round ratios is that round's ratio.
    expect(short?.ratio).toBeCloseTo((short?.ts[0] ?? 0) / (short?.c[0] ?? 1), 6);
    expect(byName["stream, buffer 65536"]?.ratio).toBeGreaterThan(0);
    expect(byName["fork() in the parent, p50"]?.ratio).toBeGreaterThan(0);
    expect(byName["floor: fork+_exit+waitpid loop"]?.ratio).toBeGreaterThan(0);
    expect(Object.keys(byName).some((k) => k.startsWith("--prefork 2:"))).toBe(true);
  });

  it.each([
    ["--leak-parent", "parent holds (one client)", "LISTEN", "ESTABLISHED, LISTEN"],
    ["--leak-child", "listening socket held by", "parent", "child, parent"],
  ])("%s: the behaviour differs, exit 1, and says where", async (flag, what, c, ts) => {
    const r = await run(["compare", "--rounds", "1", ...small, flag]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`behaviour differs: ${what}: C ${c}; realfork ${ts}`);
    expect(r.stdout).toContain("Speed not measured: the behaviour differs.");
  });

  it("rejects wrong usage with exit 2", async () => {
    const r = await run(["compare", "--rounds", "0"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--rounds must be a whole number from 1 to 100, not '0'");
  });
});

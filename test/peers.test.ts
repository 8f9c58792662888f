import { describe, expect, it } from "vitest";
import type { CompareResult } from "../src/bench/compare.js";
import { PEERS, type PeerKind, peerCommand } from "../src/bench/peers.js";
import type { BenchReport } from "../src/cli/commands/bench.js";
import { listeningPorts, processTree } from "../src/inspect/fdtable.js";
import { runCli } from "./helpers/cli.js";
import { sleep, spawnTracked, useLeftoverCheck } from "./helpers/processes.js";
import { NET_SERVER, type Need, PYTHON, requires } from "./helpers/requires.js";
import { echo } from "./helpers/servers.js";

useLeftoverCheck();

const run = <T = BenchReport>(args: string[], env = process.env, timeoutMs = 60_000) =>
  runCli<T>(args, { env, timeoutMs });

/** A peer program started as bench starts it, on a port the OS picks; its port read from the kernel. */
async function startPeer(kind: PeerKind, bufferSize: number, workers = 2) {
  const [path, args] = peerCommand(kind, 0, bufferSize, workers);
  const proc = spawnTracked(path, args);
  for (let i = 0; i < 250; i++) {
    const [port] = listeningPorts(proc.pid);
    if (port) return { proc, port };
    await sleep(20);
  }
  throw new Error(`${kind} did not listen; stderr: ${proc.stderr()}`);
}

const shortOnly = ["--connections", "150", "--concurrency", "4"];
const small = [...shortOnly, "--stream-bytes", "2097152"];
/** What a peer needs beyond Node and the C programs. */
const needs = (kind: PeerKind): Need[] => (kind === "python" ? [PYTHON] : kind.startsWith("perl-") ? [NET_SERVER] : []);

const missingRuntimes = { ...process.env, REALFORK_PYTHON: "/nonexistent/python3", REALFORK_PERL: "/nonexistent/perl" };

describe("the peer servers", () => {
  it.for(PEERS)("%s echoes every byte value, with the buffer it is given, and stops on SIGTERM", async (kind, ctx) => {
    requires(ctx, ...needs(kind));
    const { proc, port } = await startPeer(kind, 7);
    const payload = Buffer.from(Array.from({ length: 65536 }, (_, i) => (i * 7) % 256));
    const [a, b] = await Promise.all([echo(port, payload), echo(port, Buffer.from("hello\n"))]);
    expect(a.equals(payload)).toBe(true);
    expect(b.toString()).toBe("hello\n");
    // A prefork peer keeps its 2 workers; a per-connection one has reaped its children.
    const workers = kind === "perl-prefork" || kind === "c-prefork" ? 2 : 0;
    for (let i = 0; i < 100 && processTree(proc.pid).length !== workers + 1; i++) await sleep(20);
    expect(processTree(proc.pid)).toHaveLength(workers + 1);
    proc.child.kill("SIGTERM");
    expect(await proc.exited(10_000)).toEqual({ code: 0, signal: null });
  });

  it.for(PEERS)("%s rejects a bad buffer size with exit 1", async (kind, ctx) => {
    requires(ctx, ...needs(kind));
    const [path, args] = peerCommand(kind, 0, 0, 2);
    const p = spawnTracked(path, args);
    expect(await p.exited(10_000)).toEqual({ code: 1, signal: null });
    expect(p.stderr()).toContain("buffer_size must be from 1 to 67108864");
  });
});

describe("bench --server PEER", () => {
  it.for([
    ["python", 0],
    ["perl-fork", 0],
    ["perl-prefork", 2],
    ["c-prefork", 2],
  ] as const)("%s: short connections, every echo exact, the children's memory read", async ([server, workers], ctx) => {
    requires(ctx, ...needs(server));
    const r = await run([
      "bench",
      "--server",
      server,
      ...(workers ? ["--prefork", String(workers)] : []),
      "--workload",
      "short",
      ...shortOnly,
      "--json",
    ]);
    expect(r.code, r.stderr).toBe(0);
    const short = r.json?.short;
    expect(short).toMatchObject({ connections: 150, ok: 150, failed: 0, mismatched: 0 });
    // A prefork peer serves with its workers; a per-connection peer forks a child per connection.
    expect(short?.forkCost.child?.measured).toBe(workers || 4);
    // Only the C prefork server reports fork() latencies (SIGUSR2); to Python and Perl it would be fatal.
    expect(short?.forkCost.parentLatencyUs?.forks ?? null).toBe(server === "c-prefork" ? 0 : null);
    if (process.platform === "linux") expect(short?.forkCost.child?.ussKb).toBeGreaterThan(0);
  });

  it("a peer whose runtime is missing: one line saying how to install it, exit 1, nothing left", async () => {
    const r = await run(["bench", "--server", "python", "--workload", "short", ...shortOnly], missingRuntimes);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe(
      "realfork: Python socketserver.ForkingTCPServer cannot run here: /nonexistent/python3 not found (set REALFORK_PYTHON to another one, or install Python 3 (Debian: apt-get install python3))",
    );
  });

  it("a runtime without the module: says which module and how to install it", async () => {
    // node as the Perl: a runtime on which -MNet::Server::Fork does not load.
    const r = await run(["bench", "--server", "perl-fork", "--workload", "short", ...shortOnly], {
      ...process.env,
      REALFORK_PERL: process.execPath,
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      `realfork: Perl Net::Server::Fork cannot run here: ${process.execPath} -MNet::Server::Fork -e1 failed: `,
    );
    expect(r.stderr.startsWith("realfork: ")).toBe(true);
    expect(r.stderr).toContain(
      "install Net::Server (Debian: apt-get install libnet-server-perl; elsewhere: cpan Net::Server)",
    );
  });
});

describe("compare --peers", () => {
  it("runs every peer next to C and realfork: behaviour from the kernel, medians and ratios", async (ctx) => {
    requires(ctx, PYTHON, NET_SERVER);
    const r = await run<CompareResult>(
      ["compare", "--peers", "--rounds", "1", ...small, "--forks", "20", "--prefork", "2", "--json"],
      process.env,
      240_000,
    );
    expect(r.code, r.stderr).toBe(0);
    const result = r.json as CompareResult;
    expect(result.behaviourMatches).toBe(true);
    expect(result.failures).toEqual([]);
    expect(result.peers?.skipped).toEqual([]);
    const row = (what: string) => result.behaviour.find((b) => b.what === what)?.peers;
    // Prefork workers hold the listener by design. The per-connection peers'
    // children keep it too: Python's ForkingMixIn never closes it in the
    // child, and Net::Server::Fork drops its own reference but its IO::Select
    // set keeps the handle open. Net::Server also dups the connection onto
    // the child's stdin and stdout.
    expect(row("listening socket held by")).toEqual({
      python: "child, parent",
      "perl-fork": "child, parent",
      "perl-prefork": "child x2, parent",
      "c-prefork": "child x2, parent",
    });
    expect(row("connected socket held by")).toEqual({
      python: "child",
      "perl-fork": "child x3",
      "perl-prefork": "child x3",
      "c-prefork": "child",
    });
    expect(row("children left after the clients end")).toEqual({
      python: "0",
      "perl-fork": "0",
      "perl-prefork": "2",
      "c-prefork": "2",
    });
    for (const peer of PEERS) {
      expect(row("64 KiB of all byte values echoed exactly")?.[peer]).toBe("true");
      expect(row("server closes after the client half-closes")?.[peer]).toBe("true");
      expect(row("parent holds afterwards")?.[peer]).toBe("LISTEN");
      if (process.platform === "linux") expect(row("zombies among them")?.[peer]).toBe("0");
    }
    const rows = result.peers?.rows ?? [];
    expect(rows.map((p) => [p.group, p.server])).toEqual([
      ["fork per connection", "c"],
      ["fork per connection", "ts"],
      ["fork per connection", "python"],
      ["fork per connection", "perl-fork"],
      ["prefork", "ts --prefork"],
      ["prefork", "perl-prefork"],
      ["prefork", "c-prefork"],
    ]);
    const ts = rows.find((p) => p.server === "ts");
    const tsPrefork = rows.find((p) => p.server === "ts --prefork");
    for (const p of rows) {
      // Prefork servers serve ~20x faster: ten times the connections a round by default.
      expect(p.connections).toBe(p.group === "prefork" ? 1500 : 150);
      expect(p.connsPerSec).toHaveLength(1);
      expect(p.median).toBeGreaterThan(0);
      // One round: realfork's ratio is that round's realfork figure over this one's, in its group.
      const realfork = p.group === "prefork" ? tsPrefork : ts;
      if (p === realfork) expect(p.realforkRatio).toBeNull();
      else expect(p.realforkRatio).toBeCloseTo((realfork?.median ?? 0) / p.median, 6);
    }
  });

  it("skips the peers whose runtime is missing, with a line each, and runs the others", async () => {
    const r = await run(["compare", "--peers", "--rounds", "1", ...small, "--forks", "0"], missingRuntimes, 240_000);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(
      "realfork compare: skipped python: /nonexistent/python3 not found (set REALFORK_PYTHON to another one, or install Python 3 (Debian: apt-get install python3))",
    );
    for (const peer of ["perl-fork", "perl-prefork"])
      expect(r.stderr).toContain(
        `realfork compare: skipped ${peer}: /nonexistent/perl not found (set REALFORK_PERL to another one, or install Perl (Debian: apt-get install perl))`,
      );
    expect(r.stdout).toMatch(/^fork per connection, 150 a round:$/m);
    expect(r.stdout).toMatch(/^prefork, 1500 a round:$/m);
    expect(r.stdout).toMatch(/^ {2}C echo_preforkserv, 4 workers +\d+/m);
    expect(r.stdout).not.toContain("Python socketserver");
    expect(r.stdout).toMatch(/^skipped perl-fork: /m);
  });
});

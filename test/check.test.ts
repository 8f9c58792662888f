import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it, type TestContext } from "vitest";
import type { CheckReport } from "../src/inspect/check.js";
import { judgeSnapshot } from "../src/inspect/check.js";
import { snapshot } from "../src/inspect/fdtable.js";
import type { FindingKind } from "../src/inspect/findings.js";
import { cli, fixture } from "./helpers/paths.js";
import { ps, sleep, spawnCliAsUser, spawnTracked, useLeftoverCheck } from "./helpers/processes.js";
import { PYTHON, requires } from "./helpers/requires.js";
import {
  childrenGone,
  childrenOf,
  echo,
  open,
  openServed,
  type Server,
  startC,
  startServe,
  stop,
} from "./helpers/servers.js";

useLeftoverCheck();

async function check(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = spawnTracked(cli, ["check", ...args]);
  const { code } = await p.exited(30_000);
  return { code, stdout: p.stdout(), stderr: p.stderr() };
}

async function checkJson(args: string[]): Promise<{ code: number | null; report: CheckReport }> {
  const { code, stdout, stderr } = await check(["--json", ...args]);
  expect(stderr).toBe("");
  return { code, report: JSON.parse(stdout) as CheckReport };
}

const kinds = (r: CheckReport): FindingKind[] => r.findings.map((f) => f.kind).sort();
const finding = (r: CheckReport, kind: FindingKind) => r.findings.find((f) => f.kind === kind);

/** test/fixtures/servers/leaky.py in one of its modes (a forking server with one mistake); skips the test without Python. */
async function startPy(ctx: TestContext, mode: string, ...args: string[]): Promise<Server> {
  requires(ctx, PYTHON);
  const proc = spawnTracked(PYTHON.probe[0], [fixture("servers/leaky.py"), mode, ...args]);
  const m = await proc.waitFor(/listening (\d+)/);
  return { proc, port: Number(m[1]), pid: proc.pid };
}

describe("realfork check: usage and targets", () => {
  it.each([
    [[], /missing <pid>/],
    [["abc"], /<pid> must be a process id/],
    [["1", "2"], /unexpected argument '2'/],
    [["--port", "0"], /<port> must be a number from 1/],
    [["1", "--probe", "x"], /--probe must be a whole number from 0 to 64/],
    [["1", "--timeout", "0"], /--timeout must be a duration from 1ms to 600s/],
    [["1", "--timeout", "500"], /--timeout needs a unit: 500s or 500ms/],
  ])("check %j is a usage error (exit 2)", async (args, message) => {
    const r = await check(args);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).toContain("(see realfork check --help)\n");
  });

  it("says so when there is no such process or nothing on the port (exit 2)", async () => {
    const gone = spawnTracked("true", []);
    await gone.exited();
    const r = await check([String(gone.pid)]);
    expect(r).toMatchObject({ code: 2, stdout: "" });
    expect(r.stderr).toBe(`realfork check: no process ${gone.pid}\n`);
    const server = await startServe();
    await stop(server);
    const p = await check(["--port", String(server.port)]);
    expect(p.code).toBe(2);
    expect(p.stderr).toBe(`realfork check: nothing listens on TCP port ${server.port}\n`);
  });

  it("says so when it may not read the server's descriptors (exit 2)", async () => {
    if (process.getuid?.() !== 0) return; // the unprivileged run needs root to drop to nobody
    const server = await startServe();
    for (const args of [[String(server.pid)], ["--port", String(server.port)]]) {
      const p = spawnCliAsUser(cli, ["check", ...args]);
      expect((await p.exited()).code).toBe(2);
      expect(p.stderr()).toMatch(/^realfork check: not permitted: .*(can be read only by its user or root)/);
    }
    await stop(server);
  });

  it("explains in --help how it tells a prefork pool from a leak", async () => {
    const r = await check(["--help"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("asleep in accept() on the");
    expect(r.stdout).toContain("holds the listener and no connection at two looks in a row");
  });
});

describe("realfork check: realfork serve", () => {
  it("finds nothing in the correct server, with live connections and after probes", async () => {
    const server = await startServe();
    const clients = [await openServed(server.port), await openServed(server.port)];
    await childrenOf(server.pid, 2);
    const live = await checkJson([String(server.pid)]);
    expect(live.code).toBe(0);
    expect(live.report).toMatchObject({ root: server.pid, processes: 3, findings: [], pool: null, exited: null });
    expect(live.report.needsProbes).toEqual(["descriptor-growth", "orphaned-listener"]);
    const probed = await checkJson(["--port", String(server.port), "--probe", "3"]);
    expect(probed.code).toBe(0);
    expect(probed.report.findings).toEqual([]);
    expect(probed.report.probes).toHaveLength(3);
    for (const p of probed.report.probes) expect(p).toMatchObject({ echoed: true, closedByServer: true, error: null });
    const text = await check([String(server.pid), "--probe", "2"]);
    expect(text.code).toBe(0);
    expect(text.stdout).toBe(
      `realfork check: no findings in pid ${server.pid} (node, with 2 descendants), listening on 127.0.0.1:${server.port}, after 2 probes (2 answered, 2 closed by the server)\n`,
    );
    for (const c of clients) c.end();
    await stop(server);
  });

  it("--leak-parent: the acceptor keeps each probe's socket, in CLOSE_WAIT, and its descriptors grow", async () => {
    const server = await startServe(["--leak-parent"]);
    const { code, report } = await checkJson([String(server.pid), "--probe", "3", "--timeout", "1s"]);
    expect(code).toBe(1);
    expect(kinds(report)).toEqual(["close-wait", "connection-in-parent", "descriptor-growth"]);
    const probePorts = report.probes.map((p) => p.local).sort();
    for (const kind of ["connection-in-parent", "close-wait", "descriptor-growth"] as const) {
      const f = finding(report, kind);
      expect(f?.evidence.every((e) => e.pid === server.pid)).toBe(true);
      expect(f?.evidence.map((e) => e.remote).sort()).toEqual(probePorts);
    }
    // The evidence is what the kernel's table says now: those descriptors, those sockets.
    const now = snapshot(server.pid);
    for (const e of finding(report, "close-wait")?.evidence ?? []) {
      const s = now.sockets.find((x) => x.inode === e.inode);
      expect(s).toMatchObject({ state: "CLOSE_WAIT", holders: [{ pid: server.pid, fd: e.fd }] });
    }
    expect(report.probes.every((p) => p.echoed && !p.closedByServer)).toBe(true);
    await stop(server);
  });

  it("--leak-child: each per-connection child holds the listener", async () => {
    const server = await startServe(["--leak-child"]);
    const { code, report } = await checkJson([String(server.pid), "--probe", "2"]);
    expect(code).toBe(1);
    expect(kinds(report)).toEqual(["listener-in-child"]);
    const f = finding(report, "listener-in-child");
    const listener = report.listeners[0];
    expect(f?.evidence).toHaveLength(2);
    for (const e of f?.evidence ?? []) {
      expect(e).toMatchObject({ inode: listener?.inode, state: "LISTEN", local: `127.0.0.1:${server.port}` });
      expect(e.pid).not.toBe(server.pid);
    }
    expect(f?.fix).toContain("close(serv_sock)");
    await stop(server);
  });

  it("--leak-child with a live client and no probes: found in the snapshot; judgeSnapshot agrees", async () => {
    const server = await startServe(["--leak-child"]);
    const client = await openServed(server.port);
    const [child] = await childrenOf(server.pid, 1);
    const { code, report } = await checkJson([String(server.pid)]);
    expect(code).toBe(1);
    expect(finding(report, "listener-in-child")?.evidence.map((e) => e.pid)).toEqual([child]);
    const judged = judgeSnapshot(snapshot(server.pid));
    expect(judged.findings.map((f) => [f.kind, f.evidence.map((e) => e.pid)])).toEqual([
      ["listener-in-child", [child]],
    ]);
    client.end();
    await stop(server);
  });

  it("--prefork: the workers hold the listener by design, asleep in accept(): not a leak", async () => {
    const server = await startServe(["--prefork", "2"]);
    const workers = await childrenOf(server.pid, 2);
    const { code, report } = await checkJson([String(server.pid), "--probe", "3"]);
    expect(code).toBe(0);
    expect(report.findings).toEqual([]);
    expect(report.pool?.workers).toEqual(workers);
    if (process.platform === "linux") expect(report.pool?.how).toContain("asleep in accept() on the listener");
    await stop(server);
  });
});

describe("realfork check: correct servers under load", () => {
  // Every mistake check looks for, a correct server passes through for an
  // instant under load (a parent holding a connection until its close(), a
  // child holding the listener until its close(), a zombie until reaped):
  // only what two looks in a row show counts.
  it.each(["ts", "c"] as const)("finds nothing in the correct %s server while a steady load runs", async (kind) => {
    const server = kind === "ts" ? await startServe(["--quiet"]) : await startC();
    const load = steadyLoad(server.port);
    for (let i = 0; i < 500 && load.done < 20; i++) await sleep(20);
    const before = load.done;
    const { code, report } = await checkJson([String(server.pid), "--probe", "2"]);
    expect(load.done, "the load ran throughout the check").toBeGreaterThan(before);
    expect(report.findings, JSON.stringify(report.findings)).toEqual([]);
    expect(code).toBe(0);
    expect(await load.stop()).toMatchObject({ wrong: 0 });
    await childrenGone(server.pid, 30_000);
    await stop(server);
  });
});

/**
 * Echoed connections one after another on `lanes` lanes, with a short pause
 * between them, until stop(): a few hundred a second, enough to keep a
 * forking server passing through its transient states. (loadgen at full
 * speed leaves ~100k sockets in TIME_WAIT, and the kernel then takes seconds
 * to print /proc/net/tcp for every look of check and of later tests.)
 */
function steadyLoad(port: number, lanes = 4, pauseMs = 5) {
  let running = true;
  let done = 0;
  let wrong = 0;
  const lane = async () => {
    while (running) {
      const data = Buffer.from(`load ${done}\n`);
      try {
        if ((await echo(port, data)).equals(data)) done++;
        else wrong++;
      } catch {
        wrong++;
      }
      await sleep(pauseMs);
    }
  };
  const all = Promise.all(Array.from({ length: lanes }, lane));
  return {
    get done() {
      return done;
    },
    async stop() {
      running = false;
      await all;
      return { done, wrong };
    },
  };
}

describe("realfork check: other servers", () => {
  it("finds nothing in the fixed C server", async () => {
    const server = await startC("echo_mpserv_fixed");
    const { code, report } = await checkJson(["--port", String(server.port), "--probe", "3"]);
    expect(code).toBe(0);
    expect(report).toMatchObject({ root: server.pid, findings: [], pool: null });
    await stop(server);
  });

  it.for(["pool", "poll-pool"])(
    "finds nothing in a Python %s of workers (told apart without being told)",
    async (mode, ctx) => {
      const server = await startPy(ctx, mode, "3");
      const workers = await childrenOf(server.pid, 3);
      const { code, report } = await checkJson(["--port", String(server.port), "--probe", "4"]);
      expect(code).toBe(0);
      expect(report.findings).toEqual([]);
      expect(report.pool?.workers).toEqual(workers);
      // select() is not accept(): those workers are known by outliving their connections.
      expect(report.pool?.how).toContain("held the listener and no connection at two looks");
      await stop(server);
    },
  );

  it("zombie: children that exited and were never waited for", async (ctx) => {
    const server = await startPy(ctx, "zombie");
    const { code, report } = await checkJson([String(server.pid), "--probe", "3"]);
    expect(code).toBe(1);
    expect(kinds(report)).toEqual(["zombie"]);
    const pids = finding(report, "zombie")?.evidence.map((e) => e.pid) ?? [];
    expect(pids).toHaveLength(3);
    const zombies = ps().filter((p) => p.ppid === server.pid && p.stat.startsWith("Z"));
    expect(zombies.map((z) => z.pid).sort()).toEqual([...pids].sort());
    expect(finding(report, "zombie")?.message).toMatch(/zombies for at least \d+\.\d s/);
    await stop(server);
  });

  it("close-wait: children that read EOF and never close", async (ctx) => {
    const server = await startPy(ctx, "stuck-child");
    const { code, report } = await checkJson([String(server.pid), "--probe", "2", "--timeout", "500ms"]);
    expect(code).toBe(1);
    expect(kinds(report)).toEqual(["close-wait", "close-wait"]);
    for (const f of report.findings) {
      expect(f.evidence).toHaveLength(1);
      expect(f.evidence[0]?.pid).not.toBe(server.pid);
      expect(f.fix).toBe("close(clnt_sock) when read() returns 0 (EOF)");
    }
    await stop(server);
  });

  it("connection-in-sibling: children inherit the connections the parent kept", async (ctx) => {
    const server = await startPy(ctx, "leak-parent");
    const { code, report } = await checkJson([String(server.pid), "--probe", "3", "--timeout", "1s"]);
    expect(code).toBe(1);
    expect(kinds(report)).toEqual(["close-wait", "connection-in-parent", "connection-in-sibling", "descriptor-growth"]);
    const sibling = finding(report, "connection-in-sibling");
    const parent = finding(report, "connection-in-parent");
    // Every connection a sibling holds is one the parent kept, held by more than one child.
    const kept = new Set(parent?.evidence.map((e) => e.inode));
    expect(sibling?.evidence.every((e) => kept.has(e.inode) && e.pid !== server.pid)).toBe(true);
    expect(new Set(sibling?.evidence.map((e) => e.pid)).size).toBeGreaterThanOrEqual(2);
    await stop(server);
  });

  it("descriptor-growth: a pipe kept per connection, with no socket leaked", async (ctx) => {
    const server = await startPy(ctx, "leak-pipe");
    const { code, report } = await checkJson([String(server.pid), "--probe", "2"]);
    expect(code).toBe(1);
    expect(kinds(report)).toEqual(["descriptor-growth"]);
    const evidence = finding(report, "descriptor-growth")?.evidence ?? [];
    expect(evidence).toHaveLength(4);
    for (const e of evidence) expect(e.target).toMatch(/^pipe:\[\d+\]$/);
    await stop(server);
  });

  it("a silent server does not hang check: no answer, no close; could not judge (exit 2), not a pass", async (ctx) => {
    const server = await startPy(ctx, "silent");
    const { code, report } = await checkJson([String(server.pid), "--probe", "2", "--timeout", "300ms"]);
    for (const p of report.probes) expect(p).toMatchObject({ connected: true, echoed: false, closedByServer: false });
    // It accepted them (it holds them), so someone accepts; what it does with them is not known within 300 ms.
    expect(report.findings).toEqual([]);
    expect(report.notJudged).toHaveLength(1);
    expect(report.notJudged[0]).toMatch(
      /^none of the 2 probes was answered or closed by the server within --timeout 300ms/,
    );
    expect(code).toBe(2);
    await stop(server);
  });

  it("a server that exits during the check is reported, not a crash", async (ctx) => {
    const server = await startPy(ctx, "exit");
    const r = await check([String(server.pid), "--probe", "2", "--timeout", "500ms"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe("");
    expect(r.stdout).toContain(`the server (pid ${server.pid}) exited during the probes`);
    await server.proc.exited();
  });
});

/** test/fixtures/servers/holders.py in one of its modes (TCP, or Unix with a path). */
async function startHolders(
  ctx: TestContext,
  mode: string,
  unixPath?: string,
): Promise<Server & { helper: number | null }> {
  requires(ctx, PYTHON);
  const proc = spawnTracked(PYTHON.probe[0], [
    fixture("servers/holders.py"),
    mode,
    ...(unixPath ? ["--unix", unixPath] : []),
  ]);
  const m = await proc.waitFor(/listening (\S+)/);
  const helper = /helper (\d+)/.exec(proc.stdout());
  return { proc, port: unixPath ? 0 : Number(m[1]), pid: proc.pid, helper: helper ? Number(helper[1]) : null };
}

const gone = (pid: number) => !ps().some((p) => p.pid === pid && !p.stat.startsWith("Z"));

/** A Unix socket path of this test's own, removed afterwards. */
function socketPath(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), "realfork-check-"));
  dirs.push(dir);
  return join(dir, name);
}
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A client that sends a line, reads it back and stays connected (the child serving it lives on). */
function unixClient(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ path }, () => s.write("ping\n"));
    s.once("data", () => resolve(s));
    s.once("error", reject);
  });
}

describe("realfork check: holders that never accept (listener-inherited)", () => {
  it("a helper program started after listen() without close-on-exec", async (ctx) => {
    const server = await startHolders(ctx, "helper");
    const { code, report } = await checkJson(["--port", String(server.port), "--probe", "2"]);
    expect(code).toBe(1);
    expect(kinds(report)).toEqual(["listener-inherited"]);
    const f = finding(report, "listener-inherited");
    expect(f?.evidence).toEqual([
      expect.objectContaining({ pid: server.helper, state: "LISTEN", inode: report.listeners[0]?.inode }),
    ]);
    expect(f?.message).toContain(`${server.helper} (/usr/bin/sleep, asleep in`);
    expect(f?.message).toContain(`from its parent ${server.pid} (python3) and kept it across execve()`);
    expect(f?.fix).toContain("SOCK_CLOEXEC");
    expect(f?.fix).toContain("close_fds=True");
    // Not taken for a prefork pool of one worker, as before.
    expect(report.pool).toBeNull();
    // Without probes too: two looks show it holding the listener, asleep in sleep.
    const still = await checkJson([String(server.pid)]);
    expect(kinds(still.report)).toEqual(["listener-inherited"]);
    await stop(server);
  });

  it("a child forked to sleep that kept the listener", async (ctx) => {
    const server = await startHolders(ctx, "fork-helper");
    const { code, report } = await checkJson([String(server.pid), "--probe", "2"]);
    expect(code).toBe(1);
    expect(kinds(report)).toEqual(["listener-inherited"]);
    const f = finding(report, "listener-inherited");
    expect(f?.evidence.map((e) => e.pid)).toEqual([server.helper]);
    expect(f?.message).toContain("at fork() and never closed it");
    expect(f?.fix).toBe("close the listening socket in the child right after fork(): it takes no connection");
    await stop(server);
  });

  it("the same helper started with close_fds=True: nothing to report", async (ctx) => {
    const server = await startHolders(ctx, "helper-ok");
    const { code, report } = await checkJson(["--port", String(server.port), "--probe", "2"]);
    expect(report.findings).toEqual([]);
    expect(report.processes).toBe(2);
    expect(code).toBe(0);
    await stop(server);
  });
});

describe("realfork check: nobody accepts (orphaned-listener, and no pass for what was not judged)", () => {
  it("a child that kept the listener, its parent killed with SIGKILL: orphaned, probes wait in the backlog", async (ctx) => {
    const server = await startHolders(ctx, "leak-child");
    const client = await openServed(server.port);
    const [orphan] = (await childrenOf(server.pid, 1)) as [number];
    process.kill(server.pid, "SIGKILL");
    await server.proc.died();
    for (let i = 0; i < 100 && ps().find((p) => p.pid === orphan)?.ppid !== 1; i++) await sleep(20);
    const { code, report } = await checkJson(["--port", String(server.port), "--probe", "2", "--timeout", "500ms"]);
    expect(code).toBe(1);
    expect(report.root).toBe(orphan);
    expect(kinds(report)).toEqual(["orphaned-listener"]);
    for (const p of report.probes) expect(p).toMatchObject({ connected: true, echoed: false, closedByServer: false });
    const f = finding(report, "orphaned-listener");
    expect(f?.evidence).toEqual([expect.objectContaining({ pid: orphan, state: "LISTEN" })]);
    expect(f?.message).toContain(
      "holds the listener while serving a client, and its parent is now pid 1: the server that started it is gone",
    );
    expect(f?.fix).toMatch(/^close\(serv_sock\) in each child right after fork\(\), so that it ends with the server;/);
    expect(f?.message).toContain("2 probe connections waited unanswered in the backlog (accept queue 2)");
    expect(f?.message).toContain("fails with EADDRINUSE");
    expect(f?.fix).toContain(`kill ${orphan}`);
    expect(report.notJudged).toEqual([]);
    client.destroy();
    process.kill(orphan, "SIGKILL");
  });

  it("the same under a subreaper: the orphan's parent is not pid 1, its group's leader (the server) is gone", async (ctx) => {
    requires(ctx, PYTHON);
    const reaper = spawnTracked("python3", [
      fixture("servers/subreaper.py"),
      "python3",
      fixture("servers/holders.py"),
      "leak-child",
    ]);
    const serverPid = Number((await reaper.waitFor(/started (\d+)/))[1]);
    const port = Number((await reaper.waitFor(/listening (\d+)/))[1]);
    const client = await openServed(port);
    const [orphan] = (await childrenOf(serverPid, 1)) as [number];
    process.kill(serverPid, "SIGKILL");
    for (let i = 0; i < 100 && ps().find((p) => p.pid === orphan)?.ppid !== reaper.pid; i++) await sleep(20);
    const { code, report } = await checkJson(["--port", String(port), "--probe", "1", "--timeout", "500ms"]);
    expect(code).toBe(1);
    expect(kinds(report)).toEqual(["orphaned-listener"]);
    expect(finding(report, "orphaned-listener")?.message).toContain(
      `holds the listener while serving a client, and the leader of its process group, the server that started it, is gone (its parent is now ${reaper.pid})`,
    );
    client.destroy();
    reaper.child.kill("SIGTERM");
    await reaper.exited();
    expect(gone(orphan)).toBe(true);
  });

  it("a helper that inherited the listener, its server killed: orphaned, and the fix is close-on-exec", async (ctx) => {
    const server = await startHolders(ctx, "helper");
    const helper = server.helper as number;
    process.kill(server.pid, "SIGKILL");
    await server.proc.died();
    for (let i = 0; i < 100 && ps().find((p) => p.pid === helper)?.ppid !== 1; i++) await sleep(20);
    const { code, report } = await checkJson(["--port", String(server.port), "--probe", "1", "--timeout", "500ms"]);
    expect(code).toBe(1);
    expect(report).toMatchObject({ root: helper, command: "sleep" });
    expect(kinds(report)).toEqual(["orphaned-listener"]);
    const f = finding(report, "orphaned-listener");
    expect(f?.message).toContain(
      `${helper} (sleep, asleep in clock_nanosleep()) holds the listener, and its parent is now pid 1`,
    );
    expect(f?.fix).toContain("close-on-exec before execve() (SOCK_CLOEXEC, FD_CLOEXEC, close_fds=True)");
    process.kill(helper, "SIGKILL");
  });

  it("a pid that holds no listening socket: exit 2 with the reason, not 'no findings'", async () => {
    const idle = spawnTracked("sleep", ["30"]);
    const r = await check([String(idle.pid)]);
    expect(r).toMatchObject({ code: 2, stdout: "" });
    expect(r.stderr).toBe(
      `realfork check: pid ${idle.pid} (sleep) and its descendants hold no listening socket: nothing to judge (a server's pid, or --port P)\n`,
    );
    idle.child.kill("SIGKILL");
    await idle.exited();
  });

  it("a listener that never accepts, its server alive: could not judge, exit 2", async (ctx) => {
    const server = await startHolders(ctx, "deaf");
    const r = await check([String(server.pid), "--probe", "2", "--timeout", "300ms"]);
    expect(r.code).toBe(2);
    expect(r.stdout).toMatch(
      /^realfork check: could not judge pid \d+ \(python3\), listening on 127\.0\.0\.1:\d+, after 2 probes \(0 answered, 0 closed by the server\)\n/,
    );
    expect(r.stdout).toContain(
      `not judged: nobody accepted the 2 probe connections within --timeout 300ms (accept queue 2): the holders of the listener (${server.pid} asleep in `,
    );
    await stop(server);
  });

  it("a pool whose one worker is busy: a connection waiting is a busy moment without probes, unanswered probes are not a pass", async (ctx) => {
    const server = await startPy(ctx, "pool", "1");
    await childrenOf(server.pid, 1);
    const busy = await openServed(server.port);
    const waiting = await open(server.port); // in the backlog: the one worker serves `busy`
    const quiet = await checkJson([String(server.pid)]);
    expect(quiet.report).toMatchObject({ findings: [], notJudged: [] });
    // Its worker holds the listener and a connection, as a leaky per-connection child would; the parent is what differs.
    expect(quiet.report.pool?.how).toEqual([
      "served connections while their parent did not accept (asleep in pause())",
    ]);
    expect(quiet.code).toBe(0);
    const probed = await checkJson([String(server.pid), "--probe", "1", "--timeout", "300ms"]);
    expect(probed.report.findings).toEqual([]);
    expect(probed.report.notJudged).toEqual([
      expect.stringMatching(
        /^nobody accepted the 1 probe connection within --timeout 300ms \(accept queue 2\): the holders of the listener \(\d+ asleep in pause\(\); \d+ asleep in recvfrom\(\)\) are busy or have stopped accepting$/,
      ),
    ]);
    expect(probed.code).toBe(2);
    busy.destroy();
    waiting.destroy();
    await stop(server);
  });

  it("a --timeout shorter than the server takes to answer: could not judge, exit 2", async (ctx) => {
    const server = await startHolders(ctx, "slow");
    const { code, report } = await checkJson([String(server.pid), "--probe", "2", "--timeout", "200ms"]);
    expect(code).toBe(2);
    expect(report.findings).toEqual([]);
    expect(report.notJudged).toEqual([
      "none of the 2 probes was answered or closed by the server within --timeout 200ms, so what they left behind was not judged, only the looks before them (a longer --timeout, or a server that answers a line)",
    ]);
    await stop(server);
  });
});

describe("realfork check --unix PATH", () => {
  it("a correct forking server on a Unix socket: nothing to report; fds --unix shows the path", async (ctx) => {
    const path = socketPath("correct.sock");
    const server = await startHolders(ctx, "correct", path);
    const { code, report } = await checkJson(["--unix", path, "--probe", "3"]);
    expect(report.findings).toEqual([]);
    expect(code).toBe(0);
    expect(report.root).toBe(server.pid);
    expect(report.listeners).toEqual([{ local: path, inode: expect.any(Number) }]);
    expect(report.probes.every((p) => p.echoed && p.closedByServer)).toBe(true);
    const client = await unixClient(path);
    await childrenOf(server.pid, 1);
    const fds = spawnTracked(cli, ["fds", "--unix", path, "--sockets"]);
    expect((await fds.exited()).code).toBe(0);
    expect(fds.stdout()).toMatch(new RegExp(`LISTEN\\s+${path}\\s+-\\s+1\\s+${server.pid}:3`));
    expect(fds.stdout()).toMatch(new RegExp(`CONNECTED\\s+${path}\\s+-\\s+1\\s+\\d+:4`));
    client.end();
    await stop(server);
  });

  it("a leaky one: each child keeps the listener; killed, the orphan keeps the path", async (ctx) => {
    const path = socketPath("leaky.sock");
    const server = await startHolders(ctx, "leak-child", path);
    const client = await unixClient(path);
    const [child] = (await childrenOf(server.pid, 1)) as [number];
    const live = await checkJson(["--unix", path]);
    expect(live.code).toBe(1);
    // The picture shows the socket by its path, the child's copy of the listener in red.
    const svg = spawnTracked(cli, ["fds", "--unix", path, "--svg"]);
    expect((await svg.exited()).code).toBe(0);
    expect(svg.stdout()).toContain(`${path} -&gt; *`);
    expect(svg.stdout()).toContain(`fill="#d01c1c" font-weight="bold" xml:space="preserve">fd 3   unix LISTEN`);
    expect(kinds(live.report)).toEqual(["listener-in-child"]);
    expect(finding(live.report, "listener-in-child")?.evidence).toEqual([
      expect.objectContaining({ pid: child, local: path, state: "LISTEN" }),
    ]);
    process.kill(server.pid, "SIGKILL");
    await server.proc.died();
    for (let i = 0; i < 100 && ps().find((p) => p.pid === child)?.ppid !== 1; i++) await sleep(20);
    const { code, report } = await checkJson(["--unix", path, "--probe", "2", "--timeout", "500ms"]);
    expect(code).toBe(1);
    expect(kinds(report)).toEqual(["orphaned-listener"]);
    expect(finding(report, "orphaned-listener")?.message).toContain(
      `a server started again on ${path} fails with EADDRINUSE, or, if it unlinks the path first, leaves ${child} holding a socket nobody can reach`,
    );
    client.destroy();
    process.kill(child, "SIGKILL");
  });

  it("refuses --unix with --port, and says when nothing listens there (exit 2)", async () => {
    const both = await check(["--unix", "/tmp/x.sock", "--port", "1"]);
    expect(both.code).toBe(2);
    expect(both.stderr).toContain("choose one of --port and --unix");
    const none = await check(["--unix", socketPath("none.sock")]);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/^realfork check: nothing listens on the Unix socket .*none\.sock/);
  });
});

describe("realfork check -- COMMAND", () => {
  /** Kills by pid whatever a report names, should check have left it (the assertions say whether it did). */
  const cleanup = (pids: number[]) => {
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {}
    }
  };

  it("starts a correct server, checks it, stops it: exit 0, nothing left", async (ctx) => {
    requires(ctx, PYTHON);
    const { code, report } = await checkJson([
      "--probe",
      "3",
      "--timeout",
      "10s",
      "--",
      "python3",
      fixture("servers/holders.py"),
      "correct",
    ]);
    const started = report.started;
    cleanup([started?.pid ?? 0, ...(started?.left ?? [])]);
    expect(report.findings).toEqual([]);
    expect(code).toBe(0);
    expect(started).toMatchObject({
      command: ["python3", fixture("servers/holders.py"), "correct"],
      listener: { unix: false, pid: started?.pid },
      ended: { how: "SIGTERM", code: 0, signal: null },
      killed: [],
      left: [],
    });
    expect(report.root).toBe(started?.pid);
    expect(gone(started?.pid ?? 0)).toBe(true);
  });

  it("a leaky one (a helper holding the listener): exit 1, and the helper is ended too", async (ctx) => {
    requires(ctx, PYTHON);
    const path = socketPath("cmd.sock");
    const { code, report } = await checkJson([
      "--probe",
      "2",
      "--timeout",
      "10s",
      "--",
      "python3",
      fixture("servers/holders.py"),
      "helper",
      "--unix",
      path,
    ]);
    const helper = finding(report, "listener-inherited")?.evidence[0]?.pid ?? 0;
    cleanup([report.started?.pid ?? 0, helper]);
    expect(code).toBe(1);
    expect(kinds(report)).toEqual(["listener-inherited"]);
    expect(report.listeners[0]?.local).toBe(path);
    expect(report.started?.listener).toMatchObject({ local: path, unix: true });
    expect(report.started?.left).toEqual([]);
    expect(gone(helper)).toBe(true);
  });

  it("a command that exits before it listens: exit 2 with the end of its stderr", async (ctx) => {
    requires(ctx, PYTHON);
    const r = await check([
      "--timeout",
      "10s",
      "--",
      "python3",
      "-c",
      "import sys; print('no config file', file=sys.stderr); sys.exit(3)",
    ]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toBe(
      `realfork check: 'python3 -c import sys; print('no config file', file=sys.stderr); sys.exit(3)' exited with status 3 before it listened; the end of its stderr:\n  | no config file\n`,
    );
    // --json: what was started and how it ended, for machines.
    const j = await check(["--json", "--", "python3", "-c", "import sys; sys.exit(3)"]);
    expect(j.code).toBe(2);
    expect(JSON.parse(j.stdout)).toMatchObject({
      error: expect.stringContaining("exited with status 3 before it listened"),
      started: { listener: null, listenedAfterMs: null, ended: { how: "exited", code: 3, signal: null }, left: [] },
    });
  });

  it("a command that cannot be started: exit 2 with the reason", async () => {
    const r = await check(["--", "/nonexistent/realfork-server", "9000"]);
    expect(r).toMatchObject({ code: 2, stdout: "" });
    expect(r.stderr).toBe(
      "realfork check: '/nonexistent/realfork-server 9000' could not be started (spawn /nonexistent/realfork-server ENOENT)\n",
    );
  });

  it("a command that never listens: exit 2 after --timeout, its stderr shown, and it is stopped", async () => {
    const r = await check(["--timeout", "500ms", "--", "sh", "-c", "echo pid $$ >&2; exec sleep 60"]);
    expect(r.code).toBe(2);
    const m =
      /^realfork check: 'sh -c echo pid \$\$ >&2; exec sleep 60' did not listen on a TCP port or a Unix socket within --timeout 500ms; the end of its stderr:\n {2}\| pid (\d+)\n$/.exec(
        r.stderr,
      );
    expect(m, r.stderr).not.toBeNull();
    expect(gone(Number(m?.[1]))).toBe(true);
  });

  it("stopped by SIGTERM while it waits, check ends what it started, then ends by that signal", async () => {
    const pidFile = socketPath("pid");
    const p = spawnTracked(cli, ["check", "--timeout", "60s", "--", "sh", "-c", `echo $$ > ${pidFile}; exec sleep 60`]);
    let started = 0;
    for (let i = 0; i < 200 && !started; i++) {
      await sleep(50);
      started = Number(existsSync(pidFile) ? readFileSync(pidFile, "utf8") : 0);
    }
    expect(started).toBeGreaterThan(0);
    p.child.kill("SIGTERM");
    expect(await p.exited()).toEqual({ code: null, signal: "SIGTERM" });
    expect(gone(started)).toBe(true);
  });

  it("is a usage error without a command after --", async () => {
    const r = await check(["--probe", "2", "--"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("missing <command> after --");
  });
});

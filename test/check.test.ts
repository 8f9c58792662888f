import { describe, expect, it } from "vitest";
import type { CheckReport } from "../src/inspect/check.js";
import { judgeSnapshot } from "../src/inspect/check.js";
import { snapshot } from "../src/inspect/fdtable.js";
import type { FindingKind } from "../src/inspect/findings.js";
import { cli, fixture } from "./helpers/paths.js";
import { ps, sleep, spawnCliAsUser, spawnTracked, useLeftoverCheck } from "./helpers/processes.js";
import {
  childrenGone,
  childrenOf,
  echo,
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
  const { code, stdout, stderr } = await check([...args, "--json"]);
  expect(stderr).toBe("");
  return { code, report: JSON.parse(stdout) as CheckReport };
}

const kinds = (r: CheckReport): FindingKind[] => r.findings.map((f) => f.kind).sort();
const finding = (r: CheckReport, kind: FindingKind) => r.findings.find((f) => f.kind === kind);

/** test/fixtures/servers/leaky.py in one of its modes (a forking server with one mistake). */
async function startPy(mode: string, ...args: string[]): Promise<Server> {
  const proc = spawnTracked("python3", [fixture("servers/leaky.py"), mode, ...args]);
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
    expect(live.report.needsProbes).toEqual(["descriptor-growth"]);
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

  it.each([["pool"], ["poll-pool"]])(
    "finds nothing in a Python %s of workers (told apart without being told)",
    async (mode) => {
      const server = await startPy(mode, "3");
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

  it("zombie: children that exited and were never waited for", async () => {
    const server = await startPy("zombie");
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

  it("close-wait: children that read EOF and never close", async () => {
    const server = await startPy("stuck-child");
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

  it("connection-in-sibling: children inherit the connections the parent kept", async () => {
    const server = await startPy("leak-parent");
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

  it("descriptor-growth: a pipe kept per connection, with no socket leaked", async () => {
    const server = await startPy("leak-pipe");
    const { code, report } = await checkJson([String(server.pid), "--probe", "2"]);
    expect(code).toBe(1);
    expect(kinds(report)).toEqual(["descriptor-growth"]);
    const evidence = finding(report, "descriptor-growth")?.evidence ?? [];
    expect(evidence).toHaveLength(4);
    for (const e of evidence) expect(e.target).toMatch(/^pipe:\[\d+\]$/);
    await stop(server);
  });

  it("a silent server does not hang check: no answer, no close, reported", async () => {
    const server = await startPy("silent");
    const { code, report } = await checkJson([String(server.pid), "--probe", "2", "--timeout", "300ms"]);
    expect(code).toBe(1);
    for (const p of report.probes) expect(p).toMatchObject({ connected: true, echoed: false, closedByServer: false });
    expect(kinds(report)).toEqual(["close-wait", "descriptor-growth"]);
    expect(finding(report, "close-wait")?.evidence.every((e) => e.pid === server.pid)).toBe(true);
    await stop(server);
  });

  it("a server that exits during the check is reported, not a crash", async () => {
    const server = await startPy("exit");
    const r = await check([String(server.pid), "--probe", "2", "--timeout", "500ms"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe("");
    expect(r.stdout).toContain(`the server (pid ${server.pid}) exited during the probes`);
    await server.proc.exited();
  });
});

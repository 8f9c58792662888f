import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import type { FdSnapshot } from "../src/inspect/fdtable.js";
import { cli } from "./helpers/paths.js";
import { sleep, spawnCliAsUser, spawnTracked, useLeftoverCheck } from "./helpers/processes.js";
import { childrenGone, open, startC, startServe, stop } from "./helpers/servers.js";

useLeftoverCheck();

async function fdsJson(args: string[]): Promise<FdSnapshot> {
  const p = spawnTracked(cli, ["fds", ...args, "--json"]);
  expect(await p.exited()).toEqual({ code: 0, signal: null });
  return JSON.parse(p.stdout()) as FdSnapshot;
}

/** A server with one client connected, once its child holds the connection. */
async function serverWithClient(kind: "ts" | "c") {
  const server = kind === "ts" ? await startServe() : await startC();
  const client = await open(server.port);
  client.on("error", () => {});
  let snap = await fdsJson([String(server.pid)]);
  for (let i = 0; i < 100 && !(snap.processes.length === 2 && snap.sockets.length === 2); i++) {
    await sleep(20);
    snap = await fdsJson([String(server.pid)]);
  }
  return { server, client, snap };
}

/** (pid, fd, local, remote, state) of every TCP descriptor, as lsof reports them. */
function lsofTcp(pids: number[]): string[] {
  const out = execFileSync("lsof", ["-nP", "-a", "-p", pids.join(","), "-iTCP", "-F", "pfnT"], { encoding: "utf8" });
  const rows: string[] = [];
  let pid = "";
  let fd = "";
  let name = "";
  for (const line of out.split("\n")) {
    const tag = line[0];
    const value = line.slice(1);
    if (tag === "p") pid = value;
    else if (tag === "f") fd = value;
    else if (tag === "n") name = value;
    else if (tag === "T" && value.startsWith("ST=")) {
      const [local, remote = "-"] = name.split("->");
      rows.push(`${pid}/${fd} ${local} ${remote} ${value.slice(3)}`);
    }
  }
  return rows.sort();
}

function ourTcp(snap: FdSnapshot): string[] {
  return snap.processes
    .flatMap((p) =>
      p.descriptors
        .filter((d) => d.type === "tcp")
        .map((d) => `${p.pid}/${d.fd} ${d.local} ${d.remote ?? "-"} ${d.state}`),
    )
    .sort();
}

describe("realfork fds", () => {
  it.each(["ts", "c"] as const)("shows the %s server's tree and the reference count of each socket", async (kind) => {
    const { server, client, snap } = await serverWithClient(kind);
    expect(snap.root).toBe(server.pid);
    expect(snap.processes[0]?.pid).toBe(server.pid);
    const child = snap.processes[1];
    expect(child?.ppid).toBe(server.pid);
    // Named after the program on every Node line, though Node 24+ names its
    // main thread (the kernel's comm) "MainThread" or "node-MainThread".
    const program = kind === "ts" ? "node" : "echo_mpserv_fix"; // comm: 15 bytes
    expect(snap.processes.map((p) => p.command)).toEqual([program, program]);
    const listener = snap.sockets.find((s) => s.state === "LISTEN");
    const conn = snap.sockets.find((s) => s.state === "ESTABLISHED");
    const host = kind === "ts" ? "127.0.0.1" : "0.0.0.0"; // the C server binds INADDR_ANY
    expect(listener).toMatchObject({ local: `${host}:${server.port}`, remote: null, holders: [{ pid: server.pid }] });
    expect(conn?.local).toBe(`127.0.0.1:${server.port}`);
    expect(conn?.remote).toBe(`127.0.0.1:${client.localPort}`);
    expect(conn?.holders).toEqual([{ pid: child?.pid, fd: expect.any(Number) }]);
    expect(typeof conn?.inode).toBe("number");
    client.end();
    await childrenGone(server.pid);
    await stop(server);
  });

  it("agrees with lsof and with ss on who holds which socket", async () => {
    const { server, client, snap } = await serverWithClient("ts");
    const pids = snap.processes.map((p) => p.pid);
    expect(ourTcp(snap)).toEqual(lsofTcp(pids));
    // ss lists every holder of each socket: users:(("node",pid=1,fd=3),...).
    // It is Linux's (iproute2); macOS has lsof only, checked above.
    const ss =
      process.platform === "linux"
        ? execFileSync("ss", ["-tanpH", "state", "all", `( sport = :${server.port} )`], { encoding: "utf8" })
        : null;
    for (const sock of ss === null ? [] : snap.sockets) {
      const line = (ss ?? "")
        .split("\n")
        .find((l) => l.includes(sock.local) && (sock.remote === null || l.includes(sock.remote)));
      expect(line, `ss line for ${sock.local}`).toBeDefined();
      const holders = [...(line ?? "").matchAll(/pid=(\d+),fd=(\d+)/g)].map((m) => ({
        pid: Number(m[1]),
        fd: Number(m[2]),
      }));
      expect(holders.sort((a, b) => a.pid - b.pid)).toEqual([...sock.holders].sort((a, b) => a.pid - b.pid));
    }
    client.end();
    await childrenGone(server.pid);
    await stop(server);
  });

  it("finds the server by --port and prints readable tables", async () => {
    const { server, client } = await serverWithClient("ts");
    const p = spawnTracked(cli, ["fds", "--port", String(server.port)]);
    expect(await p.exited()).toEqual({ code: 0, signal: null });
    const out = p.stdout();
    expect(out).toContain(`Descriptors of ${server.pid} and its descendants (2 processes)`);
    expect(out).toMatch(new RegExp(`LISTEN\\s+127\\.0\\.0\\.1:${server.port}\\s+-\\s+1\\s+${server.pid}:\\d+`));
    expect(out).toMatch(/ESTABLISHED\s+127\.0\.0\.1:\d+\s+127\.0\.0\.1:\d+\s+1\s+\d+:\d+/);
    // The runtime's own descriptors are listed too: epoll on Linux, kqueue on macOS.
    expect(out).toMatch(
      process.platform === "linux" ? /node\s+\d+\s+epoll\s+anon_inode:\[eventpoll\]/ : /node\s+\d+\s+kqueue/,
    );
    client.end();
    await childrenGone(server.pid);
    await stop(server);
  });

  it("marks descriptors that share one open file description", async () => {
    const server = await startServe(["--leak-parent"]);
    const client = await open(server.port);
    client.on("error", () => {});
    let snap = await fdsJson([String(server.pid)]);
    while (!snap.sockets.some((s) => s.holders.length === 2)) {
      await sleep(20);
      snap = await fdsJson([String(server.pid)]);
    }
    const shared = snap.sockets.find((s) => s.holders.length === 2);
    expect(shared?.descriptions).toHaveLength(1);
    expect(shared?.descriptions?.[0]).toHaveLength(2);
    client.destroy();
    await stop(server);
  });

  it("--watch redraws as clients come and go, and ends on SIGINT", async () => {
    const server = await startServe();
    const watch = spawnTracked(cli, [
      "fds",
      "--port",
      String(server.port),
      "--watch",
      "--interval",
      "50ms",
      "--sockets",
    ]);
    await watch.waitFor(/LISTEN/);
    const client = await open(server.port);
    await watch.waitFor(/ESTABLISHED/);
    client.end();
    await childrenGone(server.pid);
    await watch.waitFor(/ESTABLISHED[\s\S]*\(1 process\)/);
    watch.child.kill("SIGINT");
    expect(await watch.exited()).toEqual({ code: 0, signal: null });
    await stop(server);
  });

  it.each([
    [["999999999"], 1, "realfork: no process 999999999"],
    [["--port", "1"], 1, "realfork: nothing listens on TCP port 1"],
    [[], 2, "missing <pid>"],
    [["abc"], 2, "<pid> must be a process id, not 'abc'"],
    [["1", "--bogus"], 2, "unknown option '--bogus'"],
  ])("fds %j exits %i with a clear message", async (args, code, message) => {
    const p = spawnTracked(cli, ["fds", ...args]);
    expect((await p.exited()).code).toBe(code);
    expect(p.stderr()).toContain(message);
    expect(p.stderr()).not.toMatch(/\n\s+at /);
  });

  it("says when it may not read a process, instead of inventing its table", async () => {
    const p = spawnCliAsUser(cli, ["fds", "1", "--json"]);
    expect(await p.exited()).toEqual({ code: 0, signal: null });
    const snap = JSON.parse(p.stdout()) as FdSnapshot;
    expect(snap.processes[0]?.error).toBe(
      "permission denied: the descriptors of pid 1 can be read only by its user or root",
    );
    expect(snap.processes[0]?.descriptors).toEqual([]);
  });
});

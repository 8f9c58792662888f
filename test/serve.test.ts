import { randomBytes } from "node:crypto";
import { createServer } from "node:net";
import { describe, expect, it } from "vitest";
import { snapshot } from "../src/inspect/fdtable.js";
import { cli } from "./helpers/paths.js";
import { ps, sleep, spawnCliAsUser, spawnTracked, useLeftoverCheck } from "./helpers/processes.js";
import { childrenGone, count, echo, echoMany, open, startServe, stop } from "./helpers/servers.js";

useLeftoverCheck();

describe("realfork serve", () => {
  it("echoes byte-exact data to many concurrent clients: small, large and binary", async () => {
    const server = await startServe();
    const sizes = [1, 29, 30, 31, 100, 4096, 65_536, 1_000_000];
    const inputs = Array.from({ length: 48 }, (_, i) => randomBytes(sizes[i % sizes.length] as number));
    const bad = await echoMany(server.port, inputs.length, 16, (i) => inputs[i] as Buffer);
    expect(bad).toEqual([]);
    await childrenGone(server.pid);
    expect(await stop(server)).toEqual({ code: 0, signal: null });
  });

  it("prints the book's messages in order for each connection", async () => {
    const server = await startServe();
    for (let i = 0; i < 3; i++) {
      expect((await echo(server.port, Buffer.from(`line ${i}\n`))).toString()).toBe(`line ${i}\n`);
      await server.proc.waitFor(new RegExp(`(removed proc id: \\d+ \\n[\\s\\S]*){${i + 1}}`));
    }
    const lines = server.proc.stdout().split("\n").slice(0, -1);
    expect(lines).toHaveLength(9);
    for (let i = 0; i < 3; i++) {
      expect(lines[3 * i]).toBe("new client connected...");
      expect(lines[3 * i + 1]).toBe("client disconnected...");
      expect(lines[3 * i + 2]).toMatch(/^removed proc id: \d+ $/);
    }
    await stop(server);
  });

  it("leaves no zombie and no extra parent descriptor after 300 connections", async () => {
    const server = await startServe(["--quiet"]);
    const before = snapshot(server.pid).processes[0]?.descriptors.map((d) => `${d.fd}:${d.type}`);
    const bad = await echoMany(server.port, 300, 8, (i) => Buffer.from(`connection ${i}\n`));
    expect(bad).toEqual([]);
    await childrenGone(server.pid);
    const after = snapshot(server.pid);
    expect(after.processes).toHaveLength(1);
    expect(after.processes[0]?.descriptors.map((d) => `${d.fd}:${d.type}`)).toEqual(before);
    expect(ps().filter((p) => p.ppid === server.pid)).toEqual([]);
    await stop(server);
  });

  it("keeps the listener in the parent only and the connection in the child only", async () => {
    const server = await startServe();
    const sock = await open(server.port);
    await server.proc.waitFor(/new client connected/);
    let snap = snapshot(server.pid);
    for (let i = 0; i < 50 && (snap.processes.length < 2 || snap.sockets.length < 2); i++) {
      await sleep(20);
      snap = snapshot(server.pid);
    }
    const child = snap.processes.find((p) => p.pid !== server.pid);
    expect(child).toBeDefined();
    const listener = snap.sockets.find((s) => s.state === "LISTEN");
    const conn = snap.sockets.find((s) => s.state === "ESTABLISHED");
    expect(listener?.holders.map((h) => h.pid)).toEqual([server.pid]);
    expect(conn?.holders.map((h) => h.pid)).toEqual([child?.pid]);
    // The child holds what the C child holds: stdio and its connection, plus
    // the loop's wakeup descriptor pointed at /dev/null (docs/architecture.md).
    const extra = child?.descriptors.filter((d) => d.fd > 2 && d.fd !== conn?.holders[0]?.fd);
    expect(extra?.map((d) => d.target)).toEqual(["/dev/null"]);
    expect(child?.descriptors.filter((d) => d.fd <= 2).map((d) => d.fd)).toEqual([0, 1, 2]);
    sock.end();
    await childrenGone(server.pid);
    await stop(server);
  });

  it.each(["SIGTERM", "SIGINT"] as const)(
    "on %s closes the listener, ends the children and exits 0",
    async (signal) => {
      const server = await startServe();
      const socks = await Promise.all(Array.from({ length: 5 }, () => open(server.port)));
      const closed = socks.map((s) => new Promise((r) => s.on("close", r)));
      for (const s of socks) s.on("error", () => {});
      await server.proc.waitFor(/(new client connected[\s\S]*){5}/);
      while (snapshot(server.pid).processes.length < 6) await sleep(20);
      const result = await stop(server, signal);
      expect(result).toEqual({ code: 0, signal: null });
      await Promise.all(closed);
      expect(server.proc.stderr()).toContain(`${signal}: closing the listener, ending 5 child(ren)`);
      expect(count(server.proc.stdout(), "removed proc id:")).toBe(5);
    },
  );

  it("ends at once on a second SIGINT", async () => {
    const server = await startServe();
    const sock = await open(server.port);
    sock.on("error", () => {});
    await server.proc.waitFor(/new client connected/);
    server.proc.child.kill("SIGINT");
    server.proc.child.kill("SIGINT");
    expect(await server.proc.exited(5000)).toEqual({ code: 0, signal: null });
  });

  it("a stop signal sent again while it exits does not end it by that signal: exit 0, 5 times", async () => {
    // Node's own exit puts SIGINT's default action back for its last
    // milliseconds; a signal there used to end the server with SIGINT.
    for (let i = 0; i < 5; i++) {
      const server = await startServe();
      const sock = await open(server.port);
      sock.on("error", () => {});
      await server.proc.waitFor(/new client connected/);
      server.proc.child.kill("SIGINT");
      await server.proc.waitFor(/realfork serve: stopped\n/, 5000, "stderr");
      try {
        process.kill(server.pid, "SIGINT");
      } catch {}
      expect(await server.proc.exited(5000)).toEqual({ code: 0, signal: null });
      sock.destroy();
    }
  });

  it("holds --max-children under a burst; waiting connections are served later", async () => {
    const server = await startServe(["--max-children", "3"]);
    const socks = await Promise.all(Array.from({ length: 10 }, () => open(server.port)));
    await server.proc.waitFor(/(new client connected[\s\S]*){3}/);
    await sleep(500);
    expect(count(server.proc.stdout(), "new client connected")).toBe(3);
    expect(snapshot(server.pid).processes).toHaveLength(4);
    // Each waiting connection is served once a child ends.
    const results = socks.map(
      (s, i) =>
        new Promise<string>((resolve) => {
          let got = "";
          s.on("data", (d) => {
            got += d;
          });
          s.on("close", () => resolve(got));
          s.end(`client ${i}\n`);
        }),
    );
    const got = await Promise.all(results);
    expect(got).toEqual(socks.map((_, i) => `client ${i}\n`));
    let maxLive = 0;
    for (const line of server.proc.stdout().split("\n")) {
      if (line === "new client connected...") maxLive++;
    }
    expect(maxLive).toBe(10);
    await childrenGone(server.pid);
    await stop(server);
  });

  it("serves IPv6", async () => {
    const server = await startServe([], "::1");
    expect((await echo(server.port, Buffer.from("over v6\n"), "::1")).toString()).toBe("over v6\n");
    await stop(server);
  });
});

describe("realfork serve: wrong usage and runtime errors", () => {
  it.each([
    [[], "missing <port>"],
    [["80", "81"], "unexpected argument '81'"],
    [["70000"], "<port> must be a number from 0 to 65535, not '70000'"],
    [["http"], "<port> must be a number from 0 to 65535, not 'http'"],
    [["0", "--frobnicate"], "unknown option '--frobnicate'"],
    [["0", "--max-children", "0"], "--max-children must be a whole number from 1 to 1000000, not '0'"],
    [["0", "--host", "localhost"], "--host must be a numeric IPv4 or IPv6 address, not 'localhost'"],
  ])("serve %j: one line on stderr, exit 2", async (args, message) => {
    const p = spawnTracked(cli, ["serve", ...args]);
    expect(await p.exited()).toEqual({ code: 2, signal: null });
    expect(p.stderr()).toContain(message);
    expect(p.stderr()).toBe(`realfork serve: ${message} (see realfork serve --help)\n`);
    expect(p.stdout()).toBe("");
  });

  it("reports a port in use in one line, exit 1", async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, "127.0.0.1", r));
    const { port } = blocker.address() as { port: number };
    const p = spawnTracked(cli, ["serve", String(port), "--host", "127.0.0.1"]);
    expect(await p.exited()).toEqual({ code: 1, signal: null });
    expect(p.stderr()).toBe(
      "realfork: bind: EADDRINUSE: address already in use (another process listens on that port)\n",
    );
    blocker.close();
  });

  it("reports a privileged port as permission denied when not root", async () => {
    const p = spawnCliAsUser(cli, ["serve", "80"]);
    expect(await p.exited()).toEqual({ code: 1, signal: null });
    expect(p.stderr()).toBe(
      "realfork: bind: EACCES: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)\n",
    );
  });
});

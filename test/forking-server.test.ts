// The public ForkingServer, used as a library user would (test/fixtures/
// forking-server.mjs imports "realfork"): the handler runs in a forked child
// with its connection, close() ends and reaps every child.
import { connect } from "node:net";
import { describe, expect, it } from "vitest";
import { snapshot } from "../src/inspect/fdtable.js";
import { fixture } from "./helpers/paths.js";
import { sleep, spawnTracked, type Tracked, useLeftoverCheck, withTimeout } from "./helpers/processes.js";
import { childrenOf, open } from "./helpers/servers.js";

useLeftoverCheck();

async function start(mode: string, prefork = 0): Promise<{ proc: Tracked; port: number; listener: number }> {
  const proc = spawnTracked(process.execPath, ["--single-threaded", fixture("forking-server.mjs"), mode, `${prefork}`]);
  const m = await proc.waitFor(/listener (\d+) (\d+)\n/);
  return { proc, port: Number(m[2]), listener: Number(m[1]) };
}

/** Sends nothing more after `data`, half-closes, and resolves with the reply and our local port. */
function ask(port: number, data = ""): Promise<{ reply: string; local: number }> {
  return withTimeout(
    new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let local = 0;
      const s = connect(port, "127.0.0.1", () => {
        local = s.localPort ?? 0;
        s.end(data);
      });
      s.on("data", (c) => chunks.push(c));
      s.on("error", reject);
      s.on("close", () => resolve({ reply: Buffer.concat(chunks).toString(), local }));
    }),
    10_000,
    `a reply on port ${port}`,
  );
}

async function stopped(proc: Tracked): Promise<void> {
  proc.child.kill("SIGTERM");
  expect(await proc.exited()).toEqual({ code: 0, signal: null });
}

describe("ForkingServer", () => {
  it("runs the handler in a forked child that holds only stdio and its connection", async () => {
    const { proc, port, listener } = await start("info");
    const { reply, local } = await ask(port);
    const info = JSON.parse(reply) as { pid: number; ppid: number; fd: number; peer: string; fds: number[] };
    expect(info.ppid).toBe(proc.pid);
    expect(info.pid).not.toBe(proc.pid);
    expect(info.peer).toBe(`127.0.0.1:${local}`);
    // The listener and the runtime's descriptors are gone before the
    // handler runs; the loop's wakeup descriptor stays, pointed at /dev/null.
    expect(info.fds).toContain(info.fd);
    expect(info.fds).not.toContain(listener);
    expect(info.fds.filter((fd) => fd > 2 && fd !== info.fd).length).toBeLessThanOrEqual(2);
    await proc.waitFor(new RegExp(`child-exit ${info.pid} connection exited 0\\n`));
    expect(proc.stdout()).toContain(`connection 127.0.0.1:${local}\n`);
    await stopped(proc);
    expect(proc.stdout()).toMatch(/closing 0\nclosed\nclose resolved 0 -1\n$/);
  });

  it.each([0, 1])(
    "prefork %i: the handler sees its own connection's fd, address, port, family and peer; close() twice is fine",
    async (prefork) => {
      const { proc, port } = await start("conn", prefork);
      const seen: { pid: number; peer: string }[] = [];
      for (let i = 0; i < 3; i++) {
        const { reply, local } = await ask(port);
        const conn = JSON.parse(reply) as { pid: number; fd: number; peer: string };
        expect(conn).toEqual({
          pid: conn.pid,
          fd: conn.fd,
          address: "127.0.0.1",
          port: local,
          family: "IPv4",
          peer: `127.0.0.1:${local}`,
          again: `127.0.0.1:${local}`,
        });
        seen.push(conn);
      }
      // One worker served all three, each with its own peer.
      if (prefork) expect(new Set(seen.map((c) => c.pid)).size).toBe(1);
      expect(new Set(seen.map((c) => c.peer)).size).toBe(3);
      await stopped(proc);
      expect(proc.stdout()).not.toMatch(/exited 1\n/);
      expect(proc.stderr()).toBe("");
    },
  );

  it("a handler that throws ends its child with status 1 and a message; the server goes on", async () => {
    const { proc, port } = await start("throw");
    expect((await ask(port)).reply).toBe("");
    await proc.waitFor(/child-exit \d+ connection exited 1\n/);
    expect(proc.stderr()).toMatch(/realfork: child \d+: Error: the handler failed on purpose/);
    expect((await ask(port)).reply).toBe("");
    await proc.waitFor(/(child-exit \d+ connection exited 1\n[\s\S]*){2}/);
    await stopped(proc);
  });

  it("close() sends SIGTERM to children still serving and resolves once all are reaped", async () => {
    const { proc, port } = await start("hold");
    const held = [await open(port), await open(port)];
    for (const s of held) s.on("error", () => {});
    const kids = await childrenOf(proc.pid, 2);
    proc.child.kill("SIGTERM");
    expect(await proc.exited()).toEqual({ code: 0, signal: null });
    const out = proc.stdout();
    expect(out).toContain("closing 2\n");
    for (const pid of kids) expect(out).toContain(`child-exit ${pid} connection signaled SIGTERM\n`);
    // 'close' and the promise come after the last child-exit.
    expect(out.slice(out.lastIndexOf("child-exit"))).toMatch(/\nclosed\nclose resolved 0 -1\n$/);
    for (const s of held) s.destroy();
  });

  it("prefork: N workers share the listener and serve one connection after another", async () => {
    const { proc, port, listener } = await start("info", 2);
    const workers = await childrenOf(proc.pid, 2);
    const served = new Set<number>();
    for (let i = 0; i < 6; i++) served.add((JSON.parse((await ask(port)).reply) as { pid: number }).pid);
    for (const pid of served) expect(workers).toContain(pid);
    const sock = snapshot(proc.pid).sockets.find((s) => s.state === "LISTEN");
    expect(sock?.holders.map((h) => h.pid).sort()).toEqual([proc.pid, ...workers].sort());
    expect(sock?.holders.find((h) => h.pid === proc.pid)?.fd).toBe(listener);
    await stopped(proc);
    for (const pid of workers) expect(proc.stdout()).toContain(`child-exit ${pid} worker signaled SIGTERM\n`);
  });
});

describe("ForkingServer, a listen() that throws", () => {
  it("an onStep that throws while workers start: listen() throws, the workers are killed and reaped, nothing holds the process", async () => {
    const proc = spawnTracked(process.execPath, [
      "--single-threaded",
      fixture("forking-server.mjs"),
      "step-throws",
      "3",
    ]);
    // The error is caught (as realfork serve's main does): nothing may keep
    // the process alive after it.
    expect(await proc.exited()).toEqual({ code: 1, signal: null });
    // The two workers forked by then were killed by close() and reaped.
    expect(proc.stdout()).toMatch(
      /listen threw: onStep failed on purpose\n(child-exit \d+ worker signaled SIGKILL\n){2}closed\n$/,
    );
  });
});

describe("ForkingServer, closed early or unable to fork", () => {
  it("async mode: close() right after listen() forks no worker and resolves", async () => {
    const proc = spawnTracked(process.execPath, ["--single-threaded", fixture("loop-close-now.mjs")]);
    expect(await proc.exited(20_000)).toEqual({ code: 0, signal: null });
    expect(proc.stdout()).toBe("closed 0\n");
  });

  it("prefork where fork() always fails: one try a second, not a busy loop", async () => {
    // Without --single-threaded every fork() throws ForkSafetyError.
    const proc = spawnTracked(process.execPath, [fixture("forking-server.mjs"), "info", "2"]);
    await proc.waitFor(/listening \d+/);
    await sleep(2500);
    proc.child.kill("SIGTERM");
    expect(await proc.exited()).toEqual({ code: 0, signal: null });
    const tries = proc.stderr().split("starting a worker again in 1 s").length - 1;
    // Two at start, then one a second.
    expect(tries).toBeGreaterThanOrEqual(3);
    expect(tries).toBeLessThanOrEqual(6);
  });
});

describe("ForkingServer arguments", () => {
  it.each([
    [{ port: 70000 }, RangeError, /"options.port" is out of range/],
    [{ host: "localhost" }, TypeError, /numeric IPv4 or IPv6 address. Received 'localhost'/],
    [{ prefork: -1 }, RangeError, /"options.prefork" is out of range/],
    [{ maxChildren: 0 }, RangeError, /"options.maxChildren" is out of range/],
    [{ backlog: "5" }, TypeError, /"options.backlog" argument must be of type number/],
    [null, TypeError, /"options" argument must be an object/],
  ])("%j is refused before any socket exists", async (options, type, message) => {
    const { ForkingServer } = await import("../src/index.js");
    expect(() => new ForkingServer(options as never, () => {})).toThrow(type);
    expect(() => new ForkingServer(options as never, () => {})).toThrow(message);
  });

  it("listen() on a port in use throws EADDRINUSE and leaves no descriptor", async () => {
    const { ForkingServer, openDescriptors } = await import("../src/index.js");
    const first = new ForkingServer({ host: "127.0.0.1", prefork: 0 }, () => {});
    const { port } = first.listen();
    const second = new ForkingServer({ host: "127.0.0.1", port }, () => {});
    // Compared with no await in between: nothing else of this process runs.
    const before = openDescriptors();
    expect(() => second.listen()).toThrow(expect.objectContaining({ code: "EADDRINUSE", syscall: "bind" }));
    expect(openDescriptors()).toEqual(before);
    await first.close();
    expect(first.listener).toBe(-1);
  });
});

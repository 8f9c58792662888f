import { once } from "node:events";
import { connect } from "node:net";
import { describe, expect, it } from "vitest";
import type { TraceEvent } from "../src/inspect/trace.js";
import { cli } from "./helpers/paths.js";
import { sleep, spawnTracked, useLeftoverCheck } from "./helpers/processes.js";
import { childrenGone, echo, open, startServe, stop } from "./helpers/servers.js";

useLeftoverCheck();

function traceEvents(stderr: string): TraceEvent[] {
  return stderr
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as TraceEvent);
}

async function waitEvents(server: { proc: { stderr: () => string } }, names: string[]): Promise<TraceEvent[]> {
  for (let i = 0; i < 200; i++) {
    const events = traceEvents(server.proc.stderr());
    if (names.every((n) => events.some((e) => e.event === n))) return events;
    await sleep(25);
  }
  throw new Error(`trace events ${names.join(", ")} did not all come:\n${server.proc.stderr()}`);
}

/** The last of `count` reaped events: each is written after its own snapshot, so wait for all. */
async function lastReaped(server: { proc: { stderr: () => string } }, count: number): Promise<TraceEvent> {
  let reaped: TraceEvent[] = [];
  for (let i = 0; i < 400 && reaped.length < count; i++) {
    await sleep(25);
    reaped = traceEvents(server.proc.stderr()).filter((e) => e.event === "reaped");
  }
  expect(reaped).toHaveLength(count);
  return reaped.at(-1) as TraceEvent;
}

/**
 * The lines of one connection, in the order they were written (its accept(),
 * the lines naming its child, the child's own): step, role, the step's
 * socket's refs, and the listener's refs on the fork() line.
 */
function countsOf(events: TraceEvent[], forked: TraceEvent) {
  const child = forked.child as number;
  return events
    .filter(
      (e) =>
        e.child === child ||
        (e.pid === child && e.role === "child") ||
        (e.event === "accepted" && e.socket?.inode === forked.socket?.inode),
    )
    .map((e) => [e.event, e.role, e.refs, e.listener?.refs ?? null]);
}

describe("realfork serve --trace", () => {
  it("logs each step with the holders the kernel reports", async () => {
    const server = await startServe(["--trace", "--json"]);
    const client = await open(server.port);
    let events = await waitEvents(server, [
      "listening",
      "accepted",
      "forked",
      "parent-closed",
      "child-closed-listener",
    ]);
    const get = (name: string) => events.find((e) => e.event === name) as TraceEvent;
    const listening = get("listening");
    const forked = get("forked");
    const child = forked.child as number;
    expect(listening).toMatchObject({ role: "parent", pid: server.pid, refs: 1 });
    expect(get("accepted")).toMatchObject({ role: "parent", refs: 1, holders: [{ pid: server.pid }] });
    expect(forked).toMatchObject({ role: "parent", refs: 2 });
    expect(forked.holders.map((h) => h.pid).sort()).toEqual([server.pid, child].sort());
    expect(get("parent-closed")).toMatchObject({ role: "parent", refs: 1, holders: [{ pid: child }] });
    const closedListener = get("child-closed-listener");
    expect(closedListener).toMatchObject({ role: "child", pid: child, refs: 1, holders: [{ pid: server.pid }] });
    expect(closedListener.socket?.state).toBe("LISTEN");
    client.end();
    events = await waitEvents(server, ["child-closed", "reaped"]);
    expect(get("child-closed")).toMatchObject({ role: "child", pid: child, refs: 0, holders: [] });
    expect(get("reaped")).toMatchObject({ role: "parent", child, refs: 0 });
    await stop(server);
  });

  it("gives the count true at each step, in the book's order, even when the client is quick (10 clients)", async () => {
    const server = await startServe(["--trace", "--json"]);
    for (let run = 0; run < 10; run++) {
      const client = spawnTracked(cli, ["client", "127.0.0.1", String(server.port)]);
      client.child.stdin?.end("hi\nq\n");
      expect(await client.exited()).toEqual({ code: 0, signal: null });
    }
    await childrenGone(server.pid);
    await lastReaped(server, 10);
    const events = traceEvents(server.proc.stderr());
    const children = events.filter((e) => e.event === "forked").map((e) => e.child as number);
    expect(children).toHaveLength(10);
    for (const child of children) {
      const forked = events.find((e) => e.event === "forked" && e.child === child) as TraceEvent;
      expect(countsOf(events, forked), server.proc.stderr()).toEqual([
        ["accepted", "parent", 1, null],
        ["forked", "parent", 2, 2],
        ["child-closed-listener", "child", 1, null],
        ["parent-closed", "parent", 1, null],
        ["child-closed", "child", 0, null],
        ["reaped", "parent", 0, null],
      ]);
      expect(forked.holders.map((h) => h.pid).sort()).toEqual([server.pid, child].sort());
      expect(forked.listener?.holders.map((h) => h.pid).sort()).toEqual([server.pid, child].sort());
    }
    await stop(server);
  });

  it.each([
    [
      "--leak-parent",
      [
        ["accepted", "parent", 1, null],
        ["forked", "parent", 2, 2],
        ["child-closed-listener", "child", 1, null],
        ["child-closed", "child", 1, null],
        ["reaped", "parent", 1, null],
      ],
    ],
    [
      "--leak-child",
      [
        ["accepted", "parent", 1, null],
        ["forked", "parent", 2, 2],
        ["parent-closed", "parent", 1, null],
        ["child-closed", "child", 0, null],
        ["reaped", "parent", 0, null],
      ],
    ],
  ])("%s: the steps that do not come are skipped, the others in turn (3 quick clients)", async (flag, expected) => {
    const server = await startServe(["--trace", "--json", flag]);
    for (let run = 0; run < 3; run++) {
      // --leak-parent: the server never closes, the client gives up (exit 1).
      const timeout = flag === "--leak-parent" ? "300ms" : "10s";
      const client = spawnTracked(cli, ["client", "127.0.0.1", String(server.port), "--timeout", timeout]);
      client.child.stdin?.end("hi\nq\n");
      expect((await client.exited()).code).toBe(flag === "--leak-parent" ? 1 : 0);
    }
    await childrenGone(server.pid);
    await lastReaped(server, 3);
    const events = traceEvents(server.proc.stderr());
    for (const forked of events.filter((e) => e.event === "forked")) expect(countsOf(events, forked)).toEqual(expected);
    await stop(server);
  });

  it("a connection the client resets: the count still comes from the descriptors (--leak-parent: the parent's)", async () => {
    const server = await startServe(["--trace", "--json", "--leak-parent"]);
    const client = connect(server.port, "127.0.0.1");
    await once(client, "connect");
    client.resetAndDestroy();
    await lastReaped(server, 1);
    const events = traceEvents(server.proc.stderr());
    const forked = events.find((e) => e.event === "forked") as TraceEvent;
    const closed = events.find((e) => e.event === "child-closed") as TraceEvent;
    expect(closed.holders).toEqual([{ pid: server.pid, fd: forked.fd }]);
    expect(closed.refs).toBe(1);
    await stop(server);
  });

  it("writes readable lines without --json", async () => {
    const server = await startServe(["--trace"]);
    await echo(server.port, Buffer.from("x\n"));
    await childrenGone(server.pid);
    const err = server.proc.stderr();
    expect(err).toMatch(
      /trace \[parent \d+\] accept\(\) -> fd \d+; socket:\[\d+\] 127\.0\.0\.1:\d+ <-> 127\.0\.0\.1:\d+ [A-Z_]+ holders \d+:\d+ \(refs 1\)/,
    );
    // This client closes at once; the child waits until the parent's fork()
    // line is written, so both still hold both sockets.
    expect(err).toMatch(
      /trace \[parent \d+\] fork\(\) -> child \d+; socket:\[\d+\] .* holders \d+:\d+ \d+:\d+ \(refs 2\); listening socket:\[\d+\] holders \d+:\d+ \d+:\d+ \(refs 2\)\n/,
    );
    expect(err).toMatch(/trace \[parent \d+\] close\(\d+\) of the connected socket; socket:\[\d+\] .* \(refs 1\)\n/);
    expect(err).toMatch(
      /trace \[child \d+\] close\(\d+\) of the listening socket; socket:\[\d+\] 127\.0\.0\.1:\d+ LISTEN holders \d+:\d+ \(refs 1\)/,
    );
    expect(err).toMatch(
      /trace \[child \d+\] close\(\d+\) of the connected socket; socket:\[\d+\] holders none \(refs 0\): no descriptor left/,
    );
    await stop(server);
  });
});

describe("the mistakes the C material warns about", () => {
  it("--leak-parent: connections never see EOF and CLOSE_WAIT sockets pile up in the parent", async () => {
    const server = await startServe(["--leak-parent", "--trace", "--json"]);
    const sawEof: boolean[] = [];
    for (let i = 0; i < 5; i++) {
      const c = await open(server.port);
      let eof = false;
      c.on("end", () => {
        eof = true;
      });
      c.on("error", () => {});
      c.end("bye\n");
      sawEof.push(eof);
    }
    await childrenGone(server.pid);
    const last = await lastReaped(server, 5);
    const closeWait = last.sockets.filter((s) => s.state === "CLOSE_WAIT");
    expect(closeWait.length).toBe(5);
    for (const s of closeWait) expect(s.holders.map((h) => h.pid)).toEqual([server.pid]);
    expect(sawEof).toEqual([false, false, false, false, false]);
    await stop(server);
  });

  it("the correct server has none of that: every client sees EOF, no CLOSE_WAIT remains", async () => {
    const server = await startServe(["--trace", "--json"]);
    for (let i = 0; i < 5; i++) expect((await echo(server.port, Buffer.from("bye\n"))).toString()).toBe("bye\n");
    await childrenGone(server.pid);
    const last = await lastReaped(server, 5);
    expect(last.sockets.map((s) => s.state)).toEqual(["LISTEN"]);
    await stop(server);
  });

  it.each([
    ["--leak-child", true],
    ["(correct)", false],
  ] as const)("%s: after the parent dies, is the port still held by a child? %s", async (mode, heldByChild) => {
    const server = await startServe(mode === "--leak-child" ? ["--leak-child"] : []);
    const client = await open(server.port);
    client.on("error", () => {});
    await server.proc.waitFor(/new client connected/);
    await sleep(200);
    server.proc.child.kill("SIGKILL");
    // Not exited(): that waits for stdout to close, and the orphan child holds it.
    await server.proc.died();
    // A new client: accepted by the kernel into the orphan child's listener
    // (and never served), or refused because no listener is left.
    const outcome = await new Promise<string>((resolve) => {
      const c = connect(server.port, "127.0.0.1");
      c.on("connect", () => {
        c.write("anyone?\n");
        setTimeout(() => {
          c.destroy();
          resolve("connected, no echo");
        }, 500);
      });
      c.on("data", () => resolve("echoed"));
      c.on("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? "error"));
    });
    expect(outcome).toBe(heldByChild ? "connected, no echo" : "ECONNREFUSED");
    client.destroy();
  });

  it("client --close-instead-of-shutdown: the server never sees EOF, the client never ends", async () => {
    const server = await startServe();
    const p = spawnTracked(cli, ["client", "127.0.0.1", String(server.port), "--close-instead-of-shutdown"]);
    p.child.stdin?.end("hello\nq\n");
    await p.waitFor(/Message from server: hello/);
    await sleep(1000);
    expect(p.child.exitCode).toBeNull();
    expect(server.proc.stdout()).not.toContain("client disconnected");
    p.child.kill("SIGTERM");
    await p.exited();
    await stop(server);
  });
});

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { event, runFixture } from "./helpers/fixtures.js";
import { useLeftoverCheck } from "./helpers/processes.js";

useLeftoverCheck();
const ST = ["--single-threaded"];

describe("fork({ eventLoop: true })", () => {
  it("gives the child a loop of its own for Node's async APIs, while the parent's loop keeps every event", async () => {
    const run = await runFixture("loop-child.mjs", [], [...ST, "--expose-gc"], 60_000);
    expect(run.code, run.stderr).toBe(0);
    expect(run.events.filter((e) => e.event === "stolen")).toEqual([]);
    const children = run.events.filter((e) => e.event === "child");
    expect(children).toHaveLength(2);
    for (const child of children) {
      expect(child).toMatchObject({
        socketsAtStart: [],
        timer: true,
        immediate: true,
        promise: "2,4",
        fs: "written by the child",
        crypto: "0a38253555ce37f5c72a6b703f996814",
        random: 8,
        zlib: "zipped",
        dns: "127.0.0.1",
        gc: true,
        spawn: 7,
        net: "echoed",
        fetch: `http /x from ${child.pid}`,
        signal: "SIGUSR2",
        parentListeners: 0,
      });
    }
    expect(run.events.filter((e) => e.event === "childExit")).toEqual([
      { event: "childExit", code: 0 },
      { event: "childExit", code: 0 },
    ]);
    const parent = event(run, "parent");
    // Every byte the parent wrote reached its own watcher, every connection
    // its own server, while both children ran.
    expect(parent.fed as number).toBeGreaterThan(0);
    expect(parent.watched).toBe(parent.fed);
    expect(parent.served).toBe(parent.fed);
    expect(parent.ticks as number).toBeGreaterThan(0);
    const statuses = parent.statuses as Array<Record<string, unknown>>;
    expect(statuses.map((s) => s.pid).sort()).toEqual(children.map((c) => c.pid).sort());
    for (const s of statuses) expect(s).toMatchObject({ state: "exited", code: 0 });
  });

  it("forks while finished threadpool work waits for its callbacks, without running them in the child", async () => {
    const run = await runFixture("loop-busy.mjs", [], ST, 60_000);
    expect(run.code, run.stderr).toBe(0);
    // Finished work was waiting in libuv's queue when the parent forked.
    expect(event(run, "atFork")).toMatchObject({ running: 0 });
    expect(event(run, "atFork").finished as number).toBeGreaterThan(0);
    expect(run.events.filter((e) => e.event === "stolen")).toEqual([]);
    expect(event(run, "child")).toMatchObject({ ok: true });
    expect(event(run, "parent")).toMatchObject({ done: 40, child: { state: "exited", code: 0 } });
  });

  it("refuses to fork while threadpool work runs (a pool thread may hold a lock the child needs)", async () => {
    const run = await runFixture("loop-busy.mjs", [], ST, 60_000);
    expect(event(run, "refusal")).toMatchObject({ refused: true, code: "ERR_REALFORK_LOOP_FORK" });
    expect(event(run, "refusal").message).toMatch(
      /1 threadpool request\(s\) .* queued or running; .* fork once they are done/,
    );
  });
});

describe("what a child with its own loop keeps, and what fork({ eventLoop }) refuses", () => {
  it("keeps stdio and `keep` (even a descriptor a parent's handle holds) and closes the parent's other sockets", async () => {
    const run = await runFixture("loop-keep.mjs", [], ST, 30_000);
    expect(run.code, run.stderr).toBe(0);
    const parent = event(run, "parent");
    // A loop child does not fork with eventLoop again (its registry is off).
    expect(event(run, "child")).toEqual({ event: "child", open: [parent.kept], nested: "ERR_REALFORK_LOOP_FORK" });
    expect(parent).toMatchObject({ stillOpen: true, status: { state: "exited", code: 0 } });
    // Each connection was answered by the child's own server or the
    // parent's, never the parent's server running in the child.
    expect(run.events.filter((e) => e.event === "stolen")).toEqual([]);
    const answers = parent.answers as string[];
    expect(answers).toHaveLength(10);
    for (const a of answers) expect(["child", "parent"]).toContain(a);
  });

  it("refuses with a clear error while a Worker thread lives or the inspector is open, forks again after, and not once the registry is off", async () => {
    const run = await runFixture("loop-keep.mjs", [], ST, 30_000);
    expect(event(run, "refusals")).toEqual({
      event: "refusals",
      keepType: expect.stringMatching(/^ERR_INVALID_ARG_TYPE: The "keep\[0\]" argument must be of type number/),
      keepWithoutLoop: "ERR_INVALID_ARG_VALUE: fork({ keep }) goes with eventLoop: true",
      worker:
        "ERR_REALFORK_LOOP_FORK: fork({ eventLoop: true }) refused: 1 Worker thread(s) alive; terminate them first",
      inspector: "ERR_REALFORK_LOOP_FORK: fork({ eventLoop: true }) refused: the inspector is active; close it first",
      afterAll: "forked",
      registryOff:
        "ERR_REALFORK_LOOP_FORK: fork({ eventLoop: true }) refused: disableLoopRegistry() was called in this process: its timers and handles are not known",
    });
  });
});

describe("descriptors the loop child does not keep", () => {
  it("are never reused under a parent's object: its FileHandle fails with EBADF instead of writing into the child's new file", async () => {
    const dir = mkdtempSync(join(tmpdir(), "realfork-reuse-"));
    try {
      const run = await runFixture("loop-reuse.mjs", [dir], ST, 30_000);
      expect(run.code, run.stderr).toBe(0);
      const child = event(run, "child");
      expect(child.write).toBe("EBADF");
      expect(child.fd).not.toBe(child.logFd);
      expect(event(run, "parent")).toMatchObject({
        status: { state: "exited", code: 0 },
        parentLog: "parent log line\n",
        childFile: "child's own line\n",
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("the run-time guard on libuv's and Node's private state", () => {
  const built = { uv: "1.52.1", node: "26.12.1" };

  it("accepts the runtime the addon was compiled for, within the tested lines", async () => {
    const { builtVersions, runtimeMismatch } = await import("../src/lib/event-loop-child.js");
    expect(runtimeMismatch(built, { ...built, uv: "1.52.4" })).toBeNull();
    const running = { uv: process.versions.uv, node: process.versions.node };
    expect(builtVersions()).toEqual(running);
    expect(runtimeMismatch(builtVersions(), running)).toBeNull();
  });

  it("names the mismatch: another libuv, an untested line", async () => {
    const { runtimeMismatch } = await import("../src/lib/event-loop-child.js");
    expect(runtimeMismatch({ uv: "1.51.0", node: "22.23.5" }, built)).toBe(
      "the addon was compiled against libuv 1.51.0 (Node 22.23.5) and runs with libuv 1.52.1 (Node 26.12.1); its loop code reads libuv's private fields: rebuild it under this Node (npm rebuild realfork)",
    );
    const next = { uv: "1.53.0", node: "28.0.0" };
    expect(runtimeMismatch(next, next)).toMatch(/^Node 28\.0\.0 with libuv 1\.53\.0 is not a runtime it was tested on/);
    for (const node of ["25.1.0", "20.20.2"]) {
      expect(runtimeMismatch({ ...built, node }, { ...built, node })).toMatch(/not a runtime it was tested on/);
    }
  });

  it("refuses fork({ eventLoop }) on a mismatch, with LoopForkError; plain fork still works", async () => {
    const run = await runFixture("loop-guard.mjs", [], ST);
    expect(run.code, run.stderr).toBe(0);
    expect(event(run, "guard")).toEqual({
      event: "guard",
      eventLoop: expect.stringMatching(
        /^ERR_REALFORK_LOOP_FORK: fork\(\{ eventLoop: true \}\) refused: the addon was compiled against libuv \d+\.\d+\.\d+ \(Node [\d.]+\) and runs with libuv 1\.99\.0/,
      ),
      plain: "forked, exited",
    });
  });
});

describe("keep-alive pools the loop child inherits", () => {
  it("start empty in the child: its first request through http's global agent and fetch works", async () => {
    const run = await runFixture("loop-pools.mjs", [], ST, 30_000);
    expect(run.code, run.stderr).toBe(0);
    expect(event(run, "parent")).toMatchObject({
      parent: { http: expect.stringMatching(/^\/parent from/), fetch: expect.stringMatching(/^\/parent from/) },
      pooled: 1,
      status: { state: "exited", code: 0 },
    });
    expect(event(run, "child")).toEqual({ event: "child", pooled: 0, http: "/child", fetch: "/child" });
  });
});

describe("the loop registry: nothing paid until used", () => {
  it("is off after import: promise hooks off, process.emit and process.exit Node's own; on at enableLoopRegistry()", async () => {
    const run = await runFixture("loop-lazy.mjs", ["import"], ST, 60_000);
    expect(run.code, run.stderr).toBe(0);
    const lazy = event(run, "lazy");
    // Code after an await runs in no async context (0) unless promise hooks are on.
    expect(lazy).toMatchObject({ idle: { asyncId: 0 }, patched: { emit: false, exit: false } });
    expect((lazy.on as { asyncId: number }).asyncId).toBeGreaterThan(0);
  });

  it("finds at the first fork({ eventLoop }) the timers, immediates and unref'd servers made before it", async () => {
    const run = await runFixture("loop-lazy.mjs", ["before"], ST, 30_000);
    expect(run.code, run.stderr).toBe(0);
    expect(run.events.filter((e) => e.event === "stolen")).toEqual([]);
    const parent = event(run, "parent");
    // Every connection answered by the parent: the child closed its copy of the server.
    expect(parent.answers).toEqual(Array(10).fill("parent"));
    // Ended at its own 300 ms timer, not the parent's 3 s one.
    expect(parent.status).toMatchObject({ pid: event(run, "child").pid, state: "exited", code: 0 });
    expect(parent.waitedMs as number).toBeLessThan(2_500);
  });
});

describe("how a child with its own loop ends", () => {
  it("drains: 'beforeExit' may schedule more work, then 'exit', then status 0", async () => {
    const run = await runFixture("loop-exit.mjs", ["drained"], ST);
    expect(run.events.map((e) => e.event)).toEqual([
      "beforeExit",
      "more",
      "beforeExit",
      "more",
      "beforeExit",
      "exit",
      "waited",
    ]);
    expect(event(run, "waited")).toMatchObject({ state: "exited", code: 0 });
  });

  it("keeps process.exitCode and process.exit()'s code, after the 'exit' listeners", async () => {
    const code = await runFixture("loop-exit.mjs", ["exitCode"], ST);
    expect(event(code, "exit")).toEqual({ event: "exit", code: 3 });
    expect(event(code, "waited")).toMatchObject({ state: "exited", code: 3 });
    const exit = await runFixture("loop-exit.mjs", ["processExit"], ST);
    expect(event(exit, "exit")).toEqual({ event: "exit", code: 5 });
    expect(event(exit, "waited")).toMatchObject({ state: "exited", code: 5 });
    expect(exit.events.some((e) => e.event === "never")).toBe(false);
  });

  it("ends with status 1 on an uncaught exception or rejection, unless the child handles it", async () => {
    const thrown = await runFixture("loop-exit.mjs", ["thrown"], ST);
    expect(thrown.stderr).toMatch(/uncaught exception in forked child \d+:\nError: thrown in the loop child/);
    expect(event(thrown, "exit")).toEqual({ event: "exit", code: 1 });
    expect(event(thrown, "waited")).toMatchObject({ state: "exited", code: 1 });
    const rejected = await runFixture("loop-exit.mjs", ["rejected"], ST);
    expect(rejected.stderr).toContain("Error: rejected in the loop child");
    expect(event(rejected, "waited")).toMatchObject({ state: "exited", code: 1 });
    const caught = await runFixture("loop-exit.mjs", ["caught"], ST);
    expect(event(caught, "caught")).toMatchObject({ message: "handled by the child" });
    expect(event(caught, "waited")).toMatchObject({ state: "exited", code: 0 });
  });
});

describe("ForkingServer async mode (prefork + eventLoop)", () => {
  it("needs prefork and a boolean, and says so", async () => {
    const { ForkingServer } = await import("../src/index.js");
    const worker = () => undefined;
    expect(() => new ForkingServer({ eventLoop: true }, worker)).toThrow(
      expect.objectContaining({
        code: "ERR_INVALID_ARG_VALUE",
        message: "options.eventLoop needs options.prefork > 0 (async workers)",
      }),
    );
    expect(() => new ForkingServer({ prefork: 2, eventLoop: "yes" as unknown as true }, worker)).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_ARG_TYPE" }),
    );
  });
});

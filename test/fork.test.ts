import { describe, expect, it } from "vitest";
import { event, runFixture } from "./helpers/fixtures.js";
import { useLeftoverCheck } from "./helpers/processes.js";

useLeftoverCheck();
const ST = ["--single-threaded"];

describe("fork", () => {
  it("returns the child's pid in the parent and 0 in the child, which has its own pid", async () => {
    const run = await runFixture("fork-basics.mjs", [], ST);
    expect(run.code).toBe(0);
    const parent = event(run, "parent");
    const child = event(run, "child");
    expect(child.pid).toBe(parent.forked);
    expect(child.pid).not.toBe(parent.pid);
    expect(child.ppid).toBe(parent.pid);
    expect(child.processPid).toBe(child.pid);
    expect(child.processPpid).toBe(parent.pid);
    expect(child.isChild).toBe(true);
    expect(parent.isChild).toBe(false);
    expect(event(run, "waited")).toMatchObject({ pid: parent.forked, state: "exited", code: 0 });
  });

  it("gives exit codes and signals back through waitpid", async () => {
    const run = await runFixture("fork-basics.mjs", [], ST);
    expect(event(run, "exit42")).toMatchObject({ state: "exited", code: 42, signal: null });
    expect(event(run, "nohang")).toMatchObject({ pid: 0, state: "running" });
    expect(event(run, "killed")).toMatchObject({ state: "signaled", signal: "SIGKILL", code: null });
  });

  it("ends a child that throws, or calls process.exit, with _exit and a status", async () => {
    const run = await runFixture("fork-basics.mjs", [], ST);
    expect(event(run, "thrower")).toMatchObject({ state: "exited", code: 1 });
    expect(run.stderr).toMatch(/uncaught exception in forked child \d+:\nError: thrown in the child/);
    expect(event(run, "processExit")).toMatchObject({ state: "exited", code: 9 });
  });

  it("lets the child allocate ~100 MB of objects and run full GCs", async () => {
    const run = await runFixture("fork-gc.mjs", [], [...ST, "--expose-gc"], 60_000);
    expect(run.code).toBe(0);
    expect(event(run, "child")).toMatchObject({ total: 1_000_000, kept: 4 });
    expect(event(run, "waited")).toMatchObject({ state: "exited", code: 0 });
    // With the runtime's descriptors closed (all but stdio and the loop's
    // wakeup descriptor, now /dev/null) the child still allocates and GCs.
    expect((event(run, "bareChild").fds as number[]).length).toBeLessThanOrEqual(4);
    expect(event(run, "bareWaited")).toMatchObject({ state: "exited", code: 0 });
  });

  it("forks right after the parent's scavenges, and every child collects garbage and exits (V8's default pool)", async () => {
    // Node 26 hung here in the first child: the platform's condition variable
    // was copied with waiters that the child does not have.
    const run = await runFixture("fork-gc-churn.mjs", ["20"], [...ST, "--expose-gc"], 60_000);
    expect(run.code).toBe(0);
    expect(event(run, "children")).toMatchObject({ exited0: 20 });
  });

  // fork() leaves V8's workers parked for a few milliseconds after, for the
  // forks that follow; Node's exit waits for them, so every way out lets
  // them go first (without that, each of these hung until killed).
  const ends: Array<[string, number, RegExp | null]> = [
    ["return", 0, null],
    ["exit", 3, null],
    ["exitCode", 4, null],
    ["throw", 1, /Error: thrown right after fork/],
    ["reject", 1, /Error: rejected right after fork/],
    ["signal", 5, null],
  ];
  for (const pool of [[], ["--v8-pool-size=1"]]) {
    it.each(ends)(
      `ends at once right after a fork: %s, exit %i (${pool.length ? "one V8 worker" : "V8's default pool"})`,
      async (mode, code, stderr) => {
        const run = await runFixture("fork-then-exit.mjs", [mode], [...ST, ...pool], 15_000);
        expect({ code: run.code, signal: run.signal }).toEqual({ code, signal: null });
        if (stderr) expect(run.stderr).toMatch(stderr);
        else expect(run.stderr).toBe("");
      },
    );
  }

  it.runIf(process.platform === "linux")(
    "trimBeforeForking gives the malloc heap's free pages back to the kernel",
    async () => {
      const run = await runFixture("trim.mjs", [], [...ST, "--expose-gc"]);
      expect(run.code).toBe(0);
      const { before, after, kept } = event(run, "trimmed") as { before: number; after: number; kept: number };
      expect(kept).toBe(512);
      // ~56 MB of the 64 MB allocated are free but interleaved with live
      // blocks: free() kept them mapped, malloc_trim() does not.
      expect(before - after).toBeGreaterThan(32 * 1024);
    },
  );

  it("leaves no zombie and no descriptor behind after 500 forks", async () => {
    const run = await runFixture("fork-many.mjs", ["500"], ST, 60_000);
    const done = event(run, "done");
    expect(done).toMatchObject({ n: 500, exited0: 500, other: 0, noChildren: true });
    expect(done.after).toEqual(done.before);
  });

  it("refuses to fork when V8 may use background threads, and says how to fix it", async () => {
    const run = await runFixture("fork-many.mjs", ["1"], []);
    expect(run.code).not.toBe(0);
    expect(run.stderr).toContain("ERR_REALFORK_V8_THREADS");
    expect(run.stderr).toContain("start node with --single-threaded");
  });
});

describe("what a plain fork() refuses", () => {
  it("refuses inside a Worker, while a Worker lives and while threadpool work runs, with clear errors; forks once they are gone", async () => {
    const run = await runFixture("fork-refusals.mjs", [], ST, 30_000);
    expect(run.code, run.stderr).toBe(0);
    const refused = "ForkRefusedError ERR_REALFORK_FORK_REFUSED: fork() refused:";
    expect(event(run, "refusals")).toEqual({
      event: "refusals",
      insideWorker: `${refused} called from a worker thread; fork from the main thread`,
      workerAlive: `${refused} 1 Worker thread(s) alive; terminate them first`,
      workerGone: "forked, exited 0",
      threadpool: `${refused} 1 threadpool request(s) (fs, dns, crypto, zlib) queued or running; a pool thread may hold a lock the child would wait on for ever: fork once they are done`,
      threadpoolDone: "forked, exited 0",
    });
  });
});

describe("reference counts, as the kernel reports them", () => {
  it("keeps a socket shared by parent and child open until the last descriptor closes", async () => {
    const run = await runFixture("refcount.mjs", [], ST);
    expect(run.code).toBe(0);
    expect(event(run, "fork")).toMatchObject({
      afterParentClose: "nothing",
      afterChildClose: "eof",
      child: { state: "exited", code: 0 },
    });
  });

  it("does the same for dup and dup2 inside one process", async () => {
    const run = await runFixture("refcount.mjs", [], ST);
    expect(event(run, "dup")).toMatchObject({
      a3: 200,
      afterFirst: "nothing",
      afterSecond: "nothing",
      afterLast: "eof",
    });
  });

  it("gives EBADF in Node's error shape for a second close", async () => {
    const run = await runFixture("refcount.mjs", [], ST);
    expect(event(run, "closeTwice")).toEqual({
      event: "closeTwice",
      threw: true,
      name: "SyscallError",
      message: "EBADF: bad file descriptor, close",
      code: "EBADF",
      errno: -9,
      syscall: "close",
      isError: true,
      isSyscallError: true,
    });
  });
});

describe("signals and the event loop after fork", () => {
  it.runIf(process.platform === "linux")(
    "resets libuv's SIGCHLD handler in a child forked after child_process.spawn() installed it",
    async () => {
      const run = await runFixture("spawn-sigchld.mjs", [], ST);
      expect(run.code).toBe(0);
      expect(event(run, "result")).toEqual({
        event: "result",
        parentCatchesChld: true,
        childBeforeSpawnCatchesChld: false,
        childAfterSpawnCatchesChld: false,
      });
    },
  );

  it("delivers a signal sent to the child to the child's default disposition, not the parent's handler", async () => {
    const run = await runFixture("signals.mjs", [], ST);
    expect(run.code).toBe(0);
    const r = event(run, "result") as {
      children: Array<{ pid: number; sig: string }>;
      exits: Array<{ pid: number; state: string; signal: string }>;
      seen: string[];
      live: number;
    };
    for (const c of r.children) {
      expect(r.exits).toContainEqual(expect.objectContaining({ pid: c.pid, state: "signaled", signal: c.sig }));
    }
    // Only the parent's own SIGUSR1 (sent to itself) reached its handlers.
    expect(r.seen).toEqual(["SIGUSR1"]);
    expect(r.live).toBe(0);
  });

  it("ends a child that returns to the event loop, and the parent's server and timers go on", async () => {
    const run = await runFixture("escape.mjs", [], ST);
    expect(run.code).toBe(0);
    expect(run.stderr).toMatch(/forked child \d+ returned to the event loop; a forked child must finish synchronously/);
    expect(event(run, "result")).toMatchObject({
      child: { state: "exited", code: 70 },
      ticksAdvanced: true,
      served: "hello",
    });
  });

  it("keeps child_process 'exit' events coming while forks are reaped", async () => {
    const run = await runFixture("spawn-and-fork.mjs", [], ST);
    expect(event(run, "result")).toEqual({
      event: "result",
      forkExits: 20,
      spawnExits: [
        { code: 0, signal: null },
        { code: 0, signal: null },
        { code: 0, signal: null },
      ],
      live: 0,
    });
  });
});

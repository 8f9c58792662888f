import {
  chownSync,
  closeSync,
  constants,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { snapshot } from "../src/inspect/fdtable.js";
import { goOn } from "../src/inspect/step.js";
import { native } from "../src/lib/native.js";
import { cli } from "./helpers/paths.js";
import { sleep, spawnTracked, type Tracked, useLeftoverCheck } from "./helpers/processes.js";
import { open } from "./helpers/servers.js";

useLeftoverCheck();

/** Waits for `step [ROLE PID] STEP:` on stderr; returns the pid. */
async function at(p: Tracked, role: string, step: string): Promise<number> {
  const m = await p.waitFor(new RegExp(`step \\[${role} (\\d+)\\] ${step}: `), 10_000, "stderr");
  return Number(m[1]);
}

/** SIGTERM ends a stepped program at once, whatever step its processes wait at. */
async function stopStepped(p: Tracked): Promise<void> {
  p.child.kill("SIGTERM");
  expect(await p.died(5000)).toEqual({ code: 0, signal: null });
}

describe("serve --step", () => {
  it("holds parent and child right after fork(): the listener and the connection at refs 2", async () => {
    const p = spawnTracked(cli, ["serve", "0", "--host", "127.0.0.1", "--quiet", "--step"]);
    const line = await p.waitFor(
      /step \[parent (\d+)\] listening: .* on \S+:(\d+); go on: realfork step \1/,
      10_000,
      "stderr",
    );
    const [parent, port] = [Number(line[1]), Number(line[2])];
    expect(parent).toBe(p.pid);
    const dir = /echo > (\S+)\/PID/.exec(p.stderr())?.[1] as string;
    expect(existsSync(`${dir}/${parent}`)).toBe(true);
    // Waiting is sleeping in open(), not being stopped: a shell does not see its job stop (state T).
    const state = () => readFileSync(`/proc/${parent}/stat`, "utf8").replace(/^.*\) /s, "")[0];
    for (let i = 0; i < 100 && state() === "R"; i++) await sleep(10);
    expect(state()).toBe("S");
    const list = spawnTracked(cli, ["step"]);
    expect(await list.exited()).toEqual({ code: 0, signal: null });
    expect(list.stdout()).toMatch(/^PID +ROLE +STEP +WHAT IT DID\n/);
    expect(list.stdout()).toMatch(
      new RegExp(`^${parent} +parent +listening +socket\\(\\), bind\\(\\), listen\\(\\)`, "m"),
    );
    await goOn(parent);

    const client = await open(port);
    client.on("error", () => {});
    expect(await at(p, "parent", "accepted")).toBe(parent);
    await goOn(parent);
    const child = await at(p, "child", "child-forked");
    expect(await at(p, "parent", "forked")).toBe(parent);

    // Both wait: nothing can close anything while the kernel is read.
    const snap = snapshot(parent);
    expect(snap.processes.map((x) => x.pid)).toEqual([parent, child]);
    const listener = snap.sockets.find((s) => s.state === "LISTEN");
    const conn = snap.sockets.find((s) => s.remote === `127.0.0.1:${client.localPort}`);
    expect(listener?.holders.map((h) => h.pid)).toEqual([parent, child]);
    expect(conn?.holders.map((h) => h.pid)).toEqual([parent, child]);

    // The child's close of the listener, while the parent still waits at fork.
    await goOn(child);
    await at(p, "child", "child-closed-listener");
    const after = snapshot(parent);
    expect(after.sockets.find((s) => s.state === "LISTEN")?.holders.map((h) => h.pid)).toEqual([parent]);
    expect(after.sockets.find((s) => s.inode === conn?.inode)?.holders.map((h) => h.pid)).toEqual([parent, child]);

    // The parent back in its loop is between two steps: realfork step says so, exit 1.
    await goOn(child);
    await goOn(parent);
    await at(p, "parent", "parent-closed");
    await goOn(parent);
    const running = spawnTracked(cli, ["step", String(parent)]);
    expect(await running.exited()).toEqual({ code: 1, signal: null });
    expect(running.stderr()).toBe(`realfork: process ${parent} is not waiting at a step\n`);

    client.end("hi\n");
    await at(p, "child", "child-closed");
    const twice = spawnTracked(cli, ["step", String(child), String(child)]);
    expect(await twice.exited()).toEqual({ code: 0, signal: null });
    expect(p.stderr()).toMatch(new RegExp(`step \\[child ${child}\\] child-exiting: _exit\\(0\\) next`));
    await at(p, "parent", "reaped");
    const gone = spawnTracked(cli, ["step", String(child)]);
    expect(await gone.exited()).toEqual({ code: 1, signal: null });
    expect(gone.stderr()).toBe(`realfork: process ${child} is not running\n`);
    await goOn(parent);
    await stopStepped(p);
    expect(existsSync(dir)).toBe(false);
  });

  it("refuses --step with --prefork: workers take no per-connection steps", async () => {
    const tmp = mkdtempSync(join(tmpdir(), "realfork-step-test-"));
    try {
      const p = spawnTracked(cli, ["serve", "0", "--step", "--prefork", "2"], { env: { ...process.env, TMPDIR: tmp } });
      expect(await p.exited()).toEqual({ code: 2, signal: null });
      expect(p.stderr()).toContain("--step applies to the fork-per-connection server, not to --prefork");
      expect(readdirSync(tmp)).toEqual([]);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});

describe("realfork step", () => {
  it("says which process is not waiting at a step, and rejects what is not a pid", async () => {
    const none = spawnTracked(cli, ["step", String(process.pid)]);
    expect(await none.exited()).toEqual({ code: 1, signal: null });
    expect(none.stderr()).toBe(`realfork: process ${process.pid} is not waiting at a step\n`);
    const bad = spawnTracked(cli, ["step", "12x"]);
    expect(await bad.exited()).toEqual({ code: 2, signal: null });
    expect(bad.stderr()).toContain("<pid> must be a process id, not '12x'");
  });
});

describe("client --step", () => {
  it("shutdown() changes the state, not the count; close() the count, not the state", async () => {
    const { createServer } = await import("node:net");
    const server = createServer({ allowHalfOpen: true });
    const conns: import("node:net").Socket[] = [];
    server.on("connection", (c) => {
      conns.push(c);
      c.on("data", (d) => c.write(d));
    });
    server.listen(0, "127.0.0.1");
    await new Promise((r) => server.once("listening", r));
    const port = (server.address() as { port: number }).port;
    const p = spawnTracked(cli, ["client", "127.0.0.1", String(port), "--step"]);
    try {
      const reader = await at(p, "reader", "connected");
      expect(reader).toBe(p.pid);
      await goOn(reader);
      const writer = await at(p, "writer", "child-forked");
      await at(p, "reader", "forked");
      const mine = () => snapshot(reader).sockets.filter((s) => s.remote === `127.0.0.1:${port}`);
      expect(mine().map((s) => [s.state, s.holders.map((h) => h.pid)])).toEqual([["ESTABLISHED", [reader, writer]]]);
      await goOn(writer);
      await goOn(reader);
      p.child.stdin?.end("q\n");
      await at(p, "writer", "half-closed");
      const conn = conns[0];
      if (conn && !conn.readableEnded) await new Promise((r) => conn.once("end", r));
      // The server's ACK of our FIN may be delayed a moment: FIN_WAIT1 until it comes.
      for (let i = 0; i < 200 && mine()[0]?.state === "FIN_WAIT1"; i++) await sleep(10);
      const [half] = mine();
      expect(half?.state).not.toBe("ESTABLISHED");
      expect(half?.holders.map((h) => h.pid)).toEqual([reader, writer]);
      await goOn(writer);
      await at(p, "writer", "writer-closed");
      const [closed] = mine();
      expect([closed?.state, closed?.holders.map((h) => h.pid)]).toEqual([half?.state, [reader]]);
      await goOn(writer);
      conn?.end();
      await at(p, "reader", "reader-closed");
      expect(mine()).toEqual([]);
      await goOn(reader);
      await at(p, "reader", "reaped");
      await goOn(reader);
      expect(await p.exited()).toEqual({ code: 0, signal: null });
    } finally {
      server.close();
      for (const c of conns) c.destroy();
    }
  });
});

/** A temporary directory for one test's step folders (TMPDIR of the programs it starts). */
function tmpFor<T>(body: (tmp: string, env: NodeJS.ProcessEnv) => Promise<T>): Promise<T> {
  const tmp = mkdtempSync(join(tmpdir(), "realfork-steptmp-"));
  const saved = process.env.TMPDIR;
  // goOn() in this process looks there too.
  process.env.TMPDIR = tmp;
  return body(tmp, { ...process.env, TMPDIR: tmp }).finally(() => {
    if (saved === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = saved;
    rmSync(tmp, { recursive: true, force: true });
  });
}

/** A stepped server (started with `env`) taken to the moment after fork(): parent and child wait. */
async function toFork(env: NodeJS.ProcessEnv = process.env): Promise<{ p: Tracked; client: Socket; child: number }> {
  const p = spawnTracked(cli, ["serve", "0", "--host", "127.0.0.1", "--quiet", "--step"], { env });
  const line = await p.waitFor(/step \[parent \d+\] listening: .* on \S+:(\d+);/, 10_000, "stderr");
  await goOn(p.pid);
  const client = await open(Number(line[1]));
  client.on("error", () => {});
  await at(p, "parent", "accepted");
  await goOn(p.pid);
  const child = await at(p, "child", "child-forked");
  await at(p, "parent", "forked");
  return { p, client, child };
}

describe("a stop signal while processes wait at a step", () => {
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    it(`${signal} to the parent ends parent and child at once, right after fork()`, async () => {
      const { p, client, child } = await toFork();
      p.child.kill(signal);
      // Nobody lets them go on: the signal alone ends both.
      expect(await p.died(5000)).toEqual({ code: 0, signal: null });
      expect(p.stderr()).toContain(`realfork serve: ${signal}: closing the listener, ending 1 child(ren)`);
      expect(p.stderr()).toContain("realfork serve: stopped");
      expect(existsSync(`/proc/${child}`)).toBe(false);
      client.destroy();
    });
  }

  it("SIGTERM at the first step (listening) stops the server and removes its step folder", async () => {
    await tmpFor(async (tmp, env) => {
      const p = spawnTracked(cli, ["serve", "0", "--host", "127.0.0.1", "--step"], { env });
      await at(p, "parent", "listening");
      p.child.kill("SIGTERM");
      expect(await p.died(5000)).toEqual({ code: 0, signal: null });
      expect(readdirSync(tmp)).toEqual([]);
    });
  });
});

describe("client --step and a stop signal", () => {
  it("SIGTERM while the reader waits at a step ends the client at once, writer included", async () => {
    const { createServer } = await import("node:net");
    const server = createServer((c) => c.on("error", () => {}));
    server.listen(0, "127.0.0.1");
    await new Promise((r) => server.once("listening", r));
    const port = (server.address() as { port: number }).port;
    const p = spawnTracked(cli, ["client", "127.0.0.1", String(port), "--step"]);
    try {
      await goOn(await at(p, "reader", "connected"));
      const writer = await at(p, "writer", "child-forked");
      await at(p, "reader", "forked");
      p.child.kill("SIGTERM");
      expect(await p.died(5000)).toEqual({ code: 0, signal: null });
      expect(p.stderr()).toContain("realfork client: SIGTERM: stopped");
      expect(existsSync(`/proc/${writer}`)).toBe(false);
    } finally {
      server.close();
    }
  });
});

describe("realfork step without a pid", () => {
  it("after SIGKILL lists only live waiting processes and removes what is stale", async () => {
    await tmpFor(async (tmp, env) => {
      const list = async () => {
        const l = spawnTracked(cli, ["step"], { env });
        expect(await l.exited()).toEqual({ code: 0, signal: null });
        return l.stdout();
      };
      // One server killed at its first step: nothing of it waits.
      const first = spawnTracked(cli, ["serve", "0", "--host", "127.0.0.1", "--step"], { env });
      await at(first, "parent", "listening");
      // A second one killed right after fork(): its child still waits, an orphan.
      const { p: second, client, child } = await toFork(env);
      first.child.kill("SIGKILL");
      second.child.kill("SIGKILL");
      await first.died();
      await second.died();
      expect(readdirSync(tmp)).toHaveLength(2);

      const out = await list();
      expect(out.split("\n")[0]).toMatch(/^PID +ROLE +STEP +WHAT IT DID$/);
      expect(out).toMatch(new RegExp(`^${child} +child +child-forked +fork\\(\\) returned 0`, "m"));
      expect(out).not.toMatch(new RegExp(`^(${first.pid}|${second.pid}) `, "m"));
      expect(out.trimEnd().split("\n")).toHaveLength(2);
      // The first server's folder is gone; the second's stays while its child waits in it.
      expect(readdirSync(tmp)).toEqual([expect.stringMatching(`^realfork-step-${second.pid}-`)]);

      process.kill(child, "SIGKILL");
      for (let i = 0; i < 200 && existsSync(`/proc/${child}`); i++) await sleep(10);
      expect(await list()).toBe("no process waits at a step\n");
      expect(readdirSync(tmp)).toEqual([]);
      client.destroy();
    });
  });

  it("looks only in the user's own folders: not another user's, not a symlink, not one open to others", async () => {
    await tmpFor(async (tmp, env) => {
      // A process that exists (this test) and a FIFO planted under its pid in each folder.
      const pid = process.pid;
      const plant = (dir: string) => {
        mkdirSync(dir, { mode: 0o700 });
        expect(native.mkfifo(join(dir, String(pid)), 0o666)).toBe(0);
        writeFileSync(
          join(dir, `${pid}.step`),
          JSON.stringify({ role: "parent", step: "listening", detail: "x", start: null }),
        );
        return join(dir, String(pid));
      };
      const planted: string[] = [];
      const open = plant(join(tmp, `realfork-step-1-wide`));
      planted.push(open);
      const { chmodSync } = await import("node:fs");
      chmodSync(join(tmp, "realfork-step-1-wide"), 0o755);
      const real = plant(join(tmp, "elsewhere"));
      symlinkSync(join(tmp, "elsewhere"), join(tmp, "realfork-step-1-link"));
      planted.push(real);
      if (process.getuid?.() === 0) {
        const theirs = plant(join(tmp, "realfork-step-1-theirs"));
        chownSync(join(tmp, "realfork-step-1-theirs"), 65534, 65534);
        chownSync(theirs, 65534, 65534);
        planted.push(theirs);
      }
      // Readers on every planted FIFO, so that a write to one would succeed (and be seen).
      const readers = planted.map((f) => openSync(f, constants.O_RDONLY | constants.O_NONBLOCK));
      try {
        const l = spawnTracked(cli, ["step"], { env });
        expect(await l.exited()).toEqual({ code: 0, signal: null });
        expect(l.stdout()).toBe("no process waits at a step\n");
        const go = spawnTracked(cli, ["step", String(pid)], { env });
        expect(await go.exited()).toEqual({ code: 1, signal: null });
        expect(go.stderr()).toBe(`realfork: process ${pid} is not waiting at a step\n`);
        // Nothing was written to any (no writer left: EOF, 0 bytes).
        for (const fd of readers) expect(readSync(fd, Buffer.alloc(8))).toBe(0);
        // Nothing of someone else's was removed either.
        for (const f of planted) expect(existsSync(f)).toBe(true);
      } finally {
        for (const fd of readers) closeSync(fd);
      }
    });
  });
});

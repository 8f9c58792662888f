// Faults injected for real (docs/reliability.md): load, bursts, descriptor
// and process exhaustion, killed children, resets, slow and absent readers,
// shutdown under load. Each case prints one "[reliability]" line with what it
// measured; docs/reliability.md quotes a run of this file.
import { spawnSync } from "node:child_process";
import { createServer, type Socket } from "node:net";
import { describe, expect, it } from "vitest";
import { memoryOf } from "../src/bench/bench.js";
import { snapshot } from "../src/inspect/fdtable.js";
import { event, runFixture } from "./helpers/fixtures.js";
import { cli } from "./helpers/paths.js";
import { ps, sleep, spawnCliAsUser, spawnTracked, useLeftoverCheck } from "./helpers/processes.js";
import {
  childrenGone,
  childrenOf,
  count,
  cpuTicks,
  echo,
  loadgen,
  open,
  openServed,
  startServe,
  stop,
} from "./helpers/servers.js";

useLeftoverCheck();

const linux = process.platform === "linux";
const root = process.getuid?.() === 0;
const report = (line: string) => console.log(`[reliability] ${line}`);

/** Descriptors a process holds, as its table lists them. */
const fdCount = (pid: number) => snapshot(pid).processes[0]?.descriptors.length ?? -1;

/** Resolves with everything the socket receives until it closes. */
function collect(s: Socket): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    s.on("data", (c: Buffer) => chunks.push(c));
    s.on("close", () => resolve(Buffer.concat(chunks)));
  });
}

/** Sends a line and waits for the connection to end: how it ended (closed, or reset) and what came back. */
async function ending(port: number, line: string): Promise<{ bytes: number; how: string }> {
  const s = await open(port);
  let how = "a close";
  s.on("error", (err: NodeJS.ErrnoException) => {
    how = `a reset (${err.code})`;
  });
  const got = collect(s);
  s.write(line);
  return { bytes: (await got).length, how };
}

/**
 * prlimit(1) on a running process, as `asUid` when given (root may lack
 * CAP_SYS_RESOURCE in a container). "--nproc" alone reads the soft limit.
 */
function prlimit(pid: number, limit: string, asUid?: number): string {
  const read = limit.includes("=") ? [] : ["-o", "SOFT", "--noheadings", "--raw"];
  const args = ["prlimit", "--pid", String(pid), limit, ...read];
  const r =
    asUid === undefined
      ? spawnSync(args[0] as string, args.slice(1), { encoding: "utf8" })
      : spawnSync("setpriv", [`--reuid=${asUid}`, `--regid=${asUid}`, "--clear-groups", ...args], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`prlimit ${limit}: ${r.stderr || r.error?.message}`);
  return r.stdout.trim();
}

describe("load", () => {
  it("10,000 short connections at concurrency 16: every byte back, then nothing left over", async () => {
    const server = await startServe(["--quiet"]);
    await loadgen(["short", "127.0.0.1", String(server.port), "200", "16", "64", "10"]); // warm-up
    await childrenGone(server.pid);
    const fdsBefore = fdCount(server.pid);
    const rssBefore = memoryOf(server.pid)?.rssKb ?? 0;
    const r = await loadgen(["short", "127.0.0.1", String(server.port), "10000", "16", "64", "10"], 300_000);
    expect(r).toMatchObject({ connections: 10000, ok: 10000, failed: 0, mismatched: 0 });
    await childrenGone(server.pid, 20_000);
    const zombies = ps().filter((p) => p.ppid === server.pid);
    const fdsAfter = fdCount(server.pid);
    const rssAfter = memoryOf(server.pid)?.rssKb ?? 0;
    report(
      `load: 10000 x 64 B at concurrency 16: ${r.ok} exact, ${r.failed} failed, ${(r.conns_per_s as number).toFixed(0)} conn/s; ` +
        `children left ${zombies.length}; parent descriptors ${fdsBefore} -> ${fdsAfter}; parent RSS ${(rssBefore / 1024).toFixed(1)} -> ${(rssAfter / 1024).toFixed(1)} MB`,
    );
    expect(zombies).toEqual([]);
    expect(fdsAfter).toBe(fdsBefore);
    expect(rssAfter).toBeLessThan(rssBefore * 1.25);
    expect(await stop(server)).toEqual({ code: 0, signal: null });
  }, 300_000);

  it.skipIf(!linux)(
    "a burst beyond --max-children waits in the backlog: no fork storm, no busy accept loop",
    async () => {
      const server = await startServe(["--max-children", "4", "--quiet"]);
      const held = await Promise.all(Array.from({ length: 4 }, () => openServed(server.port)));
      const waiting = await Promise.all(Array.from({ length: 40 }, () => open(server.port)));
      const echoes = waiting.map((s, i) => {
        s.on("error", () => {});
        const got = collect(s);
        s.end(`waiting ${i}\n`);
        return got;
      });
      await sleep(200);
      const t0 = cpuTicks(server.pid);
      await sleep(1000);
      const idleTicks = cpuTicks(server.pid) - t0;
      const children = snapshot(server.pid).processes.length - 1;
      report(
        `burst: 44 clients, --max-children 4: ${children} children while full, parent CPU ${idleTicks} ticks in 1 s`,
      );
      expect(children).toBe(4);
      expect(idleTicks).toBeLessThanOrEqual(5);
      for (const s of held) s.end();
      const got = await Promise.all(echoes);
      expect(got.map((b) => b.toString())).toEqual(waiting.map((_, i) => `waiting ${i}\n`));
      await childrenGone(server.pid);
      expect(await stop(server)).toEqual({ code: 0, signal: null });
    },
  );
});

describe("exhaustion", () => {
  it.skipIf(!linux)("out of descriptors (EMFILE): logs once, backs off, loses no accepted connection", async () => {
    const server = await startServe(["--quiet"]);
    // The lowest free descriptor number becomes the limit: the next accept() fails.
    const held = new Set(snapshot(server.pid).processes[0]?.descriptors.map((d) => d.fd));
    let lowestFree = 0;
    while (held.has(lowestFree)) lowestFree++;
    prlimit(server.pid, `--nofile=${lowestFree}:`);
    const clients = await Promise.all(Array.from({ length: 3 }, () => open(server.port)));
    const echoes = clients.map((s, i) => {
      s.on("error", () => {});
      const got = collect(s);
      s.end(`client ${i}\n`);
      return got;
    });
    await server.proc.waitFor(/accept: EMFILE: too many open files; retrying every 100 ms/, 10_000, "stderr");
    const t0 = cpuTicks(server.pid);
    await sleep(1000);
    const ticks = cpuTicks(server.pid) - t0;
    expect(snapshot(server.pid).processes).toHaveLength(1);
    prlimit(server.pid, "--nofile=1024:");
    const got = await Promise.all(echoes);
    report(
      `EMFILE: limit ${lowestFree} descriptors; parent CPU ${ticks} ticks in 1 s of back-off; ` +
        `${count(server.proc.stderr(), "EMFILE")} log line(s); after raising the limit ${got.filter((b, i) => b.toString() === `client ${i}\n`).length}/3 echoed`,
    );
    expect(ticks).toBeLessThanOrEqual(10);
    expect(count(server.proc.stderr(), "EMFILE")).toBe(1);
    expect(got.map((b) => b.toString())).toEqual(["client 0\n", "client 1\n", "client 2\n"]);
    await childrenGone(server.pid);
    expect(await stop(server)).toEqual({ code: 0, signal: null });
  });

  it.skipIf(!linux || !root)(
    "fork() failing (EAGAIN under RLIMIT_NPROC): the connection is closed, the server goes on",
    async () => {
      // As root, fork() ignores RLIMIT_NPROC: the server runs as nobody.
      const proc = spawnCliAsUser(cli, ["serve", "0", "--host", "127.0.0.1"]);
      const m = await proc.waitFor(/listening on .*:(\d+) \(pid (\d+)\)/, 10_000, "stderr");
      const port = Number(m[1]);
      const pid = Number(m[2]);
      // Lowered, and raised again, by nobody itself (within its hard limit).
      const soft = prlimit(pid, "--nproc", 65534);
      prlimit(pid, "--nproc=1:", 65534);
      const refused = await ending(port, "no child for this one\n");
      await proc.waitFor(
        /fork: EAGAIN: resource temporarily unavailable; connection from 127\.0\.0\.1:\d+ closed/,
        5000,
        "stderr",
      );
      prlimit(pid, `--nproc=${soft}:`, 65534);
      const served = await echo(port, Buffer.from("served again\n"));
      report(
        `fork EAGAIN: client got ${refused.bytes} bytes and ${refused.how}; log: ${/realfork: fork: [^\n]*/.exec(proc.stderr())?.[0]}; next client echoed: ${served.toString().trim()}`,
      );
      expect(refused.bytes).toBe(0);
      expect(served.toString()).toBe("served again\n");
      proc.child.kill("SIGTERM");
      expect(await proc.exited()).toEqual({ code: 0, signal: null });
    },
  );
});

describe("children and peers that misbehave", () => {
  it("a child killed with SIGKILL mid-echo is reaped and reported; its client sees the end; others go on", async () => {
    const server = await startServe();
    const a = await openServed(server.port, "a1\n");
    const [childA] = await childrenOf(server.pid, 1);
    const b = await openServed(server.port, "b1\n");
    await childrenOf(server.pid, 2);
    const aEnded = collect(a);
    process.kill(childA as number, "SIGKILL");
    await aEnded;
    await server.proc.waitFor(new RegExp(`child ${childA} was killed by SIGKILL`), 5000, "stderr");
    const again = new Promise<string>((r) => b.once("data", (d) => r(d.toString())));
    b.write("b2\n");
    expect(await again).toBe("b2\n");
    report(
      `SIGKILL: child ${childA} killed mid-echo: reaped and reported, its client closed, the other child echoed on`,
    );
    b.end();
    await childrenGone(server.pid);
    expect(await stop(server)).toEqual({ code: 0, signal: null });
  });

  it("a client that resets mid-stream ends only its child; the parent serves the next", async () => {
    const server = await startServe();
    const s = await openServed(server.port);
    s.write(Buffer.alloc(1 << 20, 7));
    await sleep(50);
    s.resetAndDestroy();
    await server.proc.waitFor(/realfork: child \d+: (read|write): (ECONNRESET|EPIPE)/, 5000, "stderr");
    await childrenGone(server.pid);
    expect(server.proc.stderr()).not.toMatch(/killed by|exited with status/);
    expect((await echo(server.port, Buffer.from("next\n"))).toString()).toBe("next\n");
    report(
      `reset: ${/realfork: child \d+: [^\n]*/.exec(server.proc.stderr())?.[0]}; the child exited 0; next client served`,
    );
    expect(await stop(server)).toEqual({ code: 0, signal: null });
  });

  it("SIGPIPE: a write to a closed peer is EPIPE in a forked child, never the signal", async () => {
    const run = await runFixture("epipe.mjs", [], ["--single-threaded"]);
    // Exit status 32 is the child's way of saying "write() gave EPIPE".
    expect(event(run, "child")).toMatchObject({ state: "exited", code: 32, signal: null });
    expect(event(run, "parent")).toMatchObject({ code: "EPIPE" });
  });

  it("peers gone with the echo in flight end their children cleanly; the parent lives", async () => {
    const server = await startServe(["--buffer-size", "65536"]);
    for (let i = 0; i < 10; i++) {
      const s = await open(server.port);
      s.on("error", () => {});
      s.end(Buffer.alloc(4 << 20, i));
      await new Promise((r) => s.once("data", r));
      s.destroy();
    }
    await childrenGone(server.pid);
    const stderr = server.proc.stderr();
    report(
      `peers gone mid-echo: 10 clients closed with 4 MiB in flight: ${count(stderr, "write: EPIPE")} EPIPE, ${count(stderr, "write: ECONNRESET")} ECONNRESET in the children; none killed by a signal`,
    );
    expect(stderr).not.toMatch(/killed by|exited with status/);
    expect((await echo(server.port, Buffer.from("alive\n"))).toString()).toBe("alive\n");
    expect(await stop(server)).toEqual({ code: 0, signal: null });
  });

  it.skipIf(!linux)("a slow reader blocks its child's writes, not the parent", async () => {
    const server = await startServe(["--buffer-size", "65536"]);
    const slow = await open(server.port);
    slow.pause();
    const size = 16 << 20;
    const payload = Buffer.alloc(size, 3);
    slow.write(payload);
    await sleep(500);
    // The child is stuck in write(); meanwhile the parent accepts, forks, answers signals.
    const t0 = Date.now();
    expect((await echo(server.port, Buffer.from("meanwhile\n"))).toString()).toBe("meanwhile\n");
    const meanwhileMs = Date.now() - t0;
    server.proc.child.kill("SIGUSR2");
    await server.proc.waitFor(/fork-us:/, 5000, "stderr");
    const got = collect(slow);
    slow.end();
    slow.resume();
    const echoed = await got;
    report(
      `slow reader: 16 MiB unread for 0.5 s; another client served in ${meanwhileMs} ms; then all ${echoed.length} bytes exact`,
    );
    expect(echoed.equals(payload)).toBe(true);
    await childrenGone(server.pid);
    expect(await stop(server)).toEqual({ code: 0, signal: null });
  });

  it("SIGTERM with 50 connections active, some of them never reading: exit 0 within 5 s, nothing left", async () => {
    const server = await startServe(["--quiet"]);
    const active = await Promise.all(Array.from({ length: 45 }, () => openServed(server.port)));
    const stuck: Socket[] = [];
    for (let i = 0; i < 5; i++) {
      const s = await open(server.port);
      s.on("error", () => {});
      s.pause();
      s.write(Buffer.alloc(8 << 20, 1));
      stuck.push(s);
    }
    await childrenOf(server.pid, 50, 20_000);
    const closed = [...active, ...stuck].map((s) => new Promise((r) => s.on("close", r)));
    for (const s of stuck) s.resume();
    const t0 = Date.now();
    server.proc.child.kill("SIGTERM");
    expect(await server.proc.exited(5000)).toEqual({ code: 0, signal: null });
    const ms = Date.now() - t0;
    await Promise.all(closed);
    report(`shutdown: SIGTERM with 50 children (5 blocked writing): exit 0 after ${ms} ms, all 50 clients closed`);
    expect(server.proc.stderr()).toContain("ending 50 child(ren)");
  });
});

describe("the client when the server misbehaves", () => {
  it("a server that accepts but never answers: --timeout ends the client, exit 1, writer reaped", async () => {
    const silent = createServer((s) => s.pause());
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    const { port } = silent.address() as { port: number };
    const p = spawnTracked(cli, ["client", "127.0.0.1", String(port), "--timeout", "1s"]);
    p.child.stdin?.end("hello?\nq\n");
    expect(await p.exited(10_000)).toEqual({ code: 1, signal: null });
    expect(p.stderr()).toBe("realfork: the server sent nothing and did not close for 1 s after our half-close\n");
    report(`client, silent server: ${p.stderr().trim()} (exit 1)`);
    silent.close();
  });

  it("stdin closed at once: half-closes, the server closes, exit 0 with nothing printed", async () => {
    const server = await startServe();
    const p = spawnTracked(cli, ["client", "127.0.0.1", String(server.port)], { stdin: "ignore" });
    expect(await p.exited()).toEqual({ code: 0, signal: null });
    expect(p.stdout()).toBe("");
    expect(p.stderr()).toBe("");
    await childrenGone(server.pid);
    expect(await stop(server)).toEqual({ code: 0, signal: null });
  });

  it("the server killed mid-session: exit 1 with a clear message", async () => {
    const server = await startServe();
    const p = spawnTracked(cli, ["client", "127.0.0.1", String(server.port)]);
    p.child.stdin?.write("first\n");
    await p.waitFor(/first/);
    const [child] = await childrenOf(server.pid, 1);
    process.kill(child as number, "SIGKILL");
    expect(await p.exited()).toEqual({ code: 1, signal: null });
    expect(p.stderr()).toBe("realfork: the server closed the connection\n");
    await stop(server);
  });

  it.each([
    [["--timeout=-1"], "--timeout must be a duration from 0 to 86400s (as in 2s or 500ms), not '-1'"],
    [["--timeout", "soon"], "--timeout must be a duration from 0 to 86400s (as in 2s or 500ms), not 'soon'"],
    [["--timeout", "10"], "--timeout needs a unit: 10s or 10ms, not '10'"],
  ])("client %j: usage, exit 2", async (args, message) => {
    const p = spawnTracked(cli, ["client", "127.0.0.1", "9", ...args]);
    expect(await p.exited()).toEqual({ code: 2, signal: null });
    expect(p.stderr()).toContain(message);
  });
});

describe("security", () => {
  it("never runs a shell: tools are spawned with argument arrays", async () => {
    const { readdirSync, readFileSync } = await import("node:fs");
    const files = readdirSync(new URL("../src/", import.meta.url), { recursive: true, encoding: "utf8" }).filter((f) =>
      f.endsWith(".ts"),
    );
    const offenders = files.filter((f) => {
      const text = readFileSync(new URL(`../src/${f}`, import.meta.url), "utf8");
      // RegExp's own .exec() is fine; child_process's exec/execSync take a shell command line.
      return /(?<![.\w])exec(Sync)?\(|shell:\s*true|import \{[^}]*\bexec(Sync)?\b[^}]*\} from "node:child_process"/.test(
        text,
      );
    });
    expect(files.length).toBeGreaterThan(10);
    expect(offenders).toEqual([]);
  });
});

import { connect } from "node:net";
import { describe, expect, it } from "vitest";
import { snapshot } from "../src/inspect/fdtable.js";
import { cli } from "./helpers/paths.js";
import { ps, sleep, spawnTracked, useLeftoverCheck } from "./helpers/processes.js";
import { echoMany, open, startServe, stop } from "./helpers/servers.js";

useLeftoverCheck();

/** The workers of a --prefork server, once all N are up. */
async function workers(pid: number, n: number): Promise<number[]> {
  for (let i = 0; i < 250; i++) {
    const procs = snapshot(pid).processes.filter((p) => p.pid !== pid);
    if (procs.length === n) return procs.map((p) => p.pid).sort((a, b) => a - b);
    await sleep(20);
  }
  throw new Error(`${pid} did not get ${n} workers`);
}

describe("realfork serve --prefork", () => {
  it("serves with N workers that share the listener; the parent holds no connection", async () => {
    const server = await startServe(["--prefork", "3", "--quiet"]);
    await workers(server.pid, 3);
    const bad = await echoMany(server.port, 200, 8, (i) => Buffer.from(`prefork ${i}\n`.repeat((i % 7) + 1)));
    expect(bad).toEqual([]);
    // The listening socket: one reference in the parent, one in each worker,
    // and all of them one open file description (inherited through fork).
    const held = await open(server.port);
    held.write("x");
    await new Promise((r) => held.once("data", r));
    const snap = snapshot(server.pid);
    const listener = snap.sockets.find((s) => s.state === "LISTEN");
    expect(listener?.holders).toHaveLength(4);
    if (process.platform === "linux") expect(listener?.descriptions).toHaveLength(1);
    const conn = snap.sockets.find((s) => s.state === "ESTABLISHED");
    expect(conn?.holders).toHaveLength(1);
    expect(conn?.holders[0]?.pid).not.toBe(server.pid);
    held.destroy();
    expect(await stop(server)).toEqual({ code: 0, signal: null });
    // The stop's own SIGTERM to the workers is said once, not once per worker.
    expect(server.proc.stderr()).toContain("SIGTERM: closing the listener, ending 3 child(ren)");
    expect(server.proc.stderr()).not.toMatch(/was killed by SIGTERM|exited with status/);
  });

  it("replaces a worker killed with SIGKILL, and reports it", async () => {
    const server = await startServe(["--prefork", "2"]);
    const [victim] = await workers(server.pid, 2);
    process.kill(victim as number, "SIGKILL");
    await server.proc.waitFor(new RegExp(`child ${victim} was killed by SIGKILL`), 10_000, "stderr");
    // A worker that lived past its first second is replaced at once.
    const after = await workers(server.pid, 2);
    expect(after).not.toContain(victim);
    const bad = await echoMany(server.port, 20, 4, (i) => Buffer.from(`after ${i}\n`));
    expect(bad).toEqual([]);
    expect(server.proc.stdout()).toContain("new client connected...");
    expect(await stop(server)).toEqual({ code: 0, signal: null });
  });

  it("replaces a worker that dies at once ever more slowly, not in a fork storm", async () => {
    const server = await startServe(["--prefork", "1", "--quiet"]);
    // Each replacement is killed as soon as it appears: a crash loop.
    const delays: number[] = [];
    let [worker] = await workers(server.pid, 1);
    for (let i = 0; i < 4; i++) {
      const killedAt = Date.now();
      process.kill(worker as number, "SIGKILL");
      let next = worker;
      while (next === worker) {
        const procs = snapshot(server.pid).processes.filter((p) => p.pid !== server.pid);
        next = procs.length === 1 ? procs[0]?.pid : worker;
        await sleep(10);
      }
      delays.push(Date.now() - killedAt);
      worker = next;
    }
    // The back-off doubles from one crash to the next (125 ms x 2^n).
    expect(delays[3]).toBeGreaterThan((delays[0] as number) * 2);
    expect(await stop(server)).toEqual({ code: 0, signal: null });
  });

  it("--trace shows each worker adding a reference to the listening socket", async () => {
    const server = await startServe(["--prefork", "2", "--trace"]);
    const m = await server.proc.waitFor(
      /fork\(\) -> worker \d+[^\n]*\(refs 2\)\n[^\n]*fork\(\) -> worker \d+[^\n]*\(refs 3\)/,
      10_000,
      "stderr",
    );
    expect(m[0]).toContain("which keeps the listening socket and accepts on it");
    expect(await stop(server)).toEqual({ code: 0, signal: null });
  });

  it.skipIf(process.platform !== "linux")("workers do not outlive a parent killed with SIGKILL", async () => {
    const server = await startServe(["--prefork", "2", "--quiet"]);
    const pids = await workers(server.pid, 2);
    server.proc.child.kill("SIGKILL");
    await server.proc.died();
    for (let i = 0; i < 100 && ps().some((p) => pids.includes(p.pid)); i++) await sleep(20);
    expect(ps().filter((p) => pids.includes(p.pid))).toEqual([]);
    // And with them the last references to the listening socket: the port is closed.
    const refused = await new Promise<string>((resolve) => {
      const s = connect(server.port, "127.0.0.1", () => resolve("connected"));
      s.on("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? "error"));
    });
    expect(refused).toBe("ECONNREFUSED");
  });

  it("answers SIGUSR2 with the fork() latencies of its workers", async () => {
    const server = await startServe(["--prefork", "3", "--quiet"]);
    await workers(server.pid, 3);
    server.proc.child.kill("SIGUSR2");
    const m = await server.proc.waitFor(/fork-us:((?: \d+)*)\n/, 5000, "stderr");
    expect((m[1] ?? "").trim().split(" ")).toHaveLength(3);
    // Taken means reset: the next report is empty.
    server.proc.child.kill("SIGUSR2");
    await server.proc.waitFor(/fork-us:\n/, 5000, "stderr");
    expect(await stop(server)).toEqual({ code: 0, signal: null });
  });

  it.each([
    [["--prefork", "0"], "--prefork must be a whole number from 1 to 4096, not '0'"],
    [["--prefork", "2", "--max-children", "4"], "--max-children applies to the fork-per-connection server"],
    [["--prefork", "2", "--leak-parent"], "--leak-parent applies to the fork-per-connection server"],
  ])("serve 0 %j: one line on stderr, exit 2", async (args, message) => {
    const p = spawnTracked(cli, ["serve", "0", ...args]);
    expect(await p.exited()).toEqual({ code: 2, signal: null });
    expect(p.stderr()).toContain(message);
  });
});

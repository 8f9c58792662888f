// The CLI and library scripts started without --single-threaded: node is
// restarted with the flags in the same process (execve keeps the pid), or
// the command fails at start with exit 2 and a line that says how to run it.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { NODE_FLAGS } from "../src/cli/node-flags.js";
import { event, runFixture } from "./helpers/fixtures.js";
import { cli, fixture, root } from "./helpers/paths.js";
import { spawnTracked, useLeftoverCheck } from "./helpers/processes.js";
import { echo, stop } from "./helpers/servers.js";

useLeftoverCheck();

const cmdline = (pid: number): string[] => readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").slice(0, -1);

describe.skipIf(process.platform !== "linux")("started without the node flags", () => {
  it.each([
    ["node bin/realfork.js", cli],
    ["node dist/cli/main.js", `${root}dist/cli/main.js`],
  ])("%s serve: restarts itself with them, same pid, and forks", async (_, script) => {
    const proc = spawnTracked(process.execPath, [script, "serve", "0", "--host", "127.0.0.1"]);
    const m = await proc.waitFor(/listening on 127\.0\.0\.1:(\d+) \(pid (\d+)\)/, 10_000, "stderr");
    expect(Number(m[2])).toBe(proc.pid);
    expect(cmdline(proc.pid)).toEqual([process.execPath, ...NODE_FLAGS, script, "serve", "0", "--host", "127.0.0.1"]);
    expect((await echo(Number(m[1]), Buffer.from("forked\n"))).toString()).toBe("forked\n");
    await proc.waitFor(/removed proc id: \d+ \n/);
    expect(await stop({ proc, port: Number(m[1]), pid: proc.pid })).toEqual({ code: 0, signal: null });
  });

  it("keeps node flags given by the user, and their values", async () => {
    const flags = ["--max-old-space-size=64", "--use-largepages=off"];
    const proc = spawnTracked(process.execPath, [...flags, cli, "serve", "0", "--host", "127.0.0.1"]);
    await proc.waitFor(/listening on/, 10_000, "stderr");
    const missing = NODE_FLAGS.filter((f) => !f.startsWith("--use-largepages"));
    expect(cmdline(proc.pid)).toEqual([
      process.execPath,
      ...flags,
      ...missing,
      cli,
      "serve",
      "0",
      "--host",
      "127.0.0.1",
    ]);
    proc.child.kill("SIGTERM");
    expect(await proc.exited()).toEqual({ code: 0, signal: null });
  });

  it("fails at start with exit 2 and how to run it when the restarted node lacks the flags", async () => {
    // The marker says "already restarted once": the loop guard's path.
    const proc = spawnTracked(process.execPath, [cli, "serve", "0"], {
      env: { ...process.env, REALFORK_REEXEC: "1" },
    });
    expect(await proc.exited()).toEqual({ code: 2, signal: null });
    expect(proc.stderr()).toBe(
      `realfork: node was restarted with ${NODE_FLAGS.join(" ")} but does not have them; start it as: node ${NODE_FLAGS.join(" ")} ${cli} ...\n`,
    );
    expect(proc.stdout()).toBe("");
  });

  it("a library script: ensureNodeFlags() restarts it with --single-threaded, same pid, arguments kept", async () => {
    const proc = spawnTracked(process.execPath, [fixture("ensure-flags.mjs"), "a b", "--x"], { stdin: "ignore" });
    expect(await proc.exited()).toEqual({ code: 0, signal: null });
    const ran = JSON.parse(proc.stdout()) as Record<string, unknown>;
    expect(ran).toMatchObject({
      pid: proc.pid,
      execArgv: ["--single-threaded"],
      args: ["a b", "--x"],
      status: { state: "exited", code: 7 },
      marker: null,
    });
  });

  it("ensureNodeFlags() with no script to restart (node -e) throws ReexecError naming the flag", async () => {
    const code = `import("realfork").then((m) => { try { m.ensureNodeFlags(); } catch (e) { console.log(JSON.stringify({ event: "err", name: e.name, code: e.code, message: e.message })); } })`;
    const proc = spawnTracked(process.execPath, ["-e", code], { stdin: "ignore", cwd: root });
    expect(await proc.exited()).toEqual({ code: 0, signal: null });
    expect(JSON.parse(proc.stdout())).toEqual({
      event: "err",
      name: "ReexecError",
      code: "ERR_REALFORK_REEXEC",
      message: "no script to restart with --single-threaded (node -e or the REPL): start node with --single-threaded",
    });
  });

  it("fork() without the flag names the one-liner", async () => {
    const run = await runFixture("fork-many.mjs", ["1"], []);
    expect(run.code).not.toBe(0);
    expect(run.stderr).toContain('call ensureNodeFlags() from "realfork" first thing in your script');
    expect(() => event(run, "never")).toThrow();
  });
});

// The contract every command keeps (README, "Commands"): wrong usage is one
// line on stderr with the reason and a pointer to --help, exit 2, nothing on
// stdout; durations carry their unit; options that would do nothing are refused.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { runCli } from "./helpers/cli.js";
import { cli } from "./helpers/paths.js";
import { spawnTracked, useLeftoverCheck } from "./helpers/processes.js";
import { childrenGone, open, startServe, stop } from "./helpers/servers.js";

useLeftoverCheck();

const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string };

describe("wrong usage: one line, exit 2", () => {
  it.each([
    [["serve", "abc"], "realfork serve: <port> must be a number from 0 to 65535, not 'abc'"],
    [["serve", "0", "-1"], "realfork serve: unknown option '-1'"],
    [
      ["serve", "0", "--backlog", "-5"],
      "realfork serve: --backlog needs a value; one that starts with '-' is written --backlog=VALUE",
    ],
    [["serve", "0", "--backlog=-5"], "realfork serve: --backlog must be a whole number from 1 to 65535, not '-5'"],
    [["serve", "0", "--backlog"], "realfork serve: --backlog needs a value"],
    [["serve", "0", "--quiet=yes"], "realfork serve: --quiet takes no value"],
    [["serve", "0", "--json"], "realfork serve: --json shapes --trace's lines, and --trace is not given"],
    [["check"], "realfork check: missing <pid>"],
    [["compare", "--rounds", "0"], "realfork compare: --rounds must be a whole number from 1 to 100, not '0'"],
    [
      ["compare", "--prefork", "2", "--prefork-connections", "0"],
      "realfork compare: --prefork-connections must be a whole number from 1 to 10000000, not '0'",
    ],
    [
      ["compare", "--prefork-connections", "5000"],
      "realfork compare: --prefork-connections is for the prefork servers, and neither --prefork nor --peers is given",
    ],
    [
      ["fds", "1", "--interval", "100ms"],
      "realfork fds: --interval is how often --watch looks, and --watch is not given",
    ],
    [["fds", "1", "--port", "9190"], "realfork fds: give a <pid> or --port, not both ('1' and --port 9190)"],
    [
      ["fds", "1", "--json", "--sockets"],
      "realfork fds: --sockets trims the text table; --json always has every descriptor",
    ],
    [["fds", "1", "--watch", "--interval", "100"], "realfork fds: --interval needs a unit: 100s or 100ms, not '100'"],
    [["step", "x"], "realfork step: <pid> must be a process id, not 'x'"],
    [["demo", "--svg"], "realfork demo: --svg needs a value"],
    [["client", "127.0.0.1", "9", "--timeout", "2"], "realfork client: --timeout needs a unit: 2s or 2ms, not '2'"],
    [
      ["client", "127.0.0.1", "9", "--timeout", "1.0005s"],
      "realfork client: --timeout must be a duration from 0 to 86400s (as in 2s or 500ms), not '1.0005s'",
    ],
    [["check", "1", "--timeout", "2"], "realfork check: --timeout needs a unit: 2s or 2ms, not '2'"],
    [["nope"], "realfork: unknown command 'nope'"],
  ])("%j", async (args, message) => {
    const r = await runCli(args);
    const command = args[0] === "nope" ? "realfork" : `realfork ${args[0]}`;
    expect(r.stderr).toBe(`${message} (see ${command} --help)\n`);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
  });
});

describe("what every CLI has", () => {
  it("--version prints package.json's version", async () => {
    const r = await runCli(["--version"]);
    expect(r).toMatchObject({ code: 0, stdout: `realfork ${pkg.version}\n`, stderr: "" });
  });

  it("help <command> is <command> --help", async () => {
    const viaHelp = await runCli(["help", "fds"]);
    const viaOption = await runCli(["fds", "--help"]);
    expect(viaHelp.code).toBe(0);
    expect(viaHelp.stdout).toMatch(/^Usage: realfork fds <pid>/);
    expect(viaHelp.stdout).toBe(viaOption.stdout);
    const unknown = await runCli(["help", "nope"]);
    expect(unknown).toMatchObject({ code: 2, stderr: "realfork: unknown command 'nope' (see realfork --help)\n" });
  });

  it("fds --watch into a pipe: no screen-clearing codes, each snapshot under its time line; --interval 0.05s", async () => {
    const server = await startServe();
    const watch = spawnTracked(cli, ["fds", String(server.pid), "--watch", "--interval", "0.05s", "--sockets"]);
    await watch.waitFor(/LISTEN/);
    const client = await open(server.port);
    await watch.waitFor(/ESTABLISHED/);
    client.destroy();
    await childrenGone(server.pid);
    await watch.waitFor(/ESTABLISHED[\s\S]*realfork fds --watch, [\s\S]*\(1 process\)/);
    watch.child.kill("SIGINT");
    expect(await watch.exited()).toEqual({ code: 0, signal: null });
    expect(watch.stdout()).not.toContain("\x1b");
    expect(watch.stdout()).toMatch(/^realfork fds --watch, \d{4}-\d\d-\d\dT[\d:.]+Z \(Ctrl-C ends\)\n\n/);
    expect(watch.stdout()).toMatch(
      /\(\d+ more descriptors? of the runtime: epoll, eventfd, pipes; realfork fds without --sockets lists them\)/,
    );
    await stop(server);
  });
});

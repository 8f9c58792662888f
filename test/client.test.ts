import { describe, expect, it } from "vitest";
import { cBin, cli } from "./helpers/paths.js";
import { spawnTracked, useLeftoverCheck } from "./helpers/processes.js";
import { childrenGone, startC, startServe, stop } from "./helpers/servers.js";

useLeftoverCheck();

const PREFIX = "Message from server: ";
/** What the client printed, with the prefixes taken out: the echo itself. */
const echoed = (out: string) => out.split(PREFIX).join("");

function runClient(bin: "ts" | "c", port: number, input: string, extra: string[] = []) {
  const p =
    bin === "ts"
      ? spawnTracked(cli, ["client", "127.0.0.1", String(port), ...extra])
      : spawnTracked(cBin("echo_mpclient"), ["127.0.0.1", String(port)]);
  p.child.stdin?.end(input);
  return p;
}

describe("realfork client", () => {
  it("prints the prefix per read(), as the C does (a 70-byte line in 30-byte pieces), or per line with --prefix-per-line", async () => {
    const server = await startServe();
    const long = "x".repeat(70);
    const asC = runClient("ts", server.port, `${long}\nshort\nq\n`);
    expect(await asC.exited()).toEqual({ code: 0, signal: null });
    expect(echoed(asC.stdout())).toBe(`${long}\nshort\n`);
    // At most 30 bytes per read: the long line's three pieces each have the prefix.
    const firstLine = asC.stdout().split("\n")[0] as string;
    expect(firstLine.split(PREFIX).length - 1).toBeGreaterThanOrEqual(3);
    const perLine = runClient("ts", server.port, `${long}\nshort\nq\n`, ["--prefix-per-line"]);
    expect(await perLine.exited()).toEqual({ code: 0, signal: null });
    expect(perLine.stdout()).toBe(`${PREFIX}${long}\n${PREFIX}short\n`);
    await stop(server);
  });

  it.each(["q", "Q"])("sends lines until %s, half-closes, prints the rest of the echo and exits 0", async (q) => {
    const server = await startServe();
    const p = runClient("ts", server.port, `hello\na line longer than thirty bytes, to be split\n${q}\nnot sent\n`);
    expect(await p.exited()).toEqual({ code: 0, signal: null });
    expect(p.stdout().startsWith(PREFIX)).toBe(true);
    expect(echoed(p.stdout())).toBe("hello\na line longer than thirty bytes, to be split\n");
    expect(p.stderr()).toBe("");
    await stop(server);
  });

  it("half-closes at the end of input too", async () => {
    const server = await startServe();
    const p = runClient("ts", server.port, "one\ntwo\nno newline at the end");
    expect(await p.exited()).toEqual({ code: 0, signal: null });
    expect(echoed(p.stdout())).toBe("one\ntwo\nno newline at the end");
    await stop(server);
  });

  it("exits 1 with a clear message when the server closes first, and leaves no process", async () => {
    const server = await startServe();
    const p = spawnTracked(cli, ["client", "127.0.0.1", String(server.port)]);
    p.child.stdin?.write("before\n");
    await p.waitFor(/before/);
    await stop(server);
    expect(await p.exited()).toEqual({ code: 1, signal: null });
    expect(p.stderr()).toBe("realfork: the server closed the connection\n");
  });

  it("reports a refused connection in one line, exit 1", async () => {
    const server = await startServe();
    const { port } = server;
    await stop(server);
    const p = runClient("ts", port, "x\n");
    expect(await p.exited()).toEqual({ code: 1, signal: null });
    expect(p.stderr()).toBe(
      "realfork: connect: ECONNREFUSED: connection refused (is the server running on that port?)\n",
    );
  });

  it("reports a host that does not resolve, exit 1", async () => {
    const p = spawnTracked(cli, ["client", "no-such-host.invalid", "9"]);
    p.child.stdin?.end();
    expect(await p.exited()).toEqual({ code: 1, signal: null });
    expect(p.stderr()).toMatch(
      /^realfork: getaddrinfo: (ENOTFOUND|EAI_AGAIN): cannot resolve 'no-such-host.invalid'\n$/,
    );
  });

  it.each([
    [["127.0.0.1"], "missing <port>"],
    [["127.0.0.1", "0"], "<port> must be a number from 1 to 65535, not '0'"],
    [["127.0.0.1", "9", "extra"], "unexpected argument 'extra'"],
    [["127.0.0.1", "9", "--nope"], "unknown option '--nope'"],
  ])("client %j: one line on stderr, exit 2", async (args, message) => {
    const p = spawnTracked(cli, ["client", ...args]);
    p.child.stdin?.end();
    expect(await p.exited()).toEqual({ code: 2, signal: null });
    expect(p.stderr()).toContain(message);
    expect(p.stderr()).toContain("(see realfork client --help)\n");
  });
});

describe("interop with the C originals", () => {
  // The book's client reads with a 30-byte buffer and writes buf[30] on a
  // full read (QUIRK 8): its lines stay short here. It also loops forever
  // at end of input (QUIRK 9), so its input always ends with q.
  const input = "first line\nsecond\nthird one\nq\n";
  const expected = "first line\nsecond\nthird one\n";

  it.each([
    ["ts", "ts"],
    ["ts", "c"],
    ["c", "ts"],
    ["c", "c"],
  ] as const)("%s client against %s server", async (clientKind, serverKind) => {
    const server = serverKind === "ts" ? await startServe() : await startC("echo_mpserv");
    const p = runClient(clientKind, server.port, input);
    expect(await p.exited()).toEqual({ code: 0, signal: null });
    expect(echoed(p.stdout())).toBe(expected);
    // The book's server buffers its stdout into a pipe (QUIRK 3): wait for
    // the reaping in the process table instead of in its output.
    await childrenGone(server.pid);
    await stop(server);
  });
});

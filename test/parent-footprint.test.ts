// What keeps a forking parent small: the library and the serve command load
// none of Node's socket, process, inspector or stream modules (each is pages
// that every fork() copies), and numeric addresses are told apart by
// inet_pton, not by node:net.
import { describe, expect, it } from "vitest";
import { native } from "../src/lib/native.js";
import { ipFamily } from "../src/lib/validate.js";
import { runFixture } from "./helpers/fixtures.js";
import { useLeftoverCheck } from "./helpers/processes.js";

useLeftoverCheck();

describe("a forking parent's footprint", () => {
  it("importing realfork and the serve command loads no net, child_process, inspector, worker_threads or streams", async () => {
    const run = await runFixture("parent-modules.mjs", [], []);
    expect(run.code).toBe(0);
    const loaded = (JSON.parse(run.stdout) as { loaded: string[] }).loaded;
    // The check sees something: the library's own imports of node:os and node:module show up.
    expect(loaded).toContain("os");
    const heavy = [
      "net",
      "dgram",
      "child_process",
      "inspector",
      "worker_threads",
      "stream",
      "internal/fs/streams",
      "internal/mime",
    ];
    expect(loaded.filter((m) => heavy.includes(m))).toEqual([]);
  });

  it.each([
    ["127.0.0.1", 4],
    ["0.0.0.0", 4],
    ["::1", 6],
    ["::ffff:127.0.0.1", 6],
    ["fe80::1%lo", 0],
    ["1.2.3", 0],
    ["127.0.0.01", 0],
    ["localhost", 0],
    ["", 0],
  ] as const)("ipFamily(%j) is %i, as inet_pton reads it", (text, family) => {
    expect(ipFamily(text)).toBe(family);
    expect(native.ipFamily(text)).toBe(family);
  });

  it("ipFamily() of a non-string throws ERR_INVALID_ARG_TYPE", () => {
    expect(() => ipFamily(7 as unknown as string)).toThrow(expect.objectContaining({ code: "ERR_INVALID_ARG_TYPE" }));
  });
});

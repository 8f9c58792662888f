import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { CheckReport } from "../src/inspect/check.js";
import type { FdSnapshot, SocketEntry } from "../src/inspect/fdtable.js";
import { cli } from "./helpers/paths.js";
import { decodePng, inkedPixels } from "./helpers/png.js";
import { spawnTracked, useLeftoverCheck } from "./helpers/processes.js";

useLeftoverCheck();

interface Record {
  part: string;
  type: string;
  moment?: string;
  snapshot?: FdSnapshot;
  sockets?: SocketEntry[];
  sawEof?: boolean;
  event?: string;
  who?: string;
  code?: number;
  server?: string;
  report?: CheckReport;
}

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const pids = (s: SocketEntry | undefined) => s?.holders.map((h) => h.pid);

describe("realfork demo", () => {
  it("tells the story on real tables at each step, and draws each step", async () => {
    const dir = mkdtempSync(join(tmpdir(), "realfork-demo-test-"));
    dirs.push(dir);
    const p = spawnTracked(cli, ["demo", "--json", "--svg", join(dir, "pictures")]);
    expect(await p.exited(150_000)).toEqual({ code: 0, signal: null });
    expect(p.stderr()).toBe("");
    const records = p
      .stdout()
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record);
    const step = (part: string, event: string) =>
      records.find((r) => r.part === part && r.type === "step" && r.event === event);
    const find = (part: string, type: string, moment?: string) =>
      records.find((r) => r.part === part && r.type === type && (moment === undefined || r.moment === moment));

    // Step 3: parent and child wait right after fork(): both sockets at refs 2, both holders.
    const fork = step("correct", "fork");
    const [parent, child] = fork?.snapshot?.processes.map((x) => x.pid) ?? [];
    expect(fork?.who).toBe(`parent ${parent} and child ${child}`);
    expect(pids(fork?.sockets?.find((s) => s.state === "LISTEN"))).toEqual([parent, child]);
    expect(pids(fork?.sockets?.find((s) => s.state === "ESTABLISHED"))).toEqual([parent, child]);
    const closedListener = step("correct", "child-closed-listener");
    expect(pids(closedListener?.sockets?.find((s) => s.state === "LISTEN"))).toEqual([parent]);
    expect(pids(closedListener?.sockets?.find((s) => s.state === "ESTABLISHED"))).toEqual([parent, child]);
    expect(pids(step("correct", "parent-closed")?.sockets?.find((s) => s.state === "ESTABLISHED"))).toEqual([child]);
    expect(find("correct", "client")?.sawEof).toBe(true);
    expect(find("correct", "fds", "after-exit")?.snapshot?.sockets.map((s) => s.state)).toEqual(["LISTEN"]);
    expect(records.filter((r) => r.part === "correct" && r.type === "step").map((r) => r.event)).toEqual([
      "listening",
      "accepted",
      "fork",
      "child-closed-listener",
      "parent-closed",
      "child-closed",
      "child-exiting",
      "reaped",
    ]);

    // The leaks: the counts that stay.
    const leaked = find("leak-parent", "fds", "after-exit")?.snapshot as FdSnapshot;
    expect(pids(leaked.sockets.find((s) => s.state === "CLOSE_WAIT"))).toEqual([leaked.root]);
    expect(find("leak-parent", "client")?.sawEof).toBe(false);
    const leakChild = step("leak-child", "child-closed");
    const [lParent, lChild] = leakChild?.snapshot?.processes.map((x) => x.pid) ?? [];
    expect(pids(leakChild?.sockets?.find((s) => s.state === "LISTEN"))).toEqual([lParent, lChild]);
    expect(pids(step("leak-child", "reaped")?.sockets?.find((s) => s.state === "LISTEN"))).toEqual([lParent]);

    // The split client: shutdown() changes the state, not the count; close() the count, not the state.
    const forked = step("client", "fork")?.sockets?.[0];
    const half = step("client", "half-closed")?.sockets?.[0];
    const closed = step("client", "writer-closed")?.sockets?.[0];
    expect(forked?.state).toBe("ESTABLISHED");
    expect(half?.holders.length).toBe(2);
    expect(half?.state).not.toBe("ESTABLISHED");
    expect(closed?.holders.length).toBe(1);
    expect(closed?.state).toBe(half?.state);
    expect(step("client", "reader-closed")?.sockets).toEqual([]);
    expect(find("client", "client-exit")?.code).toBe(0);

    // The end: check finds nothing in the correct server, and the leak in the other.
    const checks = records.filter((r) => r.part === "check" && r.type === "check");
    expect(checks.map((r) => [r.server, r.report?.findings.map((f) => f.kind).sort()])).toEqual([
      ["correct", []],
      ["--leak-parent", expect.arrayContaining(["connection-in-parent", "close-wait"])],
    ]);

    // One picture per step, in the order of the index, each a real drawing.
    const steps = records.filter((r) => r.type === "step");
    const files = readdirSync(join(dir, "pictures"))
      .filter((f) => f.endsWith(".svg"))
      .sort();
    expect(files.length).toBe(steps.length);
    const index = readFileSync(join(dir, "pictures", "index.html"), "utf8");
    const shown = [...index.matchAll(/<img src="([^"]+)"/g)].map((m) => m[1]);
    expect(shown).toEqual(files);
    expect(index).toContain("Parent and child now each hold the listening socket AND the connected socket");
    for (const f of files) {
      const svg = readFileSync(join(dir, "pictures", f), "utf8");
      execFileSync("xmllint", ["--noout", "-"], { input: svg, stdio: ["pipe", "ignore", "pipe"] });
      const png = execFileSync("rsvg-convert", ["--format", "png"], { input: svg });
      expect(inkedPixels(decodePng(png)), f).toBeGreaterThan(5000);
    }
    expect(readFileSync(join(dir, "pictures", files[2] as string), "utf8")).toMatch(/>refs 2<[\s\S]*>refs 2</);
  }, 200_000);

  it("prints a readable story on defaults", async () => {
    const p = spawnTracked(cli, ["demo"]);
    expect(await p.exited(150_000)).toEqual({ code: 0, signal: null });
    expect(p.stdout()).toContain("PART 1: the correct server");
    expect(p.stdout()).toMatch(/Step 3 \[parent (\d+) and child (\d+)\] fork\(\)/);
    expect(p.stdout()).toMatch(/LISTEN .* refs 2 {2}holders (\d+):\d+ (\d+):\d+\n/);
    expect(p.stdout()).toContain("The client saw EOF");
    expect(p.stdout()).toContain("The client has NOT seen EOF");
    expect(p.stdout()).toContain("PART 4: the split client");
    expect(p.stderr()).toBe("");
  }, 200_000);

  it("says so when it cannot write its pictures, before it starts anything", async () => {
    const dir = mkdtempSync(join(tmpdir(), "realfork-demo-test-"));
    dirs.push(dir);
    writeFileSync(join(dir, "file"), "");
    const p = spawnTracked(cli, ["demo", "--svg", join(dir, "file", "pictures")]);
    expect(await p.exited()).toEqual({ code: 1, signal: null });
    expect(p.stderr()).toBe(`realfork: --svg: cannot write pictures to '${join(dir, "file", "pictures")}': ENOTDIR\n`);
    expect(p.stdout()).toBe("");
    const usage = spawnTracked(cli, ["demo", "--svg"]);
    expect(await usage.exited()).toEqual({ code: 2, signal: null });
  });

  it.runIf(process.platform === "linux")(
    "--svg under /proc: refused at once, not a hang (Node 22's and 24's recursive mkdir never returns there)",
    async () => {
      for (const dir of ["/proc/nope", "/proc/nope/deeper"]) {
        const p = spawnTracked(cli, ["demo", "--svg", dir]);
        expect(await p.exited(10_000)).toEqual({ code: 1, signal: null });
        expect(p.stderr()).toBe(`realfork: --svg: cannot write pictures to '${dir}': ENOENT\n`);
        expect(p.stdout()).toBe("");
      }
    },
  );
});

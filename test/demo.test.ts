import { describe, expect, it } from "vitest";
import type { FdSnapshot } from "../src/inspect/fdtable.js";
import { cli } from "./helpers/paths.js";
import { spawnTracked, useLeftoverCheck } from "./helpers/processes.js";

useLeftoverCheck();

interface Record {
  part: string;
  type: string;
  moment?: string;
  snapshot?: FdSnapshot;
  sawEof?: boolean;
  event?: string;
}

describe("realfork demo", () => {
  it("tells the story on real tables, and the leak differs where the C material says", async () => {
    const p = spawnTracked(cli, ["demo", "--json"]);
    expect(await p.exited(30_000)).toEqual({ code: 0, signal: null });
    const records = p
      .stdout()
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record);
    const find = (part: string, type: string, moment?: string) =>
      records.find((r) => r.part === part && r.type === type && (moment === undefined || r.moment === moment));

    const during = find("correct", "fds", "connected")?.snapshot as FdSnapshot;
    const [parent, child] = during.processes;
    expect(during.sockets.find((s) => s.state === "LISTEN")?.holders.map((h) => h.pid)).toEqual([parent?.pid]);
    expect(during.sockets.find((s) => s.state === "ESTABLISHED")?.holders.map((h) => h.pid)).toEqual([child?.pid]);
    expect(find("correct", "client")?.sawEof).toBe(true);
    expect(find("correct", "fds", "after-exit")?.snapshot?.sockets.map((s) => s.state)).toEqual(["LISTEN"]);

    const leaked = find("leak-parent", "fds", "after-exit")?.snapshot as FdSnapshot;
    expect(leaked.sockets.find((s) => s.state === "CLOSE_WAIT")?.holders.map((h) => h.pid)).toEqual([leaked.root]);
    expect(find("leak-parent", "client")?.sawEof).toBe(false);
    const steps = records.filter((r) => r.part === "correct" && r.type === "step").map((r) => r.event);
    expect(steps).toEqual(
      expect.arrayContaining([
        "listening",
        "accepted",
        "forked",
        "parent-closed",
        "child-closed-listener",
        "child-closed",
        "reaped",
      ]),
    );
  });

  it("prints a readable story on defaults", async () => {
    const p = spawnTracked(cli, ["demo"]);
    expect(await p.exited(30_000)).toEqual({ code: 0, signal: null });
    expect(p.stdout()).toContain("PART 1: the correct server");
    expect(p.stdout()).toContain("The client saw EOF");
    expect(p.stdout()).toContain("The client has NOT seen EOF");
    expect(p.stderr()).toBe("");
  });
});

// The tests' own safety net (test/helpers/processes.ts): what a failing test
// leaves running is killed after it, and each process killed is reported.
import { describe, expect, it } from "vitest";
import { processExists } from "../src/inspect/fdtable.js";
import { checkLeftovers, familyOf, ps, sleep, spawnTracked, useLeftoverCheck } from "./helpers/processes.js";

useLeftoverCheck();

/** A process that starts a child in its group and a grandchild in a session of its own, prints their pids, and waits. */
const family = `
const { spawn } = require("node:child_process");
const inGroup = spawn("sleep", ["300"], { stdio: "ignore" });
const ownSession = spawn("sleep", ["301"], { stdio: "ignore", detached: true });
console.log(inGroup.pid, ownSession.pid);
setInterval(() => {}, 1000);
`;

describe("checkLeftovers", () => {
  it("kills what a test left running, its group and the descendants that left it, one line each", async () => {
    const p = spawnTracked(process.execPath, ["-e", family]);
    const m = await p.waitFor(/^(\d+) (\d+)\n/);
    const pids = [p.pid, Number(m[1]), Number(m[2])];
    const rows = ps();
    expect(rows.find((r) => r.pid === pids[2])?.pgid).toBe(pids[2]); // out of the tracked group
    expect(
      familyOf([p.pid], rows)
        .map((r) => r.pid)
        .sort(),
    ).toEqual([...pids].sort());

    const report = await checkLeftovers();
    expect(report.map((line) => Number(/^killed: pid (\d+) \(/.exec(line)?.[1])).sort()).toEqual([...pids].sort());
    expect(report.every((line) => line.endsWith(", left running by the test"))).toBe(true);
    for (let i = 0; i < 100 && pids.some(processExists); i++) await sleep(20);
    expect(pids.filter(processExists)).toEqual([]);
    expect(await p.exited()).toEqual({ code: null, signal: "SIGKILL" });
  });

  it("reports nothing for a test that ended what it started", async () => {
    const p = spawnTracked("true", []);
    expect(await p.exited()).toEqual({ code: 0, signal: null });
    expect(await checkLeftovers()).toEqual([]);
  });
});

// What a fork-per-connection child costs, in counts that load does not move
// (page faults, from /proc/PID/stat): a child must not get dearer the longer
// the server runs. Maglev, once it had compiled the parent's accept loop,
// made each child write ~115 more pages of the malloc heap (the CLI runs
// node with --no-maglev; docs/benchmarks.md, "Node 26").
import { describe, expect, it } from "vitest";
import { statFields } from "../src/inspect/procstate.js";
import { cBin } from "./helpers/paths.js";
import { spawnTracked, useLeftoverCheck } from "./helpers/processes.js";
import { childrenGone, startServe, stop } from "./helpers/servers.js";

useLeftoverCheck();

/** Page faults of the server's reaped children (cminflt). */
const childFaults = (pid: number): number => Number(statFields(pid)?.[8]);

async function load(port: number, connections: number): Promise<void> {
  const args = ["short", "127.0.0.1", String(port), String(connections), "4", "30", "60"];
  const proc = spawnTracked(cBin("loadgen"), args);
  expect(await proc.exited(60_000)).toEqual({ code: 0, signal: null });
}

describe.skipIf(process.platform !== "linux")("the cost of a serve child", () => {
  it("page faults per child stay where they were after the parent served 1000 connections", async () => {
    const server = await startServe(["--quiet"]);
    const perChild = async (connections: number) => {
      const before = childFaults(server.pid);
      await load(server.port, connections);
      await childrenGone(server.pid);
      return (childFaults(server.pid) - before) / connections;
    };
    try {
      const fresh = await perChild(200);
      await load(server.port, 1000);
      await childrenGone(server.pid);
      const later = await perChild(200);
      expect(fresh).toBeGreaterThan(10);
      // With Maglev on: ~2x (116 -> 233 on node 26).
      expect(later / fresh).toBeLessThan(1.4);
    } finally {
      expect(await stop(server)).toEqual({ code: 0, signal: null });
    }
  }, 120_000);
});

import { describe, expect, it } from "vitest";
import { cli } from "./helpers/paths.js";
import { spawnTracked, useLeftoverCheck } from "./helpers/processes.js";

useLeftoverCheck();

describe("realfork bench-http", () => {
  it("measures forked http workers and node:cluster in one run, every answer checked", async () => {
    const p = spawnTracked(process.execPath, [
      cli,
      "bench-http",
      "--workers",
      "2",
      "--requests",
      "300",
      "--concurrency",
      "4",
      "--rows",
      "20000",
      "--semi-space",
      "1",
      "--json",
    ]);
    const { code } = await p.exited(180_000);
    expect(code, p.stderr()).toBe(0);
    const out = JSON.parse(p.stdout()) as { options: { nodeFlags: string[] }; sides: Array<Record<string, unknown>> };
    expect(out.options.nodeFlags).toEqual(["--max-semi-space-size=1"]);
    expect(out.sides.map((s) => s.kind)).toEqual(["fork", "cluster-rr", "cluster-none"]);
    for (const side of out.sides) {
      expect(side.errors).toBe(0);
      expect(side.rpsClose as number).toBeGreaterThan(0);
      expect(side.rpsKeepAlive as number).toBeGreaterThan(0);
      expect(side.idleUssKb as number[]).toHaveLength(2);
      expect(side.loadedUssKb as number[]).toHaveLength(2);
      expect(side.forkToListenMs as number[]).toHaveLength(2);
    }
  });

  it("rejects wrong usage with exit code 2 and a pointer to the help", async () => {
    const p = spawnTracked(process.execPath, [cli, "bench-http", "--servers", "fork,nginx"]);
    expect((await p.exited()).code).toBe(2);
    expect(p.stderr()).toContain("--servers takes fork, cluster-rr, cluster-none, not 'nginx'");
    expect(p.stderr()).toContain("(see realfork bench-http --help)\n");
  });
});

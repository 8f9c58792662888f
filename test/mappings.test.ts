import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { root } from "./helpers/paths.js";

const work = mkdtempSync(join(tmpdir(), "realfork-mappings-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

// native/linux/mappings.cc finds its madvise spans once, at the first fork.
// A page V8 places after that, anywhere, must still reach the child.
describe.runIf(process.platform === "linux")("MADV_DOFORK before each fork (native/linux/mappings.cc)", () => {
  it("hands the child a DONTFORK page placed below or above every mapping after the first fork", () => {
    const bin = join(work, "mappings-check");
    const nodeInclude = join(dirname(dirname(process.execPath)), "include", "node");
    execFileSync("c++", [
      "-std=c++17",
      "-O1",
      // napi.h's inline functions, never called here, are dropped with their references to Node.
      "-ffunction-sections",
      "-Wl,--gc-sections",
      `-I${nodeInclude}`,
      `-I${join(root, "node_modules", "node-addon-api")}`,
      join(root, "test", "native", "mappings-check.cc"),
      join(root, "native", "linux", "mappings.cc"),
      "-o",
      bin,
    ]);
    const pages = execFileSync(bin, { encoding: "utf8", timeout: 10_000 })
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(pages).toEqual([
      { page: "below", placed: true, exited: 0, signal: 0 },
      { page: "above", placed: true, exited: 0, signal: 0 },
    ]);
  });
});

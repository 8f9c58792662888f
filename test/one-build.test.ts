import { readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { root } from "./helpers/paths.js";

// Test files import src/; fixtures and the CLI run dist/. The suite's
// globalSetup (test/setup/build.ts) compiles src/ into dist/ first, so both
// are the same code: no dist/ file may be older than its source.
function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : [],
  );
}

describe("one build under test", () => {
  it("has every dist/ file compiled from the src/ the test files import", () => {
    const src = join(root, "src");
    const stale = sources(src).filter((file) => {
      const built = join(root, "dist", relative(src, file)).replace(/\.ts$/, ".js");
      return statSync(built).mtimeMs < statSync(file).mtimeMs;
    });
    expect(stale).toEqual([]);
  });
});

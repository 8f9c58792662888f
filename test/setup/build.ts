// Test files import src/, fixtures and the CLI run dist/: one build for both.
// dist/ is compiled from src/ once before any test file runs, so that a run
// after an edit does not test two versions of the code.
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";

export default function buildOnce(): void {
  const root = fileURLToPath(new URL("../../", import.meta.url));
  execFileSync(process.execPath, [`${root}node_modules/typescript/bin/tsc`, "-p", "tsconfig.build.json"], {
    cwd: root,
    stdio: "inherit",
  });
}

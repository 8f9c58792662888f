// Once per run, one line per missing need (test/helpers/requires.ts): what is
// missing, how to install it, and what becomes of the tests that need it.
import { ALL_NEEDS, missing, requireAll } from "../helpers/requires.js";

export default function setup(): void {
  for (const need of ALL_NEEDS) {
    const line = missing(need);
    if (line === null) continue;
    process.stderr.write(
      requireAll()
        ? `failing: ${line}; REALFORK_REQUIRE_ALL=1 makes the tests that need it fail\n`
        : `skipped: ${line}; the tests that need it do not run\n`,
    );
  }
}

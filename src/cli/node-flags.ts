// The node flags the realfork command runs with, in one place: bin/realfork.js
// and `node dist/cli/main.js` restart node with them when they are missing.
import { warn } from "../lib/output.js";
import { ensureNodeFlags, ReexecError } from "../lib/reexec.js";

/**
 * --single-threaded: V8 must not use background threads in a process that
 * forks (docs/architecture.md, "fork-safety rules"). The other three make
 * each forked child cheaper (docs/benchmarks.md): functions compiled in the
 * parent, and kept, are not compiled again in every child; node's code on
 * large pages is copied with the page tables instead of faulted in by each
 * child.
 */
export const NODE_FLAGS: readonly string[] = [
  "--single-threaded",
  "--no-lazy",
  "--no-flush-bytecode",
  "--use-largepages=silent",
];

/**
 * Restarts this process (same pid) under node with NODE_FLAGS when one is
 * missing. Where that cannot be done, says so on stderr and returns false:
 * the caller exits with status 2 before anything has started.
 */
export function ensureCliFlags(): boolean {
  try {
    ensureNodeFlags(NODE_FLAGS);
    return true;
  } catch (err) {
    if (!(err instanceof ReexecError)) throw err;
    warn(
      `realfork: ${err.message}; start it as: node ${NODE_FLAGS.join(" ")} ${process.argv[1] ?? "bin/realfork.js"} ...`,
    );
    return false;
  }
}

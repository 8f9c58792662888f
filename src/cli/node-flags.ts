// The node flags the realfork command runs with, in one place: bin/realfork.js
// and `node dist/cli/main.js` restart node with them when they are missing.
import { warn } from "../lib/output.js";
import { ensureNodeFlags, packedHeapAvailable, ReexecError } from "../lib/reexec.js";

/**
 * --single-threaded: V8 must not use background threads in a process that
 * forks (docs/architecture.md, "fork-safety rules"). The rest make each
 * forked child cheaper (docs/benchmarks.md): functions compiled in the
 * parent, and kept, are not compiled again in every child; node's code on
 * large pages is copied with the page tables instead of faulted in by each
 * child (node 26 no longer has --use-largepages and ignores it: there the
 * packed-heap preload does it, LARGE_TEXT below); one V8 platform thread instead of four (every thread is a stack and
 * a guard mapping that fork() copies, and a descriptor glibc's child code
 * writes); V8's builtins called where they are instead of copied into 1.5 MB
 * of 4 KiB pages near the code; no Maglev (V8's mid tier, on by default
 * since node 22): once it has compiled the parent's accept loop, each child
 * writes ~115 more pages of the malloc heap (page faults per child 233 ->
 * 116 on node 26 after 1000 connections); no TurboFan either: a function the
 * parent had marked for optimization but not called since was compiled
 * again by every child that called it, and thrown away at its exit (20% of
 * a child's CPU in perf on node 26; children 1.36-1.45 -> 0.79-0.82 ms of
 * CPU per connection, 870-942 -> 1230-1294 conn/s). What the processes run
 * per connection is native calls; Sparkplug's code serves them as well.
 */
export const NODE_FLAGS: readonly string[] = [
  "--single-threaded",
  "--v8-pool-size=1",
  "--no-short-builtin-calls",
  "--no-lazy",
  "--no-flush-bytecode",
  "--use-largepages=silent",
  "--no-maglev",
  "--no-opt",
];

/**
 * One libuv pool thread instead of four, for the same reason as
 * --v8-pool-size; a value the user set is kept. libuv reads it when its
 * pool starts, which node's module loader has done by now: it takes effect
 * through the environment of the restart.
 */
const NODE_ENV = { UV_THREADPOOL_SIZE: "1" };

/**
 * Asks the packed-heap preload to move node's code onto 2 MiB pages
 * (native/linux/large_text.c), where node no longer does it itself
 * (--use-largepages is gone in node 26). Only in the restart's environment,
 * and the preload takes it out of its own: nothing this process starts sees it.
 */
const LARGE_TEXT = "REALFORK_LARGE_TEXT";
const nodeDropsLargePages = (): boolean => Number(process.versions.node.split(".")[0]) >= 26;

/**
 * Whether the restart preloads the packed heap: for `serve` only (before any
 * "--"), by default where the library is there (Linux, built), always with
 * `--packed-heap` (which fails where it cannot be), never with
 * `--no-packed-heap`.
 */
export function wantsPackedHeap(argv: readonly string[]): boolean {
  const end = argv.indexOf("--");
  const args = argv.slice(1, end < 0 ? undefined : end);
  if (argv[0] !== "serve" || args.includes("--no-packed-heap")) return false;
  return args.includes("--packed-heap") || packedHeapAvailable();
}

/**
 * Restarts this process (same pid) under node with NODE_FLAGS when one is
 * missing, or with the packed-heap preload when `argv` wants it. Where
 * that cannot be done, says so on stderr and returns false: the caller exits
 * with status 2 before anything has started.
 */
export function ensureCliFlags(argv: readonly string[] = process.argv.slice(2)): boolean {
  for (const [name, value] of Object.entries(NODE_ENV)) process.env[name] ??= value;
  const packedHeap = wantsPackedHeap(argv);
  if (packedHeap && nodeDropsLargePages()) process.env[LARGE_TEXT] = "1";
  try {
    ensureNodeFlags(NODE_FLAGS, { packedHeap });
    return true;
  } catch (err) {
    if (!(err instanceof ReexecError)) throw err;
    const hints = [
      err.flags.length > 0
        ? `start it as: node ${NODE_FLAGS.join(" ")} ${process.argv[1] ?? "bin/realfork.js"} ...`
        : "",
      packedHeap && err.flags.length === 0 && !argv.includes("--packed-heap")
        ? "realfork serve --no-packed-heap runs without the preload"
        : "",
    ];
    const how = hints.map((h) => (h ? `; ${h}` : "")).join("");
    warn(`realfork: ${err.message}${how}`);
    return false;
  } finally {
    // Reached only when there was no restart (or it failed).
    delete process.env[LARGE_TEXT];
  }
}

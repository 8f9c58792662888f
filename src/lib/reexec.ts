// Restarting the running script under node with the flags fork() needs, in
// the same process (execve keeps the pid, so whoever started it, a shell, a
// supervisor or a test, still waits for the right process).
import { fs } from "./builtins.js";
import { InvalidArgTypeError, SyscallError } from "./errors.js";
import { native, packedHeapLibrary } from "./native.js";

/** Set in the environment across the re-exec: a second attempt means node refused the flags. */
const MARKER = "REALFORK_REEXEC";

/** Why the script cannot be restarted with the flags. */
export class ReexecError extends Error {
  readonly code = "ERR_REALFORK_REEXEC";
  constructor(
    message: string,
    /** The flags that were missing. */
    readonly flags: readonly string[],
  ) {
    super(message);
    this.name = "ReexecError";
  }
}

/** "--single_threaded=x" -> "--single-threaded": how node compares its flags. */
const flagName = (flag: string): string => (flag.split("=")[0] ?? flag).replace(/_/g, "-");

/** The flags of `flags` that this node process was not started with (by name: a value given by the user wins). */
export function missingNodeFlags(flags: readonly string[]): string[] {
  if (!Array.isArray(flags) || !flags.every((f) => typeof f === "string" && f.startsWith("-")))
    throw new InvalidArgTypeError("flags", "an array of node flags like '--single-threaded'", flags);
  const have = new Set(process.execArgv.map(flagName));
  return flags.filter((f) => !have.has(flagName(f)));
}

export interface NodeFlagsOptions {
  /**
   * Linux: restart with native/linux/packed_heap.c preloaded. It reserves one
   * region at a random address (getrandom) at start and places V8's heap
   * pages next to each other inside it instead of at a random address each,
   * so fork() copies about a third of the page tables (docs/benchmarks.md).
   * The heap's base stays as random as before and independent of the
   * libraries; V8's pages are no longer independent of each other: one heap
   * address gives away where the others are. The realfork command's serve
   * does this by default; here it is an opt-in. Programs this process starts
   * do not inherit the preload; an LD_PRELOAD of your own is kept for them.
   */
  packedHeap?: boolean;
}

/**
 * Makes sure node runs with `flags` (default: `--single-threaded`, which
 * fork() requires): when one is missing, re-executes this script with them
 * added, in the same process (execve: same pid, same arguments, same
 * environment, same stdio), and never returns. Returns at once when all are
 * there. Call it first thing in your entry script:
 *
 * ```ts
 * import { ensureNodeFlags } from "realfork";
 * ensureNodeFlags();
 * ```
 *
 * Node's own flags of this run (process.execArgv) are kept. Throws
 * ReexecError when there is no script to restart (node -e, the REPL), when
 * the restarted node still lacks the flags (or the packed-heap preload), or
 * when execve fails.
 */
export function ensureNodeFlags(
  flags: readonly string[] = ["--single-threaded"],
  options: NodeFlagsOptions = {},
): void {
  const missing = missingNodeFlags(flags);
  const preload = preloadWanted(options);
  const retried = process.env[MARKER] !== undefined;
  // Not passed on to the programs this one starts: each checks for itself.
  delete process.env[MARKER];
  if (missing.length === 0 && !preload) return;
  const wanted = [missing.join(" "), preload ? "the packed-heap preload" : ""].filter(Boolean).join(" and ");
  if (retried)
    throw new ReexecError(
      missing.length > 0
        ? `node was restarted with ${missing.join(" ")} but does not have ${missing.length > 1 ? "them" : "it"}`
        : `node was restarted with LD_PRELOAD=${preload} but the library was not loaded (see the loader's message above)`,
      missing,
    );
  const script = process.argv[1];
  if (!script)
    throw new ReexecError(
      `no script to restart with ${wanted} (node -e or the REPL): start node with ${wanted}`,
      missing,
    );
  const argv = [process.execPath, ...process.execArgv, ...missing, script, ...process.argv.slice(2)];
  const environment: NodeJS.ProcessEnv = { ...process.env, [MARKER]: "1" };
  if (preload) environment.LD_PRELOAD = [preload, process.env.LD_PRELOAD].filter(Boolean).join(" ");
  const env = Object.entries(environment).map(([k, v]) => `${k}=${v ?? ""}`);
  // Node marks stdin, stdout and stderr close-on-exec: without this the
  // restarted node would find them closed and put /dev/null in their place.
  const stdio = [0, 1, 2].map((fd) => native.cloexec(fd, false));
  const errno = native.execve(process.execPath, argv, env);
  for (const [fd, was] of stdio.entries()) if (was === 1) native.cloexec(fd, true);
  const err = new SyscallError(errno, "execve");
  throw new ReexecError(`cannot restart node with ${wanted}: ${err.summary}`, missing);
}

/** Why the packed-heap preload cannot be used here (not Linux, not built, a path LD_PRELOAD cannot name), or null. */
function packedHeapProblem(): string | null {
  if (native.platform !== "linux") return "the packed heap is Linux-only (an LD_PRELOAD library); leave it off here";
  if (!fs.existsSync(packedHeapLibrary))
    return `the packed heap needs ${packedHeapLibrary}, which is not built (npm run build)`;
  if (/[ :]/.test(packedHeapLibrary)) return `LD_PRELOAD cannot name ${packedHeapLibrary} (a space or ':' in the path)`;
  return null;
}

/** Whether the packed-heap preload can be used here: Linux, built, and a path LD_PRELOAD can name. */
export function packedHeapAvailable(): boolean {
  return packedHeapProblem() === null;
}

/** The library to preload for options.packedHeap, or null when none is needed; throws where there is none. */
function preloadWanted(options: NodeFlagsOptions): string | null {
  if (options === null || typeof options !== "object") throw new InvalidArgTypeError("options", "an object", options);
  const { packedHeap = false } = options;
  if (typeof packedHeap !== "boolean")
    throw new InvalidArgTypeError("options.packedHeap", "of type boolean", packedHeap);
  if (!packedHeap || native.packedHeap()) return null;
  const problem = packedHeapProblem();
  if (problem !== null) throw new ReexecError(problem, []);
  return packedHeapLibrary;
}

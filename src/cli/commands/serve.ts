import { constants as os } from "node:os";
import type { Stepper } from "../../inspect/step.js";
import { util } from "../../lib/builtins.js";
import { check } from "../../lib/errors.js";
import { native } from "../../lib/native.js";
import { warn, writeAll } from "../../lib/output.js";
import { signalName } from "../../lib/posix.js";
import { echoHandler, ForkingServer, formatAddress, type ServerStep } from "../../lib/server.js";
import { ipFamily } from "../../lib/validate.js";
import { FdWatcher } from "../../lib/watcher.js";
import { intOption, parse, portArg, positionals, UsageError } from "./usage.js";

export const SERVE_USAGE = `Usage: realfork serve <port> [options]

The accept-then-fork echo server of echo_mpserv.c: the parent accepts and
forks a child per connection; the child closes the listening socket and echoes
until EOF; the parent closes the connected socket and accepts again.

Port 0 lets the system choose; the port is printed on stderr.

With --prefork N the parent forks N workers ahead instead of one child per
connection: each keeps the listening socket and accepts on it, serving one
connection after another; a worker that ends is replaced. Faster (no fork per
connection) but at most N clients are served at once (docs/benchmarks.md).

SIGTERM or SIGINT stops the server. SIGUSR2 prints the fork() latencies the
parent measured since the last SIGUSR2 on stderr ("fork-us: 290 301 ...").

Options
  --host ADDR          address to listen on (default 0.0.0.0; IPv6 too, e.g. ::1)
  --buffer-size N      bytes per read in the child (default 30, the book's BUF_SIZE)
  --max-children N     at most N live children; more connections wait (default 256)
  --prefork N          fork N workers ahead that accept on the shared listener
  --backlog N          listen() backlog (default 128; the book uses 5)
  --quiet              no per-connection lines (for benchmarks)
  --trace              log each step's reference counts, read from the kernel at
                       that step (stderr); after fork() parent and child take
                       their first steps in turn, so that no count is read late
  --json               with --trace: one JSON object per line
  --step               each process waits at each step of the C loop (after
                       accept, fork, each close, before _exit) until
                       \`realfork step PID\` in another terminal lets it go on
  --leak-parent        negative control: the parent does not close the connected socket
  --leak-child         negative control: the child keeps the listening socket
  --no-packed-heap     Linux: leave V8's heap pages at a random address each. By
                       default serve restarts node with a preload that reserves one
                       region at a random address and packs V8's pages inside it:
                       fork() copies ~3x fewer page tables (docs/benchmarks.md).
                       The heap's base stays random; its pages are no longer
                       independent of each other. On node 26+ it also puts node's
                       code on 2 MiB pages. Spawned programs do not inherit it.
  --packed-heap        the default, insisted on: an error where it cannot be had
  -h, --help           this text

Examples
  $ realfork serve 9190
  $ realfork serve 0 --host 127.0.0.1 --max-children 8
  $ realfork serve 9190 --host ::1 --buffer-size 65536 --quiet
  $ realfork serve 9190 --trace --leak-parent
  $ realfork serve 9190 --step --trace      # and in another terminal: realfork step PID
  $ realfork serve 9190 --prefork 8 --quiet
  $ realfork serve 9190 --quiet --no-packed-heap`;

const options = {
  host: { type: "string" },
  "buffer-size": { type: "string" },
  "max-children": { type: "string" },
  prefork: { type: "string" },
  backlog: { type: "string" },
  quiet: { type: "boolean" },
  trace: { type: "boolean" },
  json: { type: "boolean" },
  step: { type: "boolean" },
  "leak-parent": { type: "boolean" },
  "leak-child": { type: "boolean" },
  "packed-heap": { type: "boolean" },
  "no-packed-heap": { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

export async function serveCommand(argv: string[]): Promise<void> {
  const { values, positionals: pos } = parse(SERVE_USAGE, () =>
    util.parseArgs({ args: argv, options, allowPositionals: true, strict: true }),
  );
  if (values.help) {
    process.stdout.write(`${SERVE_USAGE}\n`);
    return;
  }
  const [portText] = positionals(pos, ["port"], SERVE_USAGE) as [string];
  if (values.json && !values.trace)
    throw new UsageError("--json shapes --trace's lines, and --trace is not given", SERVE_USAGE);
  const host = values.host ?? "0.0.0.0";
  if (ipFamily(host) === 0)
    throw new UsageError(`--host must be a numeric IPv4 or IPv6 address, not '${host}'`, SERVE_USAGE);
  const prefork = intOption("--prefork", values.prefork, 0, 1, 4096, SERVE_USAGE);
  if (prefork > 0) {
    for (const name of ["max-children", "leak-parent", "leak-child", "step"] as const) {
      if (values[name] !== undefined)
        throw new UsageError(`--${name} applies to the fork-per-connection server, not to --prefork`, SERVE_USAGE);
    }
  }
  if (values["packed-heap"] && values["no-packed-heap"])
    throw new UsageError("--packed-heap and --no-packed-heap contradict each other", SERVE_USAGE);
  if (values["packed-heap"] && !native.packedHeap())
    throw new UsageError(
      "--packed-heap: the preload is not loaded (it is put in by bin/realfork.js's restart; Linux only)",
      SERVE_USAGE,
    );
  const quiet = values.quiet ?? false;
  // Loaded only when asked for: their modules (child_process for lsof, and
  // with it net, dgram and streams) would be pages in every fork() otherwise.
  const trace = values.trace
    ? new (await import("../../inspect/trace.js")).Tracer({
        json: values.json ?? false,
        // With --step the user gives the turns.
        inTurn: !values.step && prefork === 0,
        leakParent: values["leak-parent"] ?? false,
        leakChild: values["leak-child"] ?? false,
      }).onStep
    : null;
  // A process that waits at a step is not in the event loop, where a
  // JavaScript signal handler runs: with --step the stop signals come as a
  // byte on a pipe, which the waiting parent polls too (src/inspect/step.ts).
  // SIGINT and SIGTERM as bytes on a pipe: its read end.
  const stopFd = values.step ? check(native.signalPipe([os.signals.SIGINT, os.signals.SIGTERM]), "signalPipe") : -1;
  const stepper = values.step ? new (await import("../../inspect/step.js")).Stepper({ stopFd }) : null;
  const server = new ForkingServer(
    {
      host,
      port: portArg(portText, 0, SERVE_USAGE),
      maxChildren: intOption("--max-children", values["max-children"], 256, 1, 1_000_000, SERVE_USAGE),
      backlog: intOption("--backlog", values.backlog, 128, 1, 65535, SERVE_USAGE),
      prefork,
      leakParent: values["leak-parent"] ?? false,
      leakChild: values["leak-child"] ?? false,
      ...stepHooks(trace, stepper),
    },
    echoHandler({
      bufferSize: intOption("--buffer-size", values["buffer-size"], 30, 1, 16 * 1024 * 1024, SERVE_USAGE),
      quiet,
      announce: prefork > 0,
    }),
  );
  if (!quiet) server.on("connection", () => writeAll(1, "new client connected...\n"));
  server.on("child-exit", (status) => {
    if (!quiet) writeAll(1, `removed proc id: ${status.pid} \n`);
    // The stop's own SIGTERM (server closed: no listener) is said once, in stopOnSignal.
    if (status.state === "signaled") {
      const stopped = server.listener < 0 && status.signal === "SIGTERM";
      if (!stopped) warn(`realfork: child ${status.pid} was killed by ${status.signal}`);
    } else if (status.code !== 0) warn(`realfork: child ${status.pid} exited with status ${status.code}`);
  });
  server.on("error", (err) => warn(`realfork: ${err.message}`));
  // The handlers exist before the listener does: whoever sees "listening"
  // (or the first --trace line) may send SIGTERM at once and get a clean stop.
  const report = () => warn(`fork-us: ${server.takeForkTimes().join(" ")}`.trimEnd());
  process.on("SIGUSR2", report);
  const stop = stopOnSignal(server, stopFd, stepper);
  try {
    const bound = server.listen();
    warn(`realfork serve: listening on ${formatAddress(bound.address, bound.port)} (pid ${process.pid})`);
  } catch (err) {
    stop.remove();
    process.off("SIGUSR2", report);
    throw err;
  }
  await stop.stopped;
  // Stopped: children reaped, every line written (synchronously). Node's own
  // exit puts the default action back on SIGINT and SIGTERM for its last
  // milliseconds (measured: ~3 ms before exit_group), where a second stop
  // signal, a supervisor's or a second Ctrl-C, would end the process by that
  // signal instead of with status 0. So: ignore them from here, and end
  // through process.exit(), which runs the 'exit' listeners (--step removes
  // its FIFOs there) and not that teardown.
  for (const sig of ["SIGINT", "SIGTERM"] as const) native.ignoreSignal(os.signals[sig]);
  process.exit(0);
}

/** --trace and --step: the trace line says what the step did, then the process waits. */
function stepHooks(trace: ((s: ServerStep) => void) | null, stepper: Stepper | null) {
  if (!trace && !stepper) return {};
  return {
    onStep: (s: ServerStep) => {
      trace?.(s);
      stepper?.onServerStep(s);
    },
  };
}

/**
 * SIGTERM or SIGINT: stop accepting, SIGTERM the children, reap them, exit 0.
 * A second SIGINT (or SIGTERM), or children still there after 4 s: SIGKILL.
 */
function stopOnSignal(
  server: ForkingServer,
  stopFd: number,
  stepper: Stepper | null,
): { stopped: Promise<void>; remove: () => void } {
  let onSignal: (signal: NodeJS.Signals) => void = () => {};
  let watcher: FdWatcher | null = null;
  const remove = () => {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    watcher?.close();
  };
  const stopped = new Promise<void>((resolve) => {
    let stopping = false;
    onSignal = (signal) => {
      // Waiting at a step from here on would hold the stop up (a reap is a step).
      stepper?.stop();
      if (!stopping) {
        stopping = true;
        warn(`realfork serve: ${signal}: closing the listener, ending ${server.children.length} child(ren)`);
        const force = setTimeout(() => server.signalChildren("SIGKILL"), 4000);
        server.close("SIGTERM").then(() => {
          clearTimeout(force);
          warn("realfork serve: stopped");
          resolve();
        });
      } else {
        warn(`realfork serve: ${signal} again: killing the children`);
        server.signalChildren("SIGKILL");
      }
    };
  });
  if (stopFd < 0) {
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
  } else {
    const byte = Buffer.alloc(1);
    watcher = new FdWatcher(stopFd, () => {
      while (native.read(stopFd, byte, 0, 1) === 1) onSignal(signalName(byte[0] ?? 0) ?? "SIGTERM");
    });
    watcher.start({ readable: true });
  }
  return { stopped, remove };
}

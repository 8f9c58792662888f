import { parseArgs } from "node:util";
import { type CheckReport, CheckTargetError, checkServer, checkStatus, renderCheck } from "../../inspect/check.js";
import { tcpSockets } from "../../inspect/fdtable/linux.js";
import { listenerOwner, processExists, unixListenerOwner } from "../../inspect/fdtable.js";
import { type ListenWanted, type StartedReport, StartedServer } from "../../inspect/started-server.js";
import { durationText, warn, writeAll } from "../../lib/output.js";
import { durationOption, intOption, parse, portArg, positionals, UsageError } from "./usage.js";

export const CHECK_USAGE = `Usage: realfork check <pid> [options]
       realfork check --port <port> [options]
       realfork check --unix <path> [options]
       realfork check [options] -- <command> [args...]

Finds the descriptor mistakes of a forking server in the kernel's tables: the
process (or the one listening on --port) and its descendants, in any
language. Each finding names the descriptors that show it (pid:fd, socket
inode, state, peer) and the fix in the C material's terms:

  listener-in-child      a per-connection child holds the listening socket
  connection-in-parent   the acceptor holds a connection it handed to a child
  connection-in-sibling  a child holds connections other children serve
  close-wait             a socket whose client closed, which nobody closes
  zombie                 a child that exited and was not reaped
  descriptor-growth      the acceptor holds more descriptors after the probes
  listener-inherited     a process holds the listener and never accepts on it
                         (a helper started without close-on-exec)
  orphaned-listener      nobody accepts: the server is gone, a process it
                         started keeps the port, connections wait unanswered

A finding counts only when two looks in a row show it (--settle apart): a
correct server passes through most of these for an instant.

With --probe N, check first connects N times to the port, sends a line,
reads the answer, half-closes and waits for the server to close; it looks at
the tables while the probes are served and after they end. Every wait is
bounded by --timeout: a server that never answers or never closes is
reported, not waited for. Without probes, check judges what it sees, and
says which kinds need probes.

A prefork pool is not a leak: its workers hold the listener by design. A
child counts as a worker when the kernel shows it (any of its threads)
asleep in accept() on the listener (Linux: /proc/PID/task/TID/syscall, or
wchan inet_csk_accept) or in epoll on a set that holds it, or when it
holds the listener and no connection at two looks in a row (a
per-connection child holds the listener without its connection only between
its close() and its exit; with --probe this is a worker that outlived the
probes it served) while it runs the server's program or was seen
serving, or when it serves while its parent sleeps in something else than
accept(), poll() or epoll at two looks (every worker busy). Once one worker
is seen, no child holding the listener is a listener-in-child.
macOS (libproc) does not say which call a process sleeps in, so only the
last rule applies there. A holder with no connection at two looks that runs
another program (exec'd with the descriptor open), or sleeps in something
else than accept(), poll(), epoll or a lock (read(), sleep()...), never
accepts: listener-inherited.

Probes nobody answers are not a pass: when none is answered or closed
within --timeout, or they wait in the backlog with nobody accepting, check
says so and, with no finding, exits 2.

With -- <command>, check starts the server itself (for CI): it waits up to
--timeout for the command or a descendant to listen (TCP, or Unix), checks
it, then stops it: SIGTERM to every process it started, SIGKILL to what is
left after --timeout. Nothing it started outlives the check.

Options
  --port P         the server listening on TCP port P (and the port to probe)
  --unix PATH      the server listening on the Unix stream socket PATH (Linux)
  --probe N        make N probe connections (default 0, at most 64)
  --timeout T      the longest wait for each answer and each close (default 2s)
  --settle T       time between two confirming looks (default 300ms)
                   (durations carry their unit: 500ms, 2s; a bare number is refused)
  --json           machine-readable report (schema: docs/check-json.md)
  -h, --help       this text

Exit status: 0 nothing found; 1 findings, or the server exited during the
check (reported); 2 wrong usage, no such process, port or socket, nothing
to judge (no listener, probes nobody answered), not permitted to read its
descriptors, or a <command> that exited or never listened (with the end of
its stderr).

Examples
  $ realfork check 4242
  $ realfork check --port 9190 --probe 3
  $ realfork check --port 9190 --probe 3 --json | jq '.findings[] | {kind, evidence}'
  $ realfork check --unix /run/app.sock --probe 3
  $ realfork check --probe 5 -- python3 server.py 9000`;

const options = {
  port: { type: "string" },
  unix: { type: "string" },
  probe: { type: "string" },
  timeout: { type: "string" },
  settle: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

function target(port: number | undefined, unixPath: string | undefined, pidText: string | undefined): number {
  if (unixPath !== undefined) {
    const owner = unixListenerOwner(unixPath);
    if (owner !== null) return owner;
    throw new CheckTargetError(`nothing listens on the Unix socket ${unixPath} (or its owner is not readable)`);
  }
  if (port !== undefined) {
    const owner = listenerOwner(port);
    if (owner !== null) return owner;
    const listened =
      process.platform === "linux" &&
      [...tcpSockets().values()].some((s) => s.state === "LISTEN" && s.localPort === port);
    throw new CheckTargetError(
      listened
        ? `not permitted: something listens on TCP port ${port}, but its descriptors can be read only by its user or root`
        : `nothing listens on TCP port ${port}`,
    );
  }
  const pid = Number(pidText);
  if (!processExists(pid)) throw new CheckTargetError(`no process ${pid}`);
  return pid;
}

export async function checkCommand(argv: string[]): Promise<void> {
  // Everything after "--" is the command to start, never check's options.
  const dash = argv.indexOf("--");
  const command = dash < 0 ? null : argv.slice(dash + 1);
  const { values, positionals: pos } = parse(CHECK_USAGE, () =>
    parseArgs({ args: dash < 0 ? argv : argv.slice(0, dash), options, allowPositionals: true, strict: true }),
  );
  if (values.help) {
    process.stdout.write(`${CHECK_USAGE}\n`);
    return;
  }
  if (command !== null && command.length === 0) throw new UsageError("missing <command> after --", CHECK_USAGE);
  if (values.port !== undefined && values.unix !== undefined) {
    throw new UsageError("choose one of --port and --unix", CHECK_USAGE);
  }
  if (values.unix !== undefined && process.platform !== "linux") {
    throw new UsageError("--unix reads /proc/net/unix: Linux only", CHECK_USAGE);
  }
  if (values.unix === "") throw new UsageError("--unix needs a path", CHECK_USAGE);
  const named = values.port === undefined && values.unix === undefined && command === null;
  const [pidText] = positionals(pos, named ? ["pid"] : [], CHECK_USAGE);
  if (pidText !== undefined && (!/^\d+$/.test(pidText) || Number(pidText) < 1)) {
    throw new UsageError(`<pid> must be a process id, not '${pidText}'`, CHECK_USAGE);
  }
  const port = values.port === undefined ? undefined : portArg(values.port, 1, CHECK_USAGE);
  const unixPath = values.unix;
  const probes = intOption("--probe", values.probe, 0, 0, 64, CHECK_USAGE);
  const timeoutMs = durationOption("--timeout", values.timeout, 2000, 1, 600_000, CHECK_USAGE);
  const settleMs = durationOption("--settle", values.settle, 300, 1, 60_000, CHECK_USAGE);
  const run = (pid: number, unix = unixPath) => checkServer(pid, { probes, port, unixPath: unix, timeoutMs, settleMs });
  let report: CheckReport;
  try {
    if (command !== null) {
      const result = await checkStarted(command, { port, unixPath }, timeoutMs, run);
      if ("failure" in result) {
        warn(`realfork check: ${result.failure}`);
        // For machines, what was started and how it ended, with the reason.
        if (values.json)
          writeAll(1, `${JSON.stringify({ error: result.failure, started: result.started }, null, 2)}\n`);
        process.exitCode = 2;
        return;
      }
      report = result;
    } else {
      report = await run(target(port, unixPath, pidText));
    }
  } catch (err) {
    if (!(err instanceof CheckTargetError)) throw err;
    warn(`realfork check: ${err.message}`);
    process.exitCode = 2;
    return;
  }
  writeAll(1, values.json ? `${JSON.stringify(report, null, 2)}\n` : renderCheck(report));
  process.exitCode = checkStatus(report);
}

/**
 * Starts `command`, waits for it (or a descendant) to listen, checks it and
 * stops it, leaving nothing running; a failure (with the end of its stderr)
 * when it cannot be started, exits or never listens.
 */
async function checkStarted(
  command: string[],
  want: ListenWanted,
  timeoutMs: number,
  run: (pid: number, unixPath?: string) => Promise<CheckReport>,
): Promise<CheckReport | { failure: string; started: StartedReport }> {
  // Stopped by a signal, check ends what it started first, then ends the same
  // way. The handlers are in place before the command starts: a signal sent
  // once the command runs must not find check with the default action, which
  // would end check and leave the command (in its own group) running.
  const onSignal = (signal: NodeJS.Signals) => {
    void server.stop(Math.min(timeoutMs, 2000)).then(() => process.kill(process.pid, signal));
  };
  const signals = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
  for (const s of signals) process.once(s, onSignal);
  const server = new StartedServer(command);
  const shown = command.join(" ");
  let report: CheckReport | null = null;
  let failure = "";
  let started: StartedReport;
  try {
    const listener = await server.waitListening(want, timeoutMs);
    if (listener === null) {
      const what = want.unixPath ?? (want.port === undefined ? "a TCP port or a Unix socket" : `TCP port ${want.port}`);
      failure = server.spawnError
        ? `'${shown}' ${server.exitText}`
        : server.exitText
          ? `'${shown}' ${server.exitText} before it listened`
          : `'${shown}' did not listen on ${what} within --timeout ${durationText(timeoutMs)}`;
    } else {
      try {
        report = await run(listener.pid, listener.unix ? listener.local : want.unixPath);
      } catch (err) {
        if (!(err instanceof CheckTargetError)) throw err;
        failure = err.message;
      }
    }
  } finally {
    // Whatever happened, nothing it started is left running.
    started = await server.stop(timeoutMs);
    for (const s of signals) process.off(s, onSignal);
  }
  if (report) return { ...report, started };
  const tail = started.stderrTail.trimEnd().split("\n").slice(-10);
  const stderr = server.spawnError
    ? ""
    : tail.join("") === ""
      ? " (its stderr was empty)"
      : `; the end of its stderr:\n${tail.map((l) => `  | ${l}`).join("\n")}`;
  return { failure: `${failure}${stderr}`, started };
}

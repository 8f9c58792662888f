import { parseArgs } from "node:util";
import { CheckTargetError, checkServer, renderCheck } from "../../inspect/check.js";
import { tcpSockets } from "../../inspect/fdtable/linux.js";
import { listenerOwner, processExists } from "../../inspect/fdtable.js";
import { warn, writeAll } from "../../lib/output.js";
import { durationOption, intOption, parse, portArg, positionals, UsageError } from "./usage.js";

export const CHECK_USAGE = `Usage: realfork check <pid> [options]
       realfork check --port <port> [options]

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

A finding counts only when two looks in a row show it (--settle apart): a
correct server passes through most of these for an instant.

With --probe N, check first connects N times to the port, sends a line,
reads the answer, half-closes and waits for the server to close; it looks at
the tables while the probes are served and after they end. Every wait is
bounded by --timeout: a server that never answers or never closes is
reported, not waited for. Without probes, check judges what it sees, and
says which kinds need probes.

A prefork pool is not a leak: its workers hold the listener by design. A
child counts as a worker when the kernel shows it asleep in accept() on the
listener (Linux: /proc/PID/syscall, or wchan inet_csk_accept), or when it
holds the listener and no connection at two looks in a row (a
per-connection child holds the listener without its connection only between
its close() and its exit; with --probe this is a worker that outlived the
probes it served). Once one worker is seen, every child holding the listener
is taken for one. macOS (libproc) does not say which call a process sleeps
in, so only the second rule applies there.

Options
  --port P         the server listening on TCP port P (and the port to probe)
  --probe N        make N probe connections (default 0, at most 64)
  --timeout T      the longest wait for each answer and each close (default 2s)
  --settle T       time between two confirming looks (default 300ms)
                   (durations carry their unit: 500ms, 2s; a bare number is refused)
  --json           machine-readable report (schema: docs/check-json.md)
  -h, --help       this text

Exit status: 0 nothing found; 1 findings, or the server exited during the
check (reported); 2 wrong usage, no such process or port, or not permitted
to read its descriptors.

Examples
  $ realfork check 4242
  $ realfork check --port 9190 --probe 3
  $ realfork check --port 9190 --probe 3 --json | jq '.findings[] | {kind, evidence}'`;

const options = {
  port: { type: "string" },
  probe: { type: "string" },
  timeout: { type: "string" },
  settle: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

function target(port: number | undefined, pidText: string | undefined): number {
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
  const { values, positionals: pos } = parse(CHECK_USAGE, () =>
    parseArgs({ args: argv, options, allowPositionals: true, strict: true }),
  );
  if (values.help) {
    process.stdout.write(`${CHECK_USAGE}\n`);
    return;
  }
  const [pidText] = positionals(pos, values.port === undefined ? ["pid"] : [], CHECK_USAGE);
  if (pidText !== undefined && (!/^\d+$/.test(pidText) || Number(pidText) < 1)) {
    throw new UsageError(`<pid> must be a process id, not '${pidText}'`, CHECK_USAGE);
  }
  const port = values.port === undefined ? undefined : portArg(values.port, 1, CHECK_USAGE);
  const probes = intOption("--probe", values.probe, 0, 0, 64, CHECK_USAGE);
  const timeoutMs = durationOption("--timeout", values.timeout, 2000, 1, 600_000, CHECK_USAGE);
  const settleMs = durationOption("--settle", values.settle, 300, 1, 60_000, CHECK_USAGE);
  let report: Awaited<ReturnType<typeof checkServer>>;
  try {
    report = await checkServer(target(port, pidText), { probes, port, timeoutMs, settleMs });
  } catch (err) {
    if (!(err instanceof CheckTargetError)) throw err;
    warn(`realfork check: ${err.message}`);
    process.exitCode = 2;
    return;
  }
  writeAll(1, values.json ? `${JSON.stringify(report, null, 2)}\n` : renderCheck(report));
  process.exitCode = report.findings.length > 0 || report.exited ? 1 : 0;
}

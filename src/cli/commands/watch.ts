import { parseArgs } from "node:util";
import { listenerOwner, processExists } from "../../inspect/fdtable.js";
import { WatchServer } from "../../inspect/web/watch-server.js";
import { warn, writeAll } from "../../lib/output.js";
import { NotFoundError } from "./fds.js";
import { intOption, parse, portArg, positionals, UsageError } from "./usage.js";

export const WATCH_USAGE = `Usage: realfork watch <pid> [options]
       realfork watch --port <port> [options]

Serves a page, on loopback only, with the picture of \`realfork fds --svg\`
(processes, their descriptors, each socket with its state and refs), redrawn
within a moment of each change, and beside it a timeline of what changed: a
socket appeared, refs 2 -> 1, CLOSE_WAIT, a child exited. Prints the page's
address on stdout, with a random token: without the token the page shows
nothing (other local users can reach loopback too).

What \`realfork check\` sees in one look is drawn in red, as in fds --svg.
When the server runs with --step, each process that waits at a step gets a
button that lets it go on (what \`realfork step PID\` does); while one waits,
nothing is drawn in red (right after fork() the child holds the listener
until its next step: a held moment, not a leak).

The tables are read once per interval, whatever the number of open pages.
Ends on SIGINT/SIGTERM, or when the watched process is gone.

Options
  --port P          watch the process that listens on TCP port P
  --http-port N     the page's port (default 0: the system picks one)
  --host ADDR       127.0.0.1 (default) or ::1; nothing else is allowed
  --interval MS     how often the tables are read (default 250)
  -h, --help        this text

Examples
  $ realfork serve 9190 --step &      # a server to watch
  $ realfork watch --port 9190        # open the address it prints
  $ realfork watch 4242 --http-port 8080`;

const options = {
  port: { type: "string" },
  "http-port": { type: "string" },
  host: { type: "string" },
  interval: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

export async function watchCommand(argv: string[]): Promise<void> {
  const { values, positionals: pos } = parse(WATCH_USAGE, () =>
    parseArgs({ args: argv, options, allowPositionals: true, strict: true }),
  );
  if (values.help) {
    process.stdout.write(`${WATCH_USAGE}\n`);
    return;
  }
  const host = values.host ?? "127.0.0.1";
  if (host !== "127.0.0.1" && host !== "::1")
    throw new UsageError(`--host must be 127.0.0.1 or ::1 (loopback only), not '${host}'`, WATCH_USAGE);
  const httpPort = values["http-port"] === undefined ? 0 : portArg(values["http-port"], 0, WATCH_USAGE);
  const intervalMs = intOption("--interval", values.interval, 250, 20, 60_000, WATCH_USAGE);
  let root: number;
  if (values.port !== undefined) {
    positionals(pos, [], WATCH_USAGE);
    const port = portArg(values.port, 1, WATCH_USAGE);
    const owner = listenerOwner(port);
    if (owner === null) throw new NotFoundError(`nothing listens on TCP port ${port} (or its owner is not readable)`);
    root = owner;
  } else {
    const [pidText] = positionals(pos, ["pid"], WATCH_USAGE) as [string];
    if (!/^\d+$/.test(pidText) || Number(pidText) < 1)
      throw new UsageError(`<pid> must be a process id, not '${pidText}'`, WATCH_USAGE);
    root = Number(pidText);
    if (!processExists(root)) throw new NotFoundError(`no process ${root}`);
  }
  const server = new WatchServer({ root, host, port: httpPort, intervalMs });
  const onSignal = (signal: NodeJS.Signals) => void server.stop(signal);
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    const url = await server.start();
    writeAll(1, `${url}\n`);
    warn(`realfork watch: watching process ${root} and its children; open the address above (Ctrl-C ends)`);
    warn(`realfork watch: ${await server.ended}: stopped`);
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

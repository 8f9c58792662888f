import { pathToFileURL } from "node:url";
import { fs } from "../lib/builtins.js";
import { SyscallError } from "../lib/errors.js";
import { warn } from "../lib/output.js";
import { UsageError } from "./commands/usage.js";
import { ensureCliFlags } from "./node-flags.js";

export const HELP = `realfork: real fork() for Node.js, with the descriptors made visible

Usage
  $ realfork <command> [options]

Commands
  serve <port>          the accept-then-fork echo server (echo_mpserv.c)
  client <ip> <port>    the fork-split echo client (echo_mpclient.c)
  fds <pid>             who holds which descriptor: the reference counts
  check <pid>           find descriptor leaks, zombies and CLOSE_WAIT in a forking server
  demo                  the story of one connection, told with real fd tables
  step <pid>            let a process of serve --step or client --step go on
  watch <pid>           the descriptor picture live in the browser (loopback, with a token)
  bench                 drive one server with the C load generator; what fork costs
  bench-http            forked http workers against node:cluster (fork({ eventLoop }))
  compare               the C server and realfork serve side by side: behaviour, then speed
  help [command]        this text, or the command's (same as realfork <command> --help)

Each command has --help. realfork --version prints the version.

Examples
  $ realfork demo
  $ realfork serve 9190
  $ realfork client 127.0.0.1 9190
  $ realfork fds --port 9190 --watch
  $ realfork check --port 9190 --probe 3
  $ realfork serve 9190 --step        # then, in another terminal: realfork step PID
  $ realfork compare --prefork 8
`;

type Command = (argv: string[]) => Promise<void>;

// Each command is loaded when it runs: a serve parent that held every
// command's modules would hand ~2 MB more of 4 KiB pages to each fork().
const commands: Record<string, () => Promise<Command>> = {
  serve: async () => (await import("./commands/serve.js")).serveCommand,
  client: async () => (await import("./commands/client.js")).clientCommand,
  fds: async () => (await import("./commands/fds.js")).fdsCommand,
  check: async () => (await import("./commands/check.js")).checkCommand,
  demo: async () => (await import("./commands/demo.js")).demoCommand,
  bench: async () => (await import("./commands/bench.js")).benchCommand,
  "bench-http": async () => (await import("./commands/bench-http.js")).benchHttpCommand,
  compare: async () => (await import("./commands/compare.js")).compareCommand,
  step: async () => (await import("./commands/step.js")).stepCommand,
  watch: async () => (await import("./commands/watch.js")).watchCommand,
};

/**
 * Runs the CLI; sets process.exitCode. The one process.exit() is serve's,
 * once stopped (src/cli/commands/serve.ts says why).
 */
export async function main(argv: string[]): Promise<void> {
  let [name, ...rest] = argv;
  if (name === "--version") {
    process.stdout.write(`realfork ${version()}\n`);
    return;
  }
  if (name === "help" && rest.length > 0) {
    // `realfork help serve` is `realfork serve --help`.
    [name, ...rest] = [rest[0] as string, "--help", ...rest.slice(1)];
  }
  if (name === undefined || name === "help" || name === "--help" || name === "-h") {
    process.stdout.write(HELP);
    return;
  }
  const load = Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (!load) {
    warn(`realfork: unknown command '${name}' (see realfork --help)`);
    process.exitCode = 2;
    return;
  }
  try {
    const command = await load();
    await command(rest);
  } catch (err) {
    process.exitCode = report(err);
  }
}

/** One line on stderr for what went wrong, and the exit code for it. */
function report(err: unknown): number {
  if (err instanceof UsageError) {
    warn(err.line);
    return 2;
  }
  if (err instanceof SyscallError) {
    warn(`realfork: ${err.summary}${hint(err)}`);
    return 1;
  }
  warn(`realfork: ${err instanceof Error ? err.message : String(err)}`);
  return 1;
}

/** package.json's version: the CLI runs from dist/cli/ or src/cli/, two levels below it. */
function version(): string {
  const text = fs.readFileSync(new URL("../../package.json", import.meta.url), "utf8");
  return (JSON.parse(text) as { version: string }).version;
}

function hint(err: SyscallError): string {
  if (err.syscall === "bind" && err.code === "EACCES") return " (ports below 1024 need root or CAP_NET_BIND_SERVICE)";
  if (err.syscall === "bind" && err.code === "EADDRINUSE") return " (another process listens on that port)";
  if (err.syscall === "connect" && err.code === "ECONNREFUSED") return " (is the server running on that port?)";
  return "";
}

/**
 * The command line's entry (bin/realfork.js, or `node dist/cli/main.js`):
 * node restarted with the CLI's flags when they are missing (same pid), or
 * exit 2 with a line saying why it cannot be.
 */
export async function run(argv: string[]): Promise<void> {
  if (!ensureCliFlags(argv)) {
    process.exitCode = 2;
    return;
  }
  await main(argv);
}

const entry = process.argv[1];
if (entry && import.meta.url === pathToFileURL(fs.realpathSync(entry)).href) await run(process.argv.slice(2));

import { lookup } from "node:dns/promises";
import { constants as os } from "node:os";
import { parseArgs } from "node:util";
import { Stepper } from "../../inspect/step.js";
import { runClient } from "../../lib/client.js";
import { check } from "../../lib/errors.js";
import { native } from "../../lib/native.js";
import { warn } from "../../lib/output.js";
import { ipFamily } from "../../lib/validate.js";
import { durationOption, intOption, parse, portArg, positionals } from "./usage.js";

export const CLIENT_USAGE = `Usage: realfork client <ip> <port> [options]

The fork-split echo client of echo_mpclient.c: after connect(), the child
sends the lines it reads on stdin and the parent prints what comes back. A line
q or Q, or the end of input, half-closes the connection (shutdown SHUT_WR); the
parent prints the rest of the echo and both end.

As the C does, the parent prints "Message from server: " before what each
read() returns, not before each line: a line longer than the buffer (30 bytes,
the book's BUF_SIZE, here and in realfork serve) comes back in pieces, and
each piece gets the prefix, in the middle of the line. That is what TCP is: a
byte stream, not messages. --prefix-per-line prints the prefix once per line.

Options
  --buffer-size N               bytes per read of the socket (default 30)
  --timeout T                   after our half-close, give up when the server
                                sends nothing and does not close for T, written
                                with its unit: 10s, 500ms (default 10s; 0 waits
                                for ever, as the C client; with --step the
                                default is 0). A bare number is refused: it
                                meant seconds here and milliseconds in check
  --step                        reader and writer wait at each step (connect,
                                fork, shutdown, each close) until
                                \`realfork step PID\` lets them go on
  --prefix-per-line             "Message from server: " once per line of the
                                echo, not once per read() as in the C
  --close-instead-of-shutdown   negative control: the writer close()s its
                                descriptor instead; the server never sees EOF
  -h, --help                    this text

Examples
  $ realfork client 127.0.0.1 9190
  $ printf 'hello\\nq\\n' | realfork client 127.0.0.1 9190
  $ realfork client ::1 9190 --buffer-size 4096 < file.txt
  $ realfork client 127.0.0.1 9190 --prefix-per-line < file.txt
  $ realfork client 127.0.0.1 9190 --step   # and in another terminal: realfork step PID`;

const options = {
  "buffer-size": { type: "string" },
  "close-instead-of-shutdown": { type: "boolean" },
  "prefix-per-line": { type: "boolean" },
  timeout: { type: "string" },
  step: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

export async function clientCommand(argv: string[]): Promise<void> {
  const { values, positionals: pos } = parse(CLIENT_USAGE, () =>
    parseArgs({ args: argv, options, allowPositionals: true, strict: true }),
  );
  if (values.help) {
    process.stdout.write(`${CLIENT_USAGE}\n`);
    return;
  }
  const [hostText, portText] = positionals(pos, ["ip", "port"], CLIENT_USAGE) as [string, string];
  const port = portArg(portText, 1, CLIENT_USAGE);
  const bufferSize = intOption("--buffer-size", values["buffer-size"], 30, 1, 16 * 1024 * 1024, CLIENT_USAGE);
  const timeoutMs = durationOption("--timeout", values.timeout, values.step ? 0 : 10_000, 0, 86_400_000, CLIENT_USAGE);
  // Names are resolved here, in the parent, before any fork (dns.lookup uses
  // the libuv thread pool, which a forked child does not have).
  const host = ipFamily(hostText) ? hostText : await resolve(hostText);
  // SIGTERM or SIGINT end the session cleanly (writer ended and reaped, exit
  // 0) from the first byte on: the reader waits in a synchronous poll(),
  // where a JavaScript handler could not run, so the signal comes as a byte
  // on a pipe that it polls too.
  const stopFd = check(native.signalPipe([os.signals.SIGTERM, os.signals.SIGINT]), "signalPipe");
  const result = runClient({
    host,
    port,
    bufferSize,
    closeInsteadOfShutdown: values["close-instead-of-shutdown"] ?? false,
    prefixPerLine: values["prefix-per-line"] ?? false,
    idleTimeoutMs: timeoutMs,
    stopFd,
    // A step's wait ends on the same pipe (src/inspect/step.ts).
    ...(values.step ? { onStep: new Stepper({ stopFd }).onClientStep } : {}),
  });
  if (result.stoppedBy) warn(`realfork client: ${result.stoppedBy}: stopped`);
  if (result.problem) warn(`realfork: ${result.problem}`);
  process.exitCode = result.status;
}

async function resolve(name: string): Promise<string> {
  try {
    return (await lookup(name)).address;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? "EAI_FAIL";
    throw new ResolveError(name, code);
  }
}

export class ResolveError extends Error {
  constructor(
    readonly host: string,
    readonly code: string,
  ) {
    super(`getaddrinfo: ${code}: cannot resolve '${host}'`);
  }
}

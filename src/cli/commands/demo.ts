import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { connect, type Socket } from "node:net";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { type SocketEntry, snapshot } from "../../inspect/fdtable.js";
import { holderText, renderSnapshot } from "../../inspect/fdview.js";
import type { TraceEvent } from "../../inspect/trace.js";
import { writeAll } from "../../lib/output.js";
import { parse, positionals } from "./usage.js";

export const DEMO_USAGE = `Usage: realfork demo [options]

Starts realfork serve --trace on a free loopback port, connects one client,
and tells the story of that connection step by step, with the descriptor
tables the kernel reports at each step: accept, fork, the parent's close, the
child's close of the listener, EOF, the child's exit. Then the same with
--leak-parent, to show what goes wrong when the parent forgets its close().
Cleans up after itself.

Options
  --json       one JSON object per line instead of the story
  -h, --help   this text

Examples
  $ realfork demo
  $ npm start`;

const NARRATION: Record<TraceEvent["event"], string> = {
  listening: "The parent made the listening socket: socket(), bind(), listen().",
  accepted: "accept() made a new socket for this client. One descriptor refers to it, in the parent.",
  forked:
    "fork() copied the descriptor table: parent and child each hold the connected socket, two references. The child got a copy of the listening socket too, which it closes at once, often before the parent looks.",
  "parent-closed":
    "The parent closes its copy of the connected socket. close() drops one reference; the socket stays open, because the child still holds it.",
  "child-closed-listener":
    "The child closes the listening socket, which it does not need. Only the parent holds it again.",
  "child-closed":
    "The client half-closed; the child read EOF and closes the connected socket. That was the last reference: the kernel closes the socket and sends FIN.",
  reaped: "The parent reaps the child with waitpid(): no zombie is left.",
  "child-forked":
    "fork() returned 0 in the child: it holds a copy of every descriptor the parent had, the listener and the connection.",
  "child-exiting": "The child is done and calls _exit().",
  "worker-started":
    "fork() made a worker (serve --prefork): it keeps its copy of the listening socket, one more reference, and accepts on it.",
};

const LEAK_NARRATION: Partial<Record<TraceEvent["event"], string>> = {
  forked:
    "fork() copied the descriptor table: two references to the connected socket. With --leak-parent the parent will not close its copy.",
  "child-closed":
    "The child closes its copy after EOF. But the parent still holds one: the count is 1, not 0, so the kernel keeps the socket open and sends no FIN.",
  reaped: "The parent reaps the child. Its own copy of the connection is still open: a leaked descriptor.",
};

const options = { json: { type: "boolean" }, help: { type: "boolean", short: "h" } } as const;

export async function demoCommand(argv: string[]): Promise<void> {
  const { values, positionals: pos } = parse(DEMO_USAGE, () =>
    parseArgs({ args: argv, options, allowPositionals: true, strict: true }),
  );
  if (values.help) {
    process.stdout.write(`${DEMO_USAGE}\n`);
    return;
  }
  positionals(pos, [], DEMO_USAGE);
  const json = values.json ?? false;
  const say = (text: string) => {
    if (!json) writeAll(1, `${text}\n`);
  };
  const emit = (part: string, record: object) => {
    if (json) writeAll(1, `${JSON.stringify({ part, ...record })}\n`);
  };

  say("realfork demo: one connection to the accept-then-fork echo server, told by the kernel's descriptor tables\n");
  say("PART 1: the correct server (each process closes what it does not use)");
  say("=====================================================================\n");
  await tellOneConnection("correct", [], NARRATION, say, emit);

  say("\nPART 2: realfork serve --leak-parent (the parent forgets close() of the connected socket)");
  say("==========================================================================================\n");
  await tellOneConnection("leak-parent", ["--leak-parent"], { ...NARRATION, ...LEAK_NARRATION }, say, emit);

  say("\nWhat to remember: close() drops one reference to a socket; the kernel closes the socket only");
  say("when the last descriptor to it is closed. After fork() every descriptor has two holders, so each");
  say("process must close what it does not use: the child the listener, the parent the connection.");
}

interface ServeProcess {
  child: ChildProcess;
  port: number;
  events: TraceEvent[];
  next: (event: TraceEvent["event"]) => Promise<TraceEvent>;
}

async function startServer(extra: string[]): Promise<ServeProcess> {
  const bin = fileURLToPath(new URL("../../../bin/realfork.js", import.meta.url));
  const child = spawn(
    process.execPath,
    ["--single-threaded", bin, "serve", "0", "--host", "127.0.0.1", "--trace", "--json", ...extra],
    {
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  const events: TraceEvent[] = [];
  const used = new Set<number>();
  const waiters: Array<{ event: string; resolve: (e: TraceEvent) => void }> = [];
  let buffered = "";
  let port = 0;
  const portKnown = new Promise<void>((resolve, reject) => {
    child.on("exit", (code) => reject(new Error(`realfork serve exited early (status ${code})`)));
    child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
      buffered += chunk;
      let nl = buffered.indexOf("\n");
      while (nl >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        nl = buffered.indexOf("\n");
        const m = /listening on .*:(\d+) \(pid/.exec(line);
        if (m) {
          port = Number(m[1]);
          resolve();
        }
        if (line.startsWith("{")) {
          events.push(JSON.parse(line) as TraceEvent);
          flush();
        }
      }
    });
  });
  // Parent and child write their trace lines independently, so events can
  // arrive in either order: each waiter takes the first unused one it wants.
  const flush = () => {
    for (let w = 0; w < waiters.length; w++) {
      const waiter = waiters[w];
      const i = events.findIndex((e, n) => !used.has(n) && e.event === waiter?.event);
      if (i < 0 || !waiter) continue;
      used.add(i);
      waiters.splice(w--, 1);
      waiter.resolve(events[i] as TraceEvent);
    }
  };
  child.stdout?.resume();
  await portKnown;
  return {
    child,
    port,
    events,
    next: (event) =>
      new Promise((resolve) => {
        waiters.push({ event, resolve });
        flush();
      }),
  };
}

function socketsTable(sockets: SocketEntry[], port: number): string {
  const rows = sockets
    .filter((s) => s.local.endsWith(`:${port}`))
    .map(
      (s) =>
        `    ${s.state.padEnd(12)} ${s.local.padEnd(22)} ${(s.remote ?? "-").padEnd(22)} refs ${s.holders.length}  holders ${holderText(s.holders)}`,
    );
  return rows.length > 0 ? rows.join("\n") : "    (no socket of the server's port is held by any descriptor)";
}

async function tellOneConnection(
  part: string,
  extra: string[],
  narration: Record<TraceEvent["event"], string>,
  say: (t: string) => void,
  emit: (part: string, record: object) => void,
): Promise<void> {
  const server = await startServer(extra);
  const parentPid = server.child.pid as number;
  let client: Socket | null = null;
  try {
    const listening = await server.next("listening");
    let step = 1;
    const tell = (e: TraceEvent) => {
      say(`Step ${step++} [${e.role} ${e.pid}] ${narration[e.event]}`);
      say(socketsTable(e.sockets, server.port));
      say("");
      emit(part, { type: "step", ...e });
    };
    say(
      `realfork serve${extra.length ? ` ${extra.join(" ")}` : ""} is pid ${parentPid}, listening on 127.0.0.1:${server.port}.\n`,
    );
    tell(listening);

    say("A client connects.\n");
    client = connect(server.port, "127.0.0.1");
    client.on("error", () => {});
    let gotEof = false;
    client.on("end", () => {
      gotEof = true;
    });
    // Parent and child take these steps at the same time; tell them in the
    // order they really happened.
    const wanted = ["accepted", "forked", "parent-closed", "child-closed-listener"] as const;
    const steps = await Promise.all(
      wanted.filter((e) => !(e === "parent-closed" && extra.includes("--leak-parent"))).map((e) => server.next(e)),
    );
    for (const e of steps.sort((a, b) => a.at - b.at)) tell(e);
    await settle();
    const during = snapshot(parentPid);
    say("The whole table now, as `realfork fds` shows it (stdio and sockets):\n");
    say(indent(renderSnapshot(during, { all: false })));
    emit(part, { type: "fds", moment: "connected", snapshot: during });
    const lsof = lsofTable(during.processes.map((p) => p.pid));
    if (lsof) {
      say("And as lsof shows it (lsof -nP -a -p PIDS -iTCP):\n");
      say(indent(lsof));
    }

    say('The client sends "hello", reads the echo, and half-closes (shutdown SHUT_WR).\n');
    client.write("hello\n");
    const [echo] = (await once(client, "data")) as [Buffer];
    say(`    echoed back: ${JSON.stringify(echo.toString())}\n`);
    emit(part, { type: "echo", data: echo.toString() });
    client.end();
    tell(await server.next("child-closed"));
    tell(await server.next("reaped"));
    await settle();
    const after = snapshot(parentPid);
    say("The table after the child's exit:\n");
    say(indent(renderSnapshot(after, { all: false })));
    emit(part, { type: "fds", moment: "after-exit", snapshot: after });
    say(
      gotEof
        ? "The client saw EOF: the connection is closed on both sides.\n"
        : "The client has NOT seen EOF: the parent's forgotten descriptor keeps the connection open (CLOSE_WAIT on the server side), and it stays so until the parent closes it or exits.\n",
    );
    emit(part, { type: "client", sawEof: gotEof });
  } finally {
    server.child.kill("SIGTERM");
    if (server.child.exitCode === null) await once(server.child, "exit");
    client?.destroy();
    say(`realfork serve (pid ${parentPid}) stopped with SIGTERM; nothing of it is left running.`);
  }
}

/** The trace is written by the process that took the step; give the other a moment to finish its own. */
function settle(): Promise<void> {
  return new Promise((r) => setTimeout(r, 100));
}

function indent(text: string): string {
  return text
    .trimEnd()
    .split("\n")
    .map((l) => `    ${l}`)
    .join("\n")
    .concat("\n");
}

function lsofTable(pids: number[]): string | null {
  try {
    return execFileSync("lsof", ["-nP", "-a", "-p", pids.join(","), "-iTCP"], { encoding: "utf8", timeout: 5000 });
  } catch {
    return null;
  }
}

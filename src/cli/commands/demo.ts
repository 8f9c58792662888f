import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer, type Socket } from "node:net";
import { dirname, join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { checkServer, renderCheck } from "../../inspect/check.js";
import { type FdSnapshot, type SocketEntry, snapshot } from "../../inspect/fdtable.js";
import { holderText, renderSnapshot } from "../../inspect/fdview.js";
import { escapeXml, pictureModel, renderSvg } from "../../inspect/picture.js";
import { goOn, STEP_LINE } from "../../inspect/step.js";
import { WatchServer } from "../../inspect/web/watch-server.js";
import { warn, writeAll } from "../../lib/output.js";
import { parse, portArg, positionals, UsageError } from "./usage.js";

export const DEMO_USAGE = `Usage: realfork demo [options]

Tells the story of one connection to the accept-then-fork echo server with
the descriptor tables the kernel reports at each step. The server runs with
--step, so each process waits at each step of the C loop while the tables are
read: right after fork() the listener and the connection both have two
references, one in the parent and one in the child. Then the same with
--leak-parent and --leak-child, to show the counts that stay when a close() is
forgotten; then the split client, where shutdown() changes the socket's state
and not its count, and close() the count and not the state.
Everything runs on loopback, on ports the system picks; the demo cleans up.

With --web the story is told in the browser too, one step per click: the
page (loopback only, its address printed with a token, as realfork watch
does) shows the live picture of the tables and the step's text, and each
"Next step" lets the waiting processes go on. Parts 1 to 4 (the stepped
ones). SIGINT or SIGTERM ends the demo and its servers at once.

Options
  --json            one JSON object per line instead of the story
  --svg DIR         also draw each step (DIR/NN-part-step.svg) and DIR/index.html,
                    which shows the steps in order with their text
  --web             tell it in the browser, one step per click
  --http-port N     with --web: the page's port (default 0: the system picks one)
  -h, --help        this text

Examples
  $ realfork demo
  $ realfork demo --svg /tmp/demo && xdg-open /tmp/demo/index.html
  $ realfork demo --web               # open the address it prints
  $ npm start`;

type ServerStepName =
  | "listening"
  | "accepted"
  | "fork"
  | "child-closed-listener"
  | "parent-closed"
  | "child-closed"
  | "child-exiting"
  | "reaped";

const NARRATION: Record<ServerStepName, string> = {
  listening: "The parent made the listening socket: socket(), bind(), listen(). One descriptor refers to it.",
  accepted: "accept() made a new socket for this client. One descriptor refers to it, in the parent.",
  fork: "fork() copied the descriptor table. Parent and child now each hold the listening socket AND the connected socket: both have two references. (Both processes wait here, so this is the moment itself.)",
  "child-closed-listener":
    "The child closes the listening socket, which it does not need: its count drops to 1. The connected socket still has two.",
  "parent-closed":
    "The parent closes its copy of the connected socket. close() drops one reference; the socket stays open, because the child still holds it.",
  "child-closed":
    "The client half-closed; the child read EOF and closes the connected socket. That was the last reference: the kernel closes the socket and sends FIN.",
  "child-exiting": "The child is done and calls _exit().",
  reaped: "The parent reaps the child with waitpid(): no zombie is left.",
};

const LEAK_PARENT: Partial<Record<ServerStepName, string>> = {
  fork: "fork() copied the descriptor table: both sockets have two references. With --leak-parent the parent will not close its copy of the connection.",
  "child-closed":
    "The child closes its copy after EOF. But the parent still holds one: the count is 1, not 0, so the kernel keeps the socket open (CLOSE_WAIT) and sends no FIN.",
  reaped: "The parent reaps the child. Its own copy of the connection is still open: a leaked descriptor, refs 1.",
};

const LEAK_CHILD: Partial<Record<ServerStepName, string>> = {
  fork: "fork() copied the descriptor table: both sockets have two references. With --leak-child the child will not close its copy of the listening socket.",
  "parent-closed":
    "The parent closes its copy of the connection. The listener still has two references: the child holds one for as long as it lives.",
  "child-closed":
    "The child closes the connection after EOF, but the listening socket still counts the child's copy: refs 2, until the child exits.",
  reaped: "The child has exited, and with it its copy of the listener: refs 1 again.",
};

type ClientStepName = "connected" | "fork" | "half-closed" | "writer-closed" | "reader-closed";

const CLIENT_NARRATION: Record<ClientStepName, string> = {
  connected: "The client made its socket and connected: socket(), connect(). One descriptor refers to it.",
  fork: "fork() copied the descriptor table: the reader (parent) and the writer (child) hold the one connected socket, refs 2.",
  "half-closed":
    "The writer read q and called shutdown(SHUT_WR): FIN went out and the server saw EOF. The socket's STATE changed (no longer ESTABLISHED), its COUNT did not: both processes still hold it, refs 2.",
  "writer-closed":
    "The writer closes its descriptor, as the C main() does after write_routine(). The COUNT drops to 1; the STATE does not change: close() only drops a reference while another process holds the socket.",
  "reader-closed":
    "The server closed its side; the reader read EOF and closes the last descriptor: no process holds the socket any more (what is left is the kernel's TIME_WAIT).",
};

const options = {
  json: { type: "boolean" },
  svg: { type: "string" },
  web: { type: "boolean" },
  "http-port": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

/** The demo was stopped by a signal while it waited for a click. */
class Stopped extends Error {}

interface Picture {
  part: string;
  file: string;
  heading: string;
  text: string;
}

/** Where the story goes: text, JSON lines, pictures. */
class Teller {
  readonly json: boolean;
  readonly svgDir: string | null;
  readonly pictures: Picture[] = [];
  readonly parts: Array<{ part: string; title: string }> = [];
  part = "";
  step = 1;
  /** --web: the page, and the click the story waits for. */
  readonly web: WatchServer | null;
  #next: (() => void) | null = null;
  #stop: ((err: Error) => void) | null = null;
  #stopped: string | null = null;

  constructor(json: boolean, svgDir: string | null, web: WatchServer | null = null) {
    this.json = json;
    this.svgDir = svgDir;
    this.web = web;
  }

  /** --web: resolves when the page's "Next step" is clicked; at once otherwise. */
  pause(): Promise<void> {
    if (!this.web) return Promise.resolve();
    if (this.#stopped) return Promise.reject(new Stopped(this.#stopped));
    return new Promise((resolve, reject) => {
      this.#next = resolve;
      this.#stop = reject;
    });
  }

  /** The page's "Next step". */
  next = (): void => {
    const next = this.#next;
    this.#next = null;
    this.#stop = null;
    next?.();
  };

  /** A stop signal: the story's pause ends with an error, and the parts' cleanups run. */
  stop(why: string): void {
    this.#stopped = why;
    this.#stop?.(new Stopped(why));
  }

  /** --web: the page shows this process's tree from now on. */
  watch(pid: number, what: string): void {
    this.web?.setRoot(pid, what);
  }

  say(text: string): void {
    if (!this.json) writeAll(1, `${text}\n`);
  }

  emit(record: object): void {
    if (this.json) writeAll(1, `${JSON.stringify({ part: this.part, ...record })}\n`);
  }

  begin(part: string, title: string): void {
    this.part = part;
    this.step = 1;
    this.parts.push({ part, title });
    this.say(`\n${title}\n${"=".repeat(title.length)}\n`);
  }

  /** One step: the narration, the sockets of `port` as the kernel has them, and a picture. */
  tell(
    event: string,
    who: string,
    narration: string,
    snap: FdSnapshot,
    port: number,
    roles: Map<number, string>,
  ): void {
    const heading = `Step ${this.step} [${who}]`;
    this.say(`${heading} ${narration}`);
    const title = this.parts.at(-1)?.title ?? "";
    this.web?.setStory({ heading: title, text: `${heading} ${narration}`, next: true, done: false });
    this.say(socketsTable(snap.sockets, port));
    this.say("");
    const sockets = snap.sockets.filter((s) => onPort(s, port));
    this.emit({ type: "step", event, who, sockets, snapshot: snap });
    if (this.svgDir) {
      const file = `${String(this.pictures.length + 1).padStart(2, "0")}-${this.part}-${event}.svg`;
      const model = pictureModel(
        { ...snap, sockets },
        { title: `${this.part}: ${heading}`, caption: narration, roles },
      );
      writeFileSync(join(this.svgDir, file), renderSvg(model));
      this.pictures.push({ part: this.part, file, heading, text: narration });
    }
    this.step++;
  }

  /** DIR/index.html: the parts and their steps, in order. */
  writeIndex(): void {
    if (!this.svgDir) return;
    const drawn = this.parts.filter(({ part }) => this.pictures.some((p) => p.part === part));
    const body = drawn.map(({ part, title }) => {
      const steps = this.pictures
        .filter((p) => p.part === part)
        .map(
          (p) =>
            `<section><h3>${escapeXml(p.heading)}</h3><p>${escapeXml(p.text)}</p><img src="${escapeXml(p.file)}" alt="${escapeXml(`${p.heading}: ${p.text}`)}"></section>`,
        );
      return `<h2>${escapeXml(title)}</h2>\n${steps.join("\n")}`;
    });
    const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>realfork demo</title>
<style>body{font-family:sans-serif;max-width:900px;margin:2em auto;padding:0 1em}img{max-width:100%;border:1px solid #ddd}section{margin-bottom:2.5em}</style>
</head><body>
<h1>realfork demo: one connection, told by the kernel's descriptor tables</h1>
${body.join("\n")}
</body></html>
`;
    writeFileSync(join(this.svgDir, "index.html"), html);
  }
}

export async function demoCommand(argv: string[]): Promise<void> {
  const { values, positionals: pos } = parse(DEMO_USAGE, () =>
    parseArgs({ args: argv, options, allowPositionals: true, strict: true }),
  );
  if (values.help) {
    process.stdout.write(`${DEMO_USAGE}\n`);
    return;
  }
  positionals(pos, [], DEMO_USAGE);
  if (values.web && values.json)
    throw new UsageError("--web tells the story in the browser; --json is for machines (choose one)", DEMO_USAGE);
  if (values["http-port"] !== undefined && !values.web) throw new UsageError("--http-port goes with --web", DEMO_USAGE);
  const svgDir = values.svg === undefined ? null : prepareDir(values.svg);
  const web = values.web ? await startWeb(portArg(values["http-port"] ?? "0", 0, DEMO_USAGE)) : null;
  const t = new Teller(values.json ?? false, svgDir, web);
  web?.setOnNext(t.next);
  let stoppedBy: string | null = null;
  const onSignal = (signal: NodeJS.Signals) => {
    stoppedBy = signal;
    t.stop(signal);
  };
  if (web) {
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
  }
  try {
    await tellStory(t, web !== null);
  } catch (err) {
    if (!(err instanceof Stopped)) throw err;
    warn(`realfork demo: ${err.message}: stopped, and its programs with it`);
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await web?.stop(stoppedBy ?? "the demo is over");
  }
}

/** --web: realfork watch's server, following the demo's programs; its address on stdout. */
async function startWeb(port: number): Promise<WatchServer> {
  const server = new WatchServer({ root: null, port, stepButtons: false, endWhenGone: false });
  writeAll(1, `${await server.start()}\n`);
  warn('realfork demo --web: open the address above; each "Next step" on the page tells one step');
  return server;
}

async function tellStory(t: Teller, web: boolean): Promise<void> {
  t.say("realfork demo: one connection to the accept-then-fork echo server, told by the kernel's descriptor tables");
  t.begin("correct", "PART 1: the correct server (each process closes what it does not use)");
  await tellOneConnection(t, [], NARRATION);
  t.begin("leak-parent", "PART 2: realfork serve --leak-parent (the parent forgets close() of the connected socket)");
  await tellOneConnection(t, ["--leak-parent"], { ...NARRATION, ...LEAK_PARENT });
  t.begin("leak-child", "PART 3: realfork serve --leak-child (the child forgets close() of the listening socket)");
  await tellOneConnection(t, ["--leak-child"], { ...NARRATION, ...LEAK_CHILD });
  t.begin("client", "PART 4: the split client: shutdown() changes the state, close() the count");
  await tellClient(t);
  if (!web) {
    t.begin("check", "PART 5: realfork check judges both servers: the kernel's tables and a few probe connections");
    await tellCheck(t);
  }
  t.writeIndex();

  const remember = [
    "What to remember: close() drops one reference to a socket; the kernel closes the socket only",
    "when the last descriptor to it is closed. After fork() every descriptor has two holders, so each",
    "process must close what it does not use: the child the listener, the parent the connection.",
    "shutdown() acts on the socket itself, whoever holds it: that is how the split client ends its half.",
  ];
  t.say(`\n${remember.join("\n")}`);
  t.web?.setStory({ heading: "The end", text: remember.join(" "), next: false, done: true });
  if (t.svgDir) t.say(`\nPictures of every step: ${join(t.svgDir, "index.html")}`);
}

/** --svg DIR: made if missing; a directory we cannot write to is an error before anything starts. */
function prepareDir(dir: string): string {
  try {
    makeDirs(resolve(dir));
    const probe = join(dir, ".realfork-demo-probe");
    writeFileSync(probe, "");
    rmSync(probe);
    return dir;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new Error(`--svg: cannot write pictures to '${dir}': ${e.code ?? e.message}`);
  }
}

/**
 * mkdir -p, one level at a time. Node 22's and 24's mkdirSync(recursive) never
 * returns for a path under /proc (seen: /proc/nope, at full CPU); one mkdir
 * each fails there at once with ENOENT.
 */
function makeDirs(path: string): void {
  if (existsSync(path)) return;
  const parent = dirname(path);
  if (parent !== path) makeDirs(parent);
  mkdirSync(path);
}

/** A program run with --step: its step lines, each waited for once, and the way to let it go on. */
class Stepped {
  readonly child: ChildProcess;
  readonly stderrLines: string[] = [];
  stdout = "";
  readonly #seen: Array<{ role: string; pid: number; step: string; line: string; used: boolean }> = [];
  readonly #waiters: Array<() => void> = [];
  #exited = false;

  constructor(args: string[], stdin: "ignore" | "pipe" = "ignore") {
    const bin = fileURLToPath(new URL("../../../bin/realfork.js", import.meta.url));
    this.child = spawn(process.execPath, ["--single-threaded", bin, ...args], { stdio: [stdin, "pipe", "pipe"] });
    let buffered = "";
    this.child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
      buffered += chunk;
      for (let nl = buffered.indexOf("\n"); nl >= 0; nl = buffered.indexOf("\n")) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        this.stderrLines.push(line);
        const m = STEP_LINE.exec(line);
        if (m) this.#seen.push({ role: m[1] as string, pid: Number(m[2]), step: m[3] as string, line, used: false });
      }
      this.#wake();
    });
    this.child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
      this.stdout += chunk;
      this.#wake();
    });
    this.child.on("exit", () => {
      this.#exited = true;
      this.#wake();
    });
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  /** Resolves when `test` holds, checked on each output; rejects if the program ends first. */
  until<T>(test: () => T | undefined, what: string): Promise<T> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = test();
        if (found !== undefined) resolve(found);
        else if (this.#exited)
          reject(new Error(`the demo's ${what} did not come: the program ended\n${this.stderrLines.join("\n")}`));
        else this.#waiters.push(check);
      };
      check();
    });
  }

  /** The process that now waits at `step` (each step line is used once). */
  at(step: string): Promise<{ role: string; pid: number; line: string }> {
    return this.until(() => {
      const s = this.#seen.find((e) => !e.used && e.step === step);
      if (s) s.used = true;
      return s;
    }, `step ${step}`);
  }

  /** The exit status, once the program has ended. */
  exited(): Promise<number | null> {
    return new Promise((resolve) => {
      const check = () => {
        if (this.#exited) resolve(this.child.exitCode);
        else this.#waiters.push(check);
      };
      check();
    });
  }

  /** SIGTERM, which ends a stepped program at once, waiting processes included; resolves when it has ended. */
  async stop(): Promise<void> {
    if (this.#exited) return;
    this.child.kill("SIGTERM");
    await this.exited();
  }
}

/** `realfork check --probe 2` on a correct server, then on one that leaks (not stepped: check makes its own connections). */
async function tellCheck(t: Teller): Promise<void> {
  for (const extra of [[], ["--leak-parent"]]) {
    const server = new Stepped(["serve", "0", "--host", "127.0.0.1", "--quiet", ...extra]);
    try {
      await server.until(() => server.stderrLines.find((l) => l.includes("listening on")), "server's listening line");
      const pid = server.child.pid as number;
      const report = await checkServer(pid, { probes: 2, timeoutMs: 2000 });
      t.say(`$ realfork check ${pid} --probe 2        # realfork serve ${extra.join(" ") || "(correct)"}`);
      t.say(indent(renderCheck(report)));
      t.emit({ type: "check", server: extra.join(" ") || "correct", report });
    } finally {
      await server.stop();
    }
  }
}

function onPort(s: SocketEntry, port: number): boolean {
  return s.local.endsWith(`:${port}`) || (s.remote?.endsWith(`:${port}`) ?? false);
}

function socketsTable(sockets: SocketEntry[], port: number): string {
  const rows = sockets
    .filter((s) => onPort(s, port))
    .map(
      (s) =>
        `    ${s.state.padEnd(12)} ${s.local.padEnd(22)} ${(s.remote ?? "-").padEnd(22)} refs ${s.holders.length}  holders ${holderText(s.holders)}`,
    );
  return rows.length > 0 ? rows.join("\n") : "    (no descriptor refers to a socket of this connection any more)";
}

async function tellOneConnection(t: Teller, extra: string[], narration: Record<ServerStepName, string>): Promise<void> {
  const server = new Stepped(["serve", "0", "--host", "127.0.0.1", "--quiet", "--step", ...extra]);
  const parentPid = server.child.pid as number;
  const leakParent = extra.includes("--leak-parent");
  const leakChild = extra.includes("--leak-child");
  let client: Socket | null = null;
  try {
    let port = 0;
    const roles = new Map([[parentPid, "parent"]]);
    // Each process waits at its step while the kernel's tables are read.
    const tell = async (step: ServerStepName, who: { role: string; pid: number }) => {
      roles.set(who.pid, who.role);
      t.tell(step, `${who.role} ${who.pid}`, narration[step], snapshot(parentPid), port, roles);
      await t.pause();
    };
    t.watch(parentPid, `realfork serve ${["--step", ...extra].join(" ")}`);
    const listening = await server.at("listening");
    port = Number(/ on \S+:(\d+);/.exec(listening.line)?.[1]);
    t.say(`realfork serve ${["--step", ...extra].join(" ")} is pid ${parentPid}, listening on 127.0.0.1:${port}.\n`);
    await tell("listening", listening);
    await goOn(listening.pid);

    t.say("A client connects.\n");
    client = connect(port, "127.0.0.1");
    client.on("error", () => {});
    let gotEof = false;
    client.on("end", () => {
      gotEof = true;
    });
    const accepted = await server.at("accepted");
    await tell("accepted", accepted);
    await goOn(accepted.pid);

    const [parent, child] = await Promise.all([server.at("forked"), server.at("child-forked")]);
    roles.set(child.pid, "child");
    t.tell("fork", `parent ${parent.pid} and child ${child.pid}`, narration.fork, snapshot(parentPid), port, roles);
    await t.pause();
    await goOn(child.pid);
    if (!leakChild) {
      await tell("child-closed-listener", await server.at("child-closed-listener"));
      await goOn(child.pid);
    }
    await goOn(parent.pid);
    if (!leakParent) {
      const closed = await server.at("parent-closed");
      await tell("parent-closed", closed);
      await goOn(closed.pid);
    }

    const during = snapshot(parentPid);
    t.say("The whole table now, as `realfork fds` shows it (stdio and sockets):\n");
    t.say(indent(renderSnapshot(during, { all: false })));
    t.emit({ type: "fds", moment: "connected", snapshot: during });
    const lsof = lsofTable(during.processes.map((p) => p.pid));
    if (lsof) {
      t.say("And as lsof shows it (lsof -nP -a -p PIDS -iTCP):\n");
      t.say(indent(lsof));
    }

    t.say('The client sends "hello", reads the echo, and half-closes (shutdown SHUT_WR).\n');
    client.write("hello\n");
    const [echo] = (await once(client, "data")) as [Buffer];
    t.say(`    echoed back: ${JSON.stringify(echo.toString())}\n`);
    t.emit({ type: "echo", data: echo.toString() });
    client.end();
    for (const step of ["child-closed", "child-exiting", "reaped"] as const) {
      const at = await server.at(step);
      await tell(step, at);
      await goOn(at.pid);
    }
    const after = snapshot(parentPid);
    t.say("The table after the child's exit:\n");
    t.say(indent(renderSnapshot(after, { all: false })));
    t.emit({ type: "fds", moment: "after-exit", snapshot: after });
    t.say(
      gotEof
        ? "The client saw EOF: the connection is closed on both sides.\n"
        : "The client has NOT seen EOF: the parent's forgotten descriptor keeps the connection open (CLOSE_WAIT on the server side), and it stays so until the parent closes it or exits.\n",
    );
    t.emit({ type: "client", sawEof: gotEof });
  } finally {
    await server.stop();
    client?.destroy();
    t.say(`realfork serve (pid ${parentPid}) stopped with SIGTERM; nothing of it is left running.`);
  }
}

/**
 * The split client against a server of the demo's own that, after the
 * client's FIN, waits before it closes its side: so the reader is still
 * reading while the writer's shutdown() and close() are looked at.
 */
async function tellClient(t: Teller): Promise<void> {
  const server = createServer({ allowHalfOpen: true });
  const accepted = once(server, "connection") as Promise<[Socket]>;
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const port = (server.address() as { port: number }).port;
  const client = new Stepped(["client", "127.0.0.1", String(port), "--step"], "pipe");
  const readerPid = client.child.pid as number;
  try {
    t.say(`A plain echo server on 127.0.0.1:${port}; realfork client --step is pid ${readerPid}.\n`);
    const roles = new Map([[readerPid, "reader"]]);
    const tell = async (step: ClientStepName, who: string) => {
      t.tell(step, who, CLIENT_NARRATION[step], snapshot(readerPid), port, roles);
      await t.pause();
    };
    t.watch(readerPid, "realfork client --step");
    const connected = await client.at("connected");
    await tell("connected", `reader ${connected.pid}`);
    await goOn(connected.pid);
    const [conn] = await accepted;
    conn.on("data", (d) => conn.write(d));
    const sawEnd = once(conn, "end");
    const [reader, writer] = await Promise.all([client.at("forked"), client.at("child-forked")]);
    roles.set(writer.pid, "writer");
    await tell("fork", `reader ${reader.pid} and writer ${writer.pid}`);
    await goOn(writer.pid);
    await goOn(reader.pid);

    t.say('The writer sends "hello" and the reader prints the echo; then the writer reads q.\n');
    client.child.stdin?.write("hello\n");
    await client.until(() => (client.stdout.includes("hello") ? true : undefined), "echo");
    t.say(`    ${client.stdout.trim()}\n`);
    client.child.stdin?.end("q\n");
    await client.at("half-closed");
    // The server has read the FIN; its ACK may be delayed a moment (the
    // socket is in delayed-ACK mode): FIN_WAIT1 until it comes, FIN_WAIT2 after.
    await sawEnd;
    for (let i = 0; i < 200 && snapshot(readerPid).sockets.some((s) => onPort(s, port) && s.state === "FIN_WAIT1"); i++)
      await sleep(10);
    await tell("half-closed", `writer ${writer.pid}`);
    await goOn(writer.pid);
    await client.at("writer-closed");
    await tell("writer-closed", `writer ${writer.pid}`);
    await goOn(writer.pid);

    t.say("The server closes its side of the connection.\n");
    conn.end();
    await client.at("reader-closed");
    await tell("reader-closed", `reader ${reader.pid}`);
    await goOn(reader.pid);
    await goOn((await client.at("reaped")).pid);
    t.emit({ type: "client-exit", code: await client.exited() });
  } finally {
    await client.stop();
    server.close();
    t.say(`realfork client (pid ${readerPid}) ended; the demo's server is closed.`);
  }
}

function indent(text: string): string {
  return text
    .trimEnd()
    .split("\n")
    .map((l) => (l ? `    ${l}` : l))
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

// serve --step and client --step: each process waits at each step of the C
// loop until it is told to go on, so that the kernel's descriptor tables can
// be read at that exact moment (right after fork(): two references).
//
// The wait is a blocking open() of a FIFO named after the process, not a
// SIGSTOP: a shell sees its foreground job stop and takes the terminal back,
// which reads badly when a person steps by hand. open(O_RDONLY) of a FIFO
// blocks until a writer opens it; `realfork step PID` is that writer. While
// the process waits, it holds no extra descriptor (open() has not returned),
// so the tables show only what the program itself holds.
import {
  closeSync,
  constants,
  fstatSync,
  lstatSync,
  mkdtempSync,
  openSync,
  readdirSync,
  rmSync,
  writeSync,
} from "node:fs";
import { constants as os, tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { ClientStep } from "../lib/client.js";
import { SyscallError } from "../lib/errors.js";
import { native } from "../lib/native.js";
import { writeAll } from "../lib/output.js";
import type { ServerStep } from "../lib/server.js";
import { processExists } from "./fdtable.js";

/** The FIFOs of one stepped program live in `$TMPDIR/realfork-step-XXXXXX/<pid>`. */
export const STEP_DIR_PREFIX = "realfork-step-";

/** What a stepped process prints before it waits: `step [child 4243] child-forked: ...; go on: realfork step 4243`. */
export const STEP_LINE = /^step \[(\w+) (\d+)\] ([\w-]+): /;

export class Stepper {
  /** The directory of this program's FIFOs. */
  readonly dir: string;
  readonly #root: number;
  readonly #out: (line: string) => void;

  /** Made in the program's first process, before any fork(); that process removes the directory when it exits. */
  constructor(out: (line: string) => void = (line) => writeAll(2, `${line}\n`)) {
    this.dir = mkdtempSync(join(tmpdir(), STEP_DIR_PREFIX));
    this.#root = native.getpid();
    this.#out = out;
    out(
      `step: each process waits at each step; in another terminal, realfork step PID lets it go on (or: echo > ${this.dir}/PID)`,
    );
    const root = this.#root;
    // A forked child leaves with _exit(), so only the first process runs this.
    process.on("exit", () => {
      if (native.getpid() === root) rmSync(this.dir, { recursive: true, force: true });
    });
  }

  /** True in the process that made the Stepper. */
  get inRoot(): boolean {
    return native.getpid() === this.#root;
  }

  /** Says where this process is, then blocks until `realfork step <pid>` has written a byte to its FIFO. */
  wait(role: string, step: string, detail: string): void {
    const pid = native.getpid();
    const fifo = join(this.dir, String(pid));
    const made = native.mkfifo(fifo, 0o600);
    if (made < 0 && made !== -os.errno.EEXIST) throw new SyscallError(made, "mkfifo");
    this.#out(`step [${role} ${pid}] ${step}: ${detail}; go on: realfork step ${pid}`);
    // Only a byte lets it go on: a writer that opens and closes without
    // writing (or one that left an old FIFO open) reads as EOF: wait again.
    for (let got = 0; got <= 0; ) {
      const fd = native.open(fifo, native.constants.O_RDONLY);
      if (fd < 0) throw new SyscallError(fd, "open");
      got = native.read(fd, Buffer.alloc(16), 0, 16);
      native.close(fd);
    }
    // A new FIFO for each step: the writer waits for this unlink to know the
    // byte was taken, and a later writer cannot reach this step's pipe.
    rmSync(fifo, { force: true });
  }

  /** EchoServer's onStep: every step of the fork-per-connection loop waits. */
  onServerStep = (s: ServerStep): void => {
    this.wait(this.inRoot ? "parent" : "child", s.step, SERVER_STEPS[s.step](s as never));
  };

  /** runClient's onStep: the reader (parent) and the writer (child) wait at each step. */
  onClientStep = (s: ClientStep): void => {
    this.wait(this.inRoot ? "reader" : "writer", s.step, CLIENT_STEPS[s.step](s as never));
  };
}

type Texts<T extends { step: string }> = { [K in T["step"]]: (s: Extract<T, { step: K }>) => string };

const SERVER_STEPS: Texts<ServerStep> = {
  listening: (s) => `socket(), bind(), listen(): listening socket fd ${s.listener} on ${s.address}:${s.port}`,
  accepted: (s) => `accept() -> fd ${s.conn} (client ${s.peer})`,
  forked: (s) => `fork() -> child ${s.child}; the parent still holds fd ${s.conn}`,
  "parent-closed": (s) => `close(${s.conn}) of the connected socket in the parent`,
  "child-forked": (s) => `fork() returned 0; the child holds copies of fd ${s.listener} and fd ${s.conn}`,
  "child-closed-listener": (s) => `close(${s.listener}) of the listening socket in the child`,
  "child-closed": (s) => `EOF; close(${s.conn}) of the connected socket in the child`,
  "child-exiting": (s) => `_exit(${s.status}) next`,
  reaped: (s) => `waitpid() reaped child ${s.child}`,
  "worker-started": (s) => `fork() -> worker ${s.child}`,
};

const CLIENT_STEPS: Texts<ClientStep> = {
  connected: (s) => `socket(), connect() -> fd ${s.sock}`,
  forked: (s) => `fork() -> writer ${s.child}; both hold fd ${s.sock}`,
  "child-forked": (s) => `fork() returned 0; the writer holds a copy of fd ${s.sock}`,
  "half-closed": (s) => `shutdown(${s.sock}, SHUT_WR): FIN sent, the descriptor stays`,
  "writer-closed": (s) => `close(${s.sock}) in the writer`,
  "reader-closed": (s) => `EOF; close(${s.sock}) in the reader`,
  reaped: (s) => `waitpid() reaped writer ${s.child}`,
};

/** The FIFO of a process that is (or was) stepped, or null. */
export function stepFifo(pid: number): string | null {
  const base = tmpdir();
  for (const name of readdirSync(base)) {
    if (!name.startsWith(STEP_DIR_PREFIX)) continue;
    const path = join(base, name, String(pid));
    try {
      if (lstatSync(path).isFIFO()) return path;
    } catch {}
  }
  return null;
}

/** The pids that wait at a step now (each has its FIFO while it waits). */
export function steppedPids(): number[] {
  const base = tmpdir();
  const pids: number[] = [];
  for (const name of readdirSync(base)) {
    if (!name.startsWith(STEP_DIR_PREFIX)) continue;
    try {
      for (const entry of readdirSync(join(base, name))) if (/^\d+$/.test(entry)) pids.push(Number(entry));
    } catch {}
  }
  return pids.sort((a, b) => a - b);
}

/**
 * Lets a stepped process go on from the step it waits at, and returns once it
 * has left it. A process between two steps (running, or printing its step
 * line) is waited for up to `patienceMs`.
 */
export async function goOn(pid: number, patienceMs = 2000): Promise<void> {
  const until = performance.now() + patienceMs;
  for (;;) {
    const fifo = stepFifo(pid);
    const fd = fifo === null ? null : openWriter(fifo);
    if (fifo !== null && fd !== null) {
      try {
        const ino = fstatSync(fd).ino;
        writeSync(fd, "\n");
        // Closed before the process has read it, the byte would go with the
        // pipe; and a second go-on could land in the same step. The process
        // removes its FIFO once it has the byte.
        for (let i = 0; i < 2000 && sameFile(fifo, ino) && processExists(pid); i++) await sleep(5);
      } finally {
        closeSync(fd);
      }
      return;
    }
    if (!processExists(pid)) throw new StepError(`process ${pid} is not running`);
    if (performance.now() > until) throw new StepError(`process ${pid} is not waiting at a step`);
    await sleep(10);
  }
}

/** The FIFO opened for writing, or null when no process waits on it (ENXIO) or it has just gone (ENOENT). */
function openWriter(fifo: string): number | null {
  try {
    // O_NONBLOCK: with no reader the open fails at once instead of blocking
    // until the process comes to its next step.
    return openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENXIO" || code === "ENOENT") return null;
    throw err;
  }
}

function sameFile(path: string, ino: number): boolean {
  try {
    return lstatSync(path).ino === ino;
  } catch {
    return false;
  }
}

/** A process that cannot be told to go on: the CLI reports it, exit 1. */
export class StepError extends Error {}

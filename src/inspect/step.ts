// serve --step and client --step: each process waits at each step of the C
// loop until it is told to go on, so that the kernel's descriptor tables can
// be read at that exact moment (right after fork(): two references).
//
// The wait is a blocking open() of a FIFO named after the process, not a
// SIGSTOP: a shell sees its foreground job stop and takes the terminal back,
// which reads badly when a person steps by hand. open(O_RDONLY) of a FIFO
// blocks until a writer opens it; `realfork step PID` is that writer. While
// a child waits, it holds no extra descriptor (open() has not returned), so
// the tables show only what the program itself holds; the first process
// holds its FIFO open while it waits, to be stopped by a signal (below).
import {
  chmodSync,
  closeSync,
  constants,
  fstatSync,
  lstatSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
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
import { statFields } from "./procstate.js";

/** The FIFOs of one stepped program live in `$TMPDIR/realfork-step-ROOTPID-XXXXXX/<pid>`, with `<pid>.step` saying what each waits at. */
export const STEP_DIR_PREFIX = "realfork-step-";

/** What a stepped process prints before it waits: `step [child 4243] child-forked: ...; go on: realfork step 4243`. */
export const STEP_LINE = /^step \[(\w+) (\d+)\] ([\w-]+): /;

export interface StepperOptions {
  /** Where the step lines go (default: stderr). */
  out?: (line: string) => void;
  /**
   * A descriptor that becomes readable when the program is asked to stop
   * (native.signalPipe). The first process waits for its FIFO and this
   * together, so that SIGTERM or SIGINT end a wait at once.
   */
  stopFd?: number;
}

export class Stepper {
  /** The directory of this program's FIFOs. */
  readonly dir: string;
  readonly #root: number;
  readonly #out: (line: string) => void;
  readonly #stopFd: number;
  #stopping = false;

  /** Made in the program's first process, before any fork(); that process removes the directory when it exits. */
  constructor(options: StepperOptions = {}) {
    this.#root = native.getpid();
    // The root's pid in the name says whose it is once that process is gone
    // (realfork step then removes it).
    this.dir = mkdtempSync(join(tmpdir(), `${STEP_DIR_PREFIX}${this.#root}-`));
    chmodSync(this.dir, 0o700); // whatever the umask: realfork step takes only 0700 folders
    this.#out = options.out ?? ((line) => writeAll(2, `${line}\n`));
    this.#stopFd = options.stopFd ?? -1;
    this.#out(
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

  /** From now on no step waits (in this process, and in children it forks later): the program is stopping. */
  stop(): void {
    this.#stopping = true;
  }

  get stopping(): boolean {
    return this.#stopping;
  }

  /** Says where this process is, then blocks until `realfork step <pid>` has written a byte to its FIFO. */
  wait(role: string, step: string, detail: string): void {
    if (this.#stopping) return;
    const pid = native.getpid();
    const fifo = join(this.dir, String(pid));
    // What it waits at, for realfork step and realfork watch: written before
    // the FIFO exists, so whoever finds the FIFO finds this complete.
    const about: StepInfo = { role, step, detail, start: startTime(pid) };
    writeFileSync(`${fifo}${INFO_SUFFIX}`, JSON.stringify(about));
    const made = native.mkfifo(fifo, 0o600);
    if (made < 0 && made !== -os.errno.EEXIST) throw new SyscallError(made, "mkfifo");
    this.#out(`step [${role} ${pid}] ${step}: ${detail}; go on: realfork step ${pid}`);
    if (this.inRoot && this.#stopFd >= 0) this.#waitOrStop(fifo);
    else waitForByte(fifo);
    // A new FIFO for each step: the writer waits for this unlink to know the
    // byte was taken, and a later writer cannot reach this step's pipe.
    rmSync(fifo, { force: true });
    rmSync(`${fifo}${INFO_SUFFIX}`, { force: true });
  }

  /**
   * The first process waits for its byte or for a stop signal. It holds the
   * FIFO open while it waits (a blocking open() would be restarted after the
   * signal handler, and the stop would wait for the next step); children
   * wait in open() and a stop signal ends them (their handlers are the
   * default ones).
   */
  #waitOrStop(fifo: string): void {
    const { O_RDONLY, O_NONBLOCK, POLLIN, POLLHUP } = native.constants;
    for (;;) {
      const fd = native.open(fifo, O_RDONLY | O_NONBLOCK);
      if (fd < 0) throw new SyscallError(fd, "open");
      try {
        for (;;) {
          const ready = native.poll([fd, this.#stopFd], [POLLIN, POLLIN], -1);
          if (typeof ready === "number") throw new SyscallError(ready, "poll");
          if (((ready[1] ?? 0) & POLLIN) !== 0) {
            // Not read here: the event loop's watcher of the descriptor reads it and stops the program.
            this.#stopping = true;
            return;
          }
          if (((ready[0] ?? 0) & (POLLIN | POLLHUP)) === 0) continue;
          const got = native.read(fd, Buffer.alloc(16), 0, 16);
          if (got > 0) return;
          if (got === 0) break; // a writer came and went without a byte: wait on a fresh open
          if (got !== -os.errno.EAGAIN) throw new SyscallError(got, "read");
        }
      } finally {
        native.close(fd);
      }
    }
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

/** Blocks in open() until a writer comes, until one has written a byte. */
function waitForByte(fifo: string): void {
  // Only a byte lets it go on: a writer that opens and closes without
  // writing (or one that left an old FIFO open) reads as EOF: wait again.
  for (let got = 0; got <= 0; ) {
    const fd = native.open(fifo, native.constants.O_RDONLY);
    if (fd < 0) throw new SyscallError(fd, "open");
    got = native.read(fd, Buffer.alloc(16), 0, 16);
    native.close(fd);
  }
}

/** What `PID.step` beside a FIFO says. */
interface StepInfo {
  role: string;
  step: string;
  detail: string;
  /** The process's start time (Linux, clock ticks since boot): a reused pid does not pass for it. */
  start: string | null;
}

const INFO_SUFFIX = ".step";

/** When `pid` started (field 22 of /proc/PID/stat), or null where that is not known. */
const startTime = (pid: number): string | null => statFields(pid)?.[19] ?? null;

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

/** A process that waits at a step now. */
export interface WaitingProcess {
  pid: number;
  role: string;
  step: string;
  detail: string;
  fifo: string;
}

/**
 * This user's step folders: `realfork-step-*` in the temporary directory
 * that are directories (not symlinks), owned by this user and mode 0700.
 * Another local user can make a folder of that name, not one that passes.
 */
function ownFolders(): string[] {
  const base = tmpdir();
  const uid = process.getuid?.();
  const folders: string[] = [];
  let names: string[];
  try {
    names = readdirSync(base);
  } catch {
    return [];
  }
  for (const name of names) {
    if (!name.startsWith(STEP_DIR_PREFIX)) continue;
    const path = join(base, name);
    try {
      const st = lstatSync(path);
      if (st.isDirectory() && st.uid === uid && (st.mode & 0o777) === 0o700) folders.push(path);
    } catch {}
  }
  return folders;
}

/** A FIFO of ours (lstat: a symlink is not followed). */
function isOwnFifo(path: string): boolean {
  try {
    const st = lstatSync(path);
    return st.isFIFO() && st.uid === process.getuid?.();
  } catch {
    return false;
  }
}

/** The FIFO of a process that waits (or is about to wait) at a step, or null. */
export function stepFifo(pid: number): string | null {
  for (const dir of ownFolders()) {
    const path = join(dir, String(pid));
    if (isOwnFifo(path)) return path;
  }
  return null;
}

function readInfo(fifo: string): StepInfo | null {
  try {
    const info = JSON.parse(readFileSync(`${fifo}${INFO_SUFFIX}`, "utf8")) as StepInfo;
    return typeof info.step === "string" && typeof info.role === "string" ? info : null;
  } catch {
    return null;
  }
}

function alive(pid: number, start: string | null): boolean {
  return processExists(pid) && (start === null || startTime(pid) === start);
}

/**
 * The processes that wait at a step now, with what each waits at, by pid.
 * With `clean`, what a killed program left is removed: the FIFOs of
 * processes that are gone, and the folders whose first process is gone and
 * in which nothing waits.
 */
export function waitingProcesses(options: { clean?: boolean } = {}): WaitingProcess[] {
  const waiting: WaitingProcess[] = [];
  for (const dir of ownFolders()) {
    let live = 0;
    let entries: string[];
    try {
      entries = readdirSync(dir);
    } catch {
      continue;
    }
    // A process has two entries, PID (its FIFO) and PID.step: each is looked at once.
    const pids = new Set(
      entries
        .map((entry) => Number(entry.endsWith(INFO_SUFFIX) ? entry.slice(0, -INFO_SUFFIX.length) : entry))
        .filter((pid) => Number.isInteger(pid) && pid > 0),
    );
    for (const pid of pids) {
      const fifo = join(dir, String(pid));
      const info = readInfo(fifo);
      if (info !== null && alive(pid, info.start)) {
        live++;
        if (entries.includes(String(pid)) && isOwnFifo(fifo))
          waiting.push({ pid, role: info.role, step: info.step, detail: info.detail, fifo });
      } else if (options.clean && (info !== null || !processExists(pid))) {
        for (const entry of [String(pid), `${pid}${INFO_SUFFIX}`])
          if (entries.includes(entry)) rmSync(join(dir, entry), { force: true });
      }
    }
    const root = Number(/-(\d+)-[^-]*$/.exec(dir)?.[1]);
    if (options.clean && live === 0 && !(root > 0 && processExists(root)))
      rmSync(dir, { recursive: true, force: true });
  }
  return waiting.sort((a, b) => a.pid - b.pid);
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

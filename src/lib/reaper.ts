import { EventEmitter } from "node:events";
import { SyscallError } from "./errors.js";
import { native } from "./native.js";
import { type WaitStatus, waitpid } from "./posix.js";

export interface ReaperEvents {
  exit: [status: WaitStatus];
}

/**
 * Reaps the children this process forked, and only those: waitpid(pid,
 * WNOHANG) per tracked pid. A waitpid(-1) would also take the children of
 * child_process, whose 'exit' events would then never come. One SIGCHLD can
 * stand for many exited children (signals coalesce), so every tracked pid is
 * checked each time, not one per signal as in the C material.
 */
export class Reaper extends EventEmitter<ReaperEvents> {
  readonly #pids = new Set<number>();
  readonly #onSignal = () => {
    this.reap();
  };

  /** Starts listening for SIGCHLD; `dispose()` stops. */
  constructor() {
    super();
    process.on("SIGCHLD", this.#onSignal);
  }

  /** Waits for this pid from now on (one you forked). */
  track(pid: number): void {
    this.#pids.add(pid);
  }

  /** How many tracked children have not been reaped yet. */
  get live(): number {
    return this.#pids.size;
  }

  /** The tracked children not reaped yet. */
  get pids(): number[] {
    return [...this.#pids];
  }

  /** Collects every tracked child that has ended; emits 'exit' for each. */
  reap(): WaitStatus[] {
    const ended: WaitStatus[] = [];
    for (const pid of this.#pids) {
      let status: WaitStatus;
      try {
        status = waitpid(pid, native.constants.WNOHANG);
      } catch (err) {
        // ECHILD: not ours any more (someone else waited for it).
        if (err instanceof SyscallError && err.code === "ECHILD") this.#pids.delete(pid);
        continue;
      }
      if (status.pid === 0 || status.state === "stopped" || status.state === "continued") continue;
      this.#pids.delete(pid);
      ended.push(status);
    }
    for (const status of ended) this.emit("exit", status);
    return ended;
  }

  /** Stops listening for SIGCHLD (tracked children are not waited for). */
  dispose(): void {
    process.off("SIGCHLD", this.#onSignal);
  }
}

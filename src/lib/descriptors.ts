import { constants as os } from "node:os";
import { fs } from "./builtins.js";
import { check } from "./errors.js";
import { native } from "./native.js";

const selfFdDir = process.platform === "linux" ? "/proc/self/fd" : "/dev/fd";
const ENOSYS = -os.errno.ENOSYS;
const MAX_FD = 2 ** 31 - 1;

/** The descriptors this process holds now, sorted. */
export function openDescriptors(): number[] {
  // The listing's own directory descriptor is in it; it is closed again by
  // the time the caller looks, so keep only those still valid.
  return fs
    .readdirSync(selfFdDir)
    .map(Number)
    .filter((fd) => Number.isInteger(fd) && native.getfl(fd) >= 0)
    .sort((a, b) => a - b);
}

/**
 * Closes every descriptor above stderr except `keep`. A forked child of Node
 * inherits the runtime's own descriptors (epoll, eventfds, the signal pipe,
 * the inspector's); the C child has none of them, and the child here never
 * returns to the event loop that uses them. Closing the child's copies does
 * not touch the parent's: each holds its own reference.
 *
 * One exception: the loop's wakeup descriptor. V8 can post a task in the
 * child (GC scheduling does), Node then calls uv_async_send(), and libuv
 * abort()s when that write fails (seen: children killed by SIGABRT). It is
 * pointed at /dev/null instead: the write succeeds, and it no longer wakes
 * the parent's loop through the shared eventfd either.
 *
 * Runs in every forked child, so it stays off Node's fs layer: close_range(2)
 * closes the gaps between the kept descriptors in a few calls (Linux); where
 * that is missing, the descriptor list is walked.
 */
export function closeInherited(keep: readonly number[]): void {
  const wakeup = native.loopWakeupFds().filter((fd) => fd > 2 && !keep.includes(fd));
  if (wakeup.length > 0) {
    const devnull = check(native.open("/dev/null", native.constants.O_WRONLY | native.constants.O_CLOEXEC), "open");
    for (const fd of wakeup) native.dup2(devnull, fd);
    native.close(devnull);
  }
  const kept = [...new Set([0, 1, 2, ...keep, ...wakeup])].sort((a, b) => a - b);
  let from = 0;
  for (const fd of [...kept, MAX_FD + 1]) {
    if (fd > from && native.closeRange(from, fd - 1) === ENOSYS) {
      closeListed(kept);
      return;
    }
    from = fd + 1;
  }
}

function closeListed(kept: readonly number[]): void {
  for (const fd of openDescriptors()) {
    if (!kept.includes(fd)) native.close(fd);
  }
}

import { closeSync, openSync, readdirSync } from "node:fs";
import { constants as os } from "node:os";
import { native } from "./native.js";

const selfFdDir = process.platform === "linux" ? "/proc/self/fd" : "/dev/fd";

/** The descriptors this process holds now, sorted. */
export function openDescriptors(): number[] {
  // The listing's own directory descriptor is in it; it is closed again by
  // the time the caller looks, so keep only those still valid.
  return readdirSync(selfFdDir)
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
 */
export function closeInherited(keep: readonly number[]): number[] {
  const wakeup = native.loopWakeupFds().filter((fd) => fd > 2 && !keep.includes(fd));
  if (wakeup.length > 0) {
    const devnull = openSync("/dev/null", "w");
    for (const fd of wakeup) native.dup2(devnull, fd);
    closeSync(devnull);
  }
  const closed: number[] = [];
  for (const fd of openDescriptors()) {
    if (fd <= 2 || keep.includes(fd) || wakeup.includes(fd)) continue;
    const r = native.close(fd);
    if (r === 0 || r === -os.errno.EINTR) closed.push(fd);
  }
  return closed;
}

// Synchronous, complete writes for stdout/stderr and sockets. Node may have
// put a shared stdio descriptor in O_NONBLOCK mode (the flag lives on the
// open file description, so parent and child both see it); a plain write can
// then fail with EAGAIN. Wait for POLLOUT and go on, as a blocking write would.
import { constants as os } from "node:os";
import { SyscallError } from "./errors.js";
import { native } from "./native.js";
import * as v from "./validate.js";

const EAGAIN = -os.errno.EAGAIN;
const EWOULDBLOCK = -os.errno.EWOULDBLOCK;

export function writeAll(fd: number, data: Uint8Array | string): void {
  v.fd(fd);
  const buf = typeof data === "string" ? Buffer.from(data) : v.bytes("data", data);
  let off = 0;
  while (off < buf.byteLength) {
    const n = native.write(fd, buf, off, buf.byteLength - off);
    if (n >= 0) {
      off += n;
    } else if (n === EAGAIN || n === EWOULDBLOCK) {
      native.poll([fd], [native.constants.POLLOUT], -1);
    } else {
      throw new SyscallError(n, "write");
    }
  }
}

/** A line to stderr, written now; a closed stderr is not worth dying for. */
export function warn(line: string): void {
  try {
    writeAll(2, `${line}\n`);
  } catch {}
}

/** 0, 500ms, 2s, 1.5s: how durations are written back to the user. */
export function durationText(ms: number): string {
  if (ms === 0) return "0";
  return ms < 1000 ? `${ms}ms` : `${ms / 1000}s`;
}

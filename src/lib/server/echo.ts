// The echo loop of echo_mpserv.c's child, and the handler `realfork serve`
// gives its ForkingServer.
import { SyscallError } from "../errors.js";
import { native } from "../native.js";
import { warn, writeAll } from "../output.js";
import type { ConnectionHandler } from "./types.js";

/**
 * The child's loop: read up to bufferSize bytes, write them all back, until
 * EOF. A reset or a closed peer (EPIPE: Node ignores SIGPIPE, and the child
 * keeps that) ends the loop like EOF does, with a line on stderr.
 */
export function echo(conn: number, buffer: number | Buffer, err: (line: string) => void = warn): void {
  const buf = typeof buffer === "number" ? Buffer.allocUnsafe(buffer) : buffer;
  const size = buf.byteLength;
  for (;;) {
    const n = native.read(conn, buf, 0, size);
    if (n === 0) return;
    if (n < 0) {
      err(`realfork: child ${native.getpid()}: ${new SyscallError(n, "read").summary}`);
      return;
    }
    let off = 0;
    while (off < n) {
      const w = native.write(conn, buf, off, n - off);
      if (w < 0) {
        err(`realfork: child ${native.getpid()}: ${new SyscallError(w, "write").summary}`);
        return;
      }
      off += w;
    }
  }
}

export interface EchoHandlerOptions {
  bufferSize: number;
  /** No per-connection lines. */
  quiet: boolean;
  /** Say "new client connected..." in the handler (a prefork worker: no parent accepts). */
  announce: boolean;
}

/** The echo server's handler: the lines of echo_mpserv.c around the echo loop. */
export function echoHandler({ bufferSize, quiet, announce }: EchoHandlerOptions): ConnectionHandler {
  // One buffer per process: a per-connection child allocates its own, a
  // worker keeps one for all its connections.
  let buf: Buffer | undefined;
  return (conn) => {
    if (announce && !quiet) writeAll(1, "new client connected...\n");
    buf ??= Buffer.allocUnsafe(bufferSize);
    echo(conn.fd, buf);
    conn.close();
    if (!quiet) writeAll(1, "client disconnected...\n");
  };
}

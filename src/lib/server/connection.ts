// What the child does with one connection, shared by the per-connection
// child and the prefork worker: wrap it, run the handler, close it.
import { SyscallError } from "../errors.js";
import { native } from "../native.js";
import type { Accepted } from "../posix.js";
import * as posix from "../posix.js";
import * as v from "../validate.js";
import type { Connection, ConnectionHandler } from "./types.js";

/** "127.0.0.1:5555", or "[::1]:5555" for IPv6. */
export function formatAddress(address: string, port: number): string {
  v.string("address", address);
  v.port(port);
  return v.ipFamily(address) === 6 ? `[${address}]:${port}` : `${address}:${port}`;
}

/** Runs the handler on an accepted connection, then closes it if the handler has not. */
export function handle(handler: ConnectionHandler, accepted: Accepted, onClosed?: () => void): void {
  let open = true;
  const closed = () => {
    open = false;
    onClosed?.();
  };
  const conn: Connection = {
    fd: accepted.fd,
    address: accepted.address,
    port: accepted.port,
    family: accepted.family,
    peer: formatAddress(accepted.address, accepted.port),
    close() {
      if (!open) return;
      posix.close(accepted.fd);
      closed();
    },
  };
  handler(conn);
  // A handler that closed the descriptor behind conn's back leaves EBADF
  // here, which is no reason to fail.
  if (open) {
    native.close(accepted.fd);
    closed();
  }
}

/** The line a child writes about an error that ends it. */
export function describeError(err: unknown): string {
  if (err instanceof SyscallError) return err.summary;
  if (err instanceof Error) return err.stack ?? String(err);
  return String(err);
}

/** The child's or worker's last words before _exit(1). */
export function childFailed(kind: "child" | "worker", err: unknown): string {
  return `realfork: ${kind} ${native.getpid()}: ${describeError(err)}`;
}

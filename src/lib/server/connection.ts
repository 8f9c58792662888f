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
  AcceptedConnection.serve(handler, accepted, onClosed);
}

/**
 * The handler's Connection. A prefork worker makes one per connection, so it
 * is cheap: `peer` is formatted when first read (most handlers never read
 * it), and close() is a method, not closures made for each connection.
 */
class AcceptedConnection implements Connection {
  readonly fd: number;
  readonly address: string;
  readonly port: number;
  readonly family: Accepted["family"];
  #peer: string | undefined;
  #open = true;
  readonly #onClosed: (() => void) | undefined;

  static serve(handler: ConnectionHandler, accepted: Accepted, onClosed: (() => void) | undefined): void {
    const conn = new AcceptedConnection(accepted, onClosed);
    handler(conn);
    // A handler that closed the descriptor behind conn's back leaves EBADF
    // here, which is no reason to fail.
    if (conn.#open) {
      native.close(conn.fd);
      conn.#closed();
    }
  }

  private constructor(accepted: Accepted, onClosed: (() => void) | undefined) {
    this.fd = accepted.fd;
    this.address = accepted.address;
    this.port = accepted.port;
    this.family = accepted.family;
    this.#onClosed = onClosed;
  }

  get peer(): string {
    this.#peer ??= formatAddress(this.address, this.port);
    return this.#peer;
  }

  close(): void {
    if (!this.#open) return;
    posix.close(this.fd);
    this.#closed();
  }

  #closed(): void {
    this.#open = false;
    this.#onClosed?.();
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

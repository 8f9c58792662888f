// One function per system call, same names and meaning as POSIX. Descriptors
// are numbers; addresses are numeric IPv4/IPv6 strings. Arguments are checked
// here, before the kernel sees them; failures throw SyscallError.
import { constants as osConstants } from "node:os";
import { check, InvalidArgTypeError } from "./errors.js";
import { native } from "./native.js";
import * as v from "./validate.js";

export const constants = Object.freeze({ ...native.constants });

export interface SocketAddress {
  address: string;
  port: number;
  family: "IPv4" | "IPv6" | "unix" | "other";
}

export interface Accepted extends SocketAddress {
  fd: number;
}

export type ProcessState = "running" | "exited" | "signaled" | "stopped" | "continued";

export interface WaitStatus {
  /** The child's pid, or 0 with WNOHANG when no child changed state. */
  pid: number;
  state: ProcessState;
  /** Exit code when state is "exited". */
  code: number | null;
  /** Signal name when state is "signaled" or "stopped". */
  signal: NodeJS.Signals | null;
}

const signalNames = new Map<number, NodeJS.Signals>(
  Object.entries(osConstants.signals).map(([name, num]) => [num, name as NodeJS.Signals]),
);

export function signalName(signal: number): NodeJS.Signals | null {
  return signalNames.get(signal) ?? null;
}

export function signalNumber(signal: unknown): number {
  if (typeof signal === "string") {
    const num = (osConstants.signals as Record<string, number>)[signal];
    if (num === undefined) throw new InvalidArgTypeError("signal", "a signal name like 'SIGTERM' or a number", signal);
    return num;
  }
  return v.integer("signal", signal, 0, 64);
}

export function socket(domain: number, type: number, protocol = 0): number {
  return check(
    native.socket(
      v.integer("domain", domain, 0, 255),
      v.integer("type", type, 0, 2 ** 31 - 1),
      v.integer("protocol", protocol, 0, 255),
    ),
    "socket",
  );
}

export function socketpair(domain: number, type: number, protocol = 0): [number, number] {
  return check(
    native.socketpair(
      v.integer("domain", domain, 0, 255),
      v.integer("type", type, 0, 2 ** 31 - 1),
      v.integer("protocol", protocol, 0, 255),
    ),
    "socketpair",
  );
}

/** Integer options only (SO_REUSEADDR, SO_KEEPALIVE, TCP_NODELAY, buffer sizes...). */
export function setsockopt(fd: number, level: number, name: number, value: number | boolean): void {
  const num = typeof value === "boolean" ? Number(value) : v.integer("value", value, -(2 ** 31), 2 ** 31 - 1);
  check(
    native.setsockopt(v.fd(fd), v.integer("level", level, 0, 65535), v.integer("name", name, 0, 65535), num),
    "setsockopt",
  );
}

export function getsockopt(fd: number, level: number, name: number): number {
  return check(
    native.getsockopt(v.fd(fd), v.integer("level", level, 0, 65535), v.integer("name", name, 0, 65535)),
    "getsockopt",
  );
}

export function bind(fd: number, host: string, port: number): void {
  check(native.bind(v.fd(fd), v.numericHost("host", host), v.port(port)), "bind");
}

export function listen(fd: number, backlog: number): void {
  check(native.listen(v.fd(fd), v.integer("backlog", backlog, 0, 2 ** 31 - 1)), "listen");
}

export function accept(fd: number): Accepted {
  return check(native.accept(v.fd(fd)), "accept");
}

export function connect(fd: number, host: string, port: number): void {
  check(native.connect(v.fd(fd), v.numericHost("host", host), v.port(port)), "connect");
}

export function shutdown(fd: number, how: number): void {
  check(native.shutdown(v.fd(fd), v.integer("how", how, 0, 2)), "shutdown");
}

export function getsockname(fd: number): SocketAddress {
  return check(native.getsockname(v.fd(fd)), "getsockname");
}

export function getpeername(fd: number): SocketAddress {
  return check(native.getpeername(v.fd(fd)), "getpeername");
}

/** Reads into buf[offset, offset+length); returns the byte count, 0 at EOF. */
export function read(fd: number, buf: Uint8Array, offset?: number, length?: number): number {
  const b = v.bytes("buffer", buf);
  const [off, len] = v.span(b, offset, length);
  return check(native.read(v.fd(fd), b, off, len), "read");
}

/** Writes buf[offset, offset+length); returns the byte count (may be short). */
export function write(fd: number, buf: Uint8Array, offset?: number, length?: number): number {
  const b = v.bytes("buffer", buf);
  const [off, len] = v.span(b, offset, length);
  return check(native.write(v.fd(fd), b, off, len), "write");
}

export function close(fd: number): void {
  check(native.close(v.fd(fd)), "close");
}

export function dup(fd: number): number {
  return check(native.dup(v.fd(fd)), "dup");
}

export function dup2(fd: number, target: number): number {
  return check(native.dup2(v.fd(fd), v.fd(target, "target")), "dup2");
}

export interface PollRequest {
  fd: number;
  events: number;
}

/** Waits until one of the descriptors is ready; returns revents per request (all 0 on timeout). */
export function poll(requests: readonly PollRequest[], timeoutMs: number): number[] {
  if (!Array.isArray(requests)) throw new InvalidArgTypeError("requests", "an array", requests);
  const fds = requests.map((r, i) => v.fd(r?.fd, `requests[${i}].fd`));
  const events = requests.map((r, i) => v.integer(`requests[${i}].events`, r?.events, 0, 0x7fff));
  return check(native.poll(fds, events, v.integer("timeoutMs", timeoutMs, -1, 2 ** 31 - 1)), "poll");
}

/**
 * fcntl(F_SETFD, FD_CLOEXEC): whether a program this process executes (a
 * spawn) inherits the descriptor. socket(), socketpair() and accept() make
 * theirs close-on-exec; clear it on purpose to hand one to a program. fork()
 * ignores it. Returns the previous setting.
 */
export function setCloseOnExec(fd: number, on: boolean): boolean {
  if (typeof on !== "boolean") throw new InvalidArgTypeError("on", "of type boolean", on);
  return check(native.cloexec(v.fd(fd), on), "fcntl") === 1;
}

/** fcntl(F_GETFL) */
export function getFileStatusFlags(fd: number): number {
  return check(native.getfl(v.fd(fd)), "fcntl");
}

/** fcntl(F_SETFL) */
export function setFileStatusFlags(fd: number, flags: number): void {
  check(native.setfl(v.fd(fd), v.integer("flags", flags, 0, 2 ** 31 - 1)), "fcntl");
}

export function waitpid(pid: number, options = 0): WaitStatus {
  const [child, kind, value] = check(native.waitpid(v.pid(pid), v.integer("options", options, 0, 0xffff)), "waitpid");
  switch (kind) {
    case 1:
      return { pid: child, state: "exited", code: value, signal: null };
    case 2:
      return { pid: child, state: "signaled", code: null, signal: signalName(value) };
    case 3:
      return { pid: child, state: "stopped", code: null, signal: signalName(value) };
    case 4:
      return { pid: child, state: "continued", code: null, signal: null };
    default:
      return { pid: child, state: "running", code: null, signal: null };
  }
}

export function getpid(): number {
  return native.getpid();
}

export function getppid(): number {
  return native.getppid();
}

export function kill(pid: number, signal: number | NodeJS.Signals = "SIGTERM"): void {
  check(native.kill(v.pid(pid), signalNumber(signal)), "kill");
}

/**
 * prctl(PR_SET_PDEATHSIG): the signal this process gets when its parent dies
 * (Linux; ENOSYS elsewhere). A forked worker asks for SIGTERM so that a parent
 * killed with SIGKILL does not leave it holding the listener.
 */
export function parentDeathSignal(signal: number | NodeJS.Signals = "SIGTERM"): void {
  check(native.parentDeathSignal(signalNumber(signal)), "prctl");
}

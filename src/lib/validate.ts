import { InvalidArgTypeError, OutOfRangeError } from "./errors.js";
import { native } from "./native.js";

export function integer(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== "number") throw new InvalidArgTypeError(name, "of type number", value);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new OutOfRangeError(name, Number.isInteger(value) ? `>= ${min} && <= ${max}` : "an integer", value);
  }
  return value;
}

const INT_MAX = 2 ** 31 - 1;

export const fd = (value: unknown, name = "fd"): number => integer(name, value, 0, INT_MAX);
export const port = (value: unknown): number => integer("port", value, 0, 65535);
export const pid = (value: unknown, name = "pid"): number => integer(name, value, -INT_MAX, INT_MAX);

export function string(name: string, value: unknown): string {
  if (typeof value !== "string") throw new InvalidArgTypeError(name, "of type string", value);
  return value;
}

/**
 * 4 or 6 for a numeric IPv4 or IPv6 address as bind() and connect() take it
 * (inet_pton), 0 for anything else. Instead of node:net's isIP, whose module
 * would load node's whole stream stack into every forking parent (~1 MB of
 * pages that each fork() copies).
 */
export function ipFamily(text: string): 0 | 4 | 6 {
  return native.ipFamily(string("address", text));
}

/** A numeric IPv4 or IPv6 address (no name lookup happens before the kernel). */
export function numericHost(name: string, value: unknown): string {
  const text = string(name, value);
  if (ipFamily(text) === 0) {
    const err = new TypeError(`The "${name}" argument must be a numeric IPv4 or IPv6 address. Received '${text}'`);
    throw Object.assign(err, { code: "ERR_INVALID_ARG_VALUE" });
  }
  return text;
}

export function bytes(name: string, value: unknown): Uint8Array {
  if (!(value instanceof Uint8Array)) throw new InvalidArgTypeError(name, "an instance of Buffer or Uint8Array", value);
  return value;
}

/** [offset, length] inside buf, with Node's defaults (the rest of the buffer). */
export function span(buf: Uint8Array, offset: unknown, length: unknown): [number, number] {
  const off = offset === undefined ? 0 : integer("offset", offset, 0, buf.byteLength);
  const len = length === undefined ? buf.byteLength - off : integer("length", length, 0, buf.byteLength - off);
  return [off, len];
}

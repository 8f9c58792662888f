import { constants as os } from "node:os";
import { util } from "./builtins.js";
import { native } from "./native.js";

const uvErrors = util.getSystemErrorMap();
const errnoNames = new Map(Object.entries(os.errno).map(([name, num]) => [num, name]));

/** [code, description] as Node words them; libuv's table lacks a few (ECHILD). */
function describeErrno(errno: number): [string, string] {
  const uv = uvErrors.get(-errno);
  if (uv) return uv;
  const text = native.strerror(errno);
  return [errnoNames.get(errno) ?? `E${errno}`, text.charAt(0).toLowerCase() + text.slice(1)];
}

/**
 * The one error a failed system call throws, shaped like Node's own:
 * `EBADF: bad file descriptor, close` with `code`, `errno` (negative) and
 * `syscall`.
 */
export class SyscallError extends Error {
  readonly code: string;
  readonly errno: number;
  readonly syscall: string;
  /** The words alone: "bad file descriptor". */
  readonly description: string;

  constructor(errno: number, syscall: string) {
    const positive = Math.abs(errno);
    const [code, description] = describeErrno(positive);
    super(`${code}: ${description}, ${syscall}`);
    this.name = "SyscallError";
    this.code = code;
    this.errno = -positive;
    this.syscall = syscall;
    this.description = description;
  }

  /** "close: EBADF: bad file descriptor", the way the CLI reports it. */
  get summary(): string {
    return `${this.syscall}: ${this.code}: ${this.description}`;
  }
}

/** Throws SyscallError for a negative native result, returns it otherwise. */
export function check<T>(result: T | number, syscall: string): T {
  if (typeof result === "number" && result < 0) throw new SyscallError(result, syscall);
  return result as T;
}

function describe(value: unknown): string {
  if (value === null) return "Received null";
  if (value === undefined) return "Received undefined";
  if (typeof value === "function") return `Received function ${value.name || "<anonymous>"}`;
  if (typeof value === "object") return `Received an instance of ${value.constructor?.name ?? "Object"}`;
  return `Received type ${typeof value} (${util.inspect(value).slice(0, 25)})`;
}

export class InvalidArgTypeError extends TypeError {
  readonly code = "ERR_INVALID_ARG_TYPE";
  constructor(name: string, expected: string, actual: unknown) {
    super(`The "${name}" argument must be ${expected}. ${describe(actual)}`);
    this.name = "TypeError";
  }
}

export class OutOfRangeError extends RangeError {
  readonly code = "ERR_OUT_OF_RANGE";
  constructor(name: string, range: string, actual: unknown) {
    super(`The value of "${name}" is out of range. It must be ${range}. Received ${util.inspect(actual)}`);
    this.name = "RangeError";
  }
}

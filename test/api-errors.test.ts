// Bad input to the API: a TypeError/RangeError with Node's codes before the
// kernel is asked, or a SyscallError from the kernel; never a crash.
import { closeSync, openSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import * as rf from "../src/index.js";
import { native } from "../src/lib/native.js";
import { event, runFixture } from "./helpers/fixtures.js";
import { useLeftoverCheck } from "./helpers/processes.js";

useLeftoverCheck();

type Call = [string, () => unknown, string];

const buf = Buffer.alloc(8);
const typeCases: Call[] = [
  ["close('3')", () => rf.close("3" as unknown as number), "ERR_INVALID_ARG_TYPE"],
  ["close(undefined)", () => rf.close(undefined as unknown as number), "ERR_INVALID_ARG_TYPE"],
  ["close(-1)", () => rf.close(-1), "ERR_OUT_OF_RANGE"],
  ["close(1.5)", () => rf.close(1.5), "ERR_OUT_OF_RANGE"],
  ["close(2**31)", () => rf.close(2 ** 31), "ERR_OUT_OF_RANGE"],
  ["close(NaN)", () => rf.close(Number.NaN), "ERR_OUT_OF_RANGE"],
  ["read(0, 'x')", () => rf.read(0, "x" as unknown as Uint8Array), "ERR_INVALID_ARG_TYPE"],
  ["read(0, buf, 9)", () => rf.read(0, buf, 9), "ERR_OUT_OF_RANGE"],
  ["read(0, buf, 4, 5)", () => rf.read(0, buf, 4, 5), "ERR_OUT_OF_RANGE"],
  ["write(1, {})", () => rf.write(1, {} as Uint8Array), "ERR_INVALID_ARG_TYPE"],
  ["bind(3, 'localhost', 80)", () => rf.bind(3, "localhost", 80), "ERR_INVALID_ARG_VALUE"],
  ["bind(3, '127.0.0.1', 70000)", () => rf.bind(3, "127.0.0.1", 70000), "ERR_OUT_OF_RANGE"],
  ["connect(3, 127, 80)", () => rf.connect(3, 127 as unknown as string, 80), "ERR_INVALID_ARG_TYPE"],
  ["listen(3, -1)", () => rf.listen(3, -1), "ERR_OUT_OF_RANGE"],
  ["shutdown(3, 7)", () => rf.shutdown(3, 7), "ERR_OUT_OF_RANGE"],
  ["kill(1, 'SIGNOPE')", () => rf.kill(1, "SIGNOPE" as NodeJS.Signals), "ERR_INVALID_ARG_TYPE"],
  ["waitpid('1')", () => rf.waitpid("1" as unknown as number), "ERR_INVALID_ARG_TYPE"],
  ["dup2(1, -5)", () => rf.dup2(1, -5), "ERR_OUT_OF_RANGE"],
  ["poll('x', 0)", () => rf.poll("x" as unknown as [], 0), "ERR_INVALID_ARG_TYPE"],
  ["poll([{fd:-1}], 0)", () => rf.poll([{ fd: -1, events: 1 }], 0), "ERR_OUT_OF_RANGE"],
  ["_exit(256)", () => rf._exit(256), "ERR_OUT_OF_RANGE"],
  ["socket('inet', 1)", () => rf.socket("inet" as unknown as number, 1), "ERR_INVALID_ARG_TYPE"],
];

describe("wrong arguments", () => {
  it.each(typeCases)("%s throws with code %s before reaching the kernel", (_label, call, code) => {
    let caught: unknown;
    try {
      call();
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(Error);
    expect((caught as { code: string }).code).toBe(code);
    expect(caught instanceof TypeError || caught instanceof RangeError).toBe(true);
  });
});

describe("bad descriptors", () => {
  const unused = 4000;
  it.each([
    ["close", () => rf.close(unused)],
    ["read", () => rf.read(unused, buf)],
    ["write", () => rf.write(unused, buf)],
    ["dup", () => rf.dup(unused)],
    ["dup2", () => rf.dup2(unused, unused + 1)],
    ["accept", () => rf.accept(unused)],
    ["listen", () => rf.listen(unused, 5)],
    ["shutdown", () => rf.shutdown(unused, rf.constants.SHUT_WR)],
    ["getsockname", () => rf.getsockname(unused)],
  ] as Array<[string, () => unknown]>)("%s gives EBADF in Node's shape", (syscall, call) => {
    expect(call).toThrowError(
      expect.objectContaining({
        name: "SyscallError",
        code: "EBADF",
        errno: -9,
        syscall,
        message: `EBADF: bad file descriptor, ${syscall}`,
      }),
    );
  });

  it("names errors libuv does not know (ECHILD) with the OS's own words", () => {
    expect(() => rf.waitpid(-1, rf.constants.WNOHANG)).toThrowError(
      expect.objectContaining({ code: "ECHILD", syscall: "waitpid", message: "ECHILD: no child processes, waitpid" }),
    );
  });

  it("gives ENOTSOCK for a socket call on a file", () => {
    const fd = openSync(fileURLToPath(import.meta.url), "r");
    try {
      expect(() => rf.listen(fd, 1)).toThrowError(expect.objectContaining({ code: "ENOTSOCK", syscall: "listen" }));
    } finally {
      closeSync(fd);
    }
  });
});

describe("the raw binding", () => {
  // Garbage straight into the native functions: a JS exception or a negative
  // errno, never a crash of the process.
  const garbage: unknown[] = [undefined, null, "3", {}, [], -1, 2 ** 40, Number.NaN, Buffer.alloc(0), () => 0];
  const fns = [
    "socket",
    "setsockopt",
    "bind",
    "listen",
    "accept",
    "connect",
    "shutdown",
    "read",
    "write",
    "close",
    "dup",
    "dup2",
    "poll",
    "waitpid",
    "getsockname",
    "getfl",
    "closeRange",
  ] as const;
  it.each(fns)("%s survives wrong arguments", (name) => {
    const fn = native[name] as (...args: unknown[]) => unknown;
    let calls = 0;
    for (const a of garbage) {
      for (const b of garbage) {
        let result: unknown;
        try {
          result = fn(a, b, a, b);
        } catch (err) {
          expect(err).toBeInstanceOf(Error);
          calls++;
          continue;
        }
        // Calls that got through gave an errno (never closed/killed anything real).
        if (typeof result === "number") expect(result).toBeLessThan(0);
        calls++;
      }
    }
    expect(calls).toBe(garbage.length ** 2);
  });
});

describe("fuzzing the public API", () => {
  // Seeded, so that a failure can be replayed:
  //   node --single-threaded test/fixtures/fuzz-api.mjs SEED 4000 977>&1
  it.each([1, 2, 3])("seed %i: 4000 calls with wrong types and edge values, a coded error every time", async (seed) => {
    const run = await runFixture("fuzz-api.mjs", [String(seed), "4000"], ["--single-threaded"], 60_000);
    expect(run.code, run.stderr).toBe(0);
    const done = event(run, "done");
    expect(done.bad).toEqual([]);
    expect(done.calls).toBe(4000);
    // Both kinds of refusal, and real successes, were reached.
    const outcomes = done.byOutcome as Record<string, number>;
    expect(outcomes.ERR_INVALID_ARG_TYPE).toBeGreaterThan(0);
    expect(outcomes.ERR_OUT_OF_RANGE).toBeGreaterThan(0);
    expect(outcomes.EBADF).toBeGreaterThan(0);
    expect(outcomes.returned).toBeGreaterThan(0);
  });
});

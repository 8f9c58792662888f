// FdWatcher, the public event-loop watch on a descriptor, in this process.
import { describe, expect, it } from "vitest";
import { close, constants, FdWatcher, read, socketpair, write } from "../src/index.js";
import { withTimeout } from "./helpers/processes.js";

describe("FdWatcher", () => {
  it("calls back when the descriptor becomes readable, then writable, and not after stop()", async () => {
    const [a, b] = socketpair(constants.AF_UNIX, constants.SOCK_STREAM);
    const seen: Array<{ readable: boolean; writable: boolean }> = [];
    let wake: (() => void) | undefined;
    const w = new FdWatcher(a, (ready, error) => {
      expect(error).toBeNull();
      seen.push(ready);
      w.stop();
      wake?.();
    });
    const once = () =>
      withTimeout(
        new Promise<void>((r) => {
          wake = r;
        }),
        5000,
        "callback",
      );
    w.start({ readable: true });
    expect(w.active).toBe(true);
    const first = once();
    write(b, Buffer.from("x"));
    await first;
    expect(seen).toEqual([{ readable: true, writable: false }]);
    expect(read(a, Buffer.alloc(4))).toBe(1);
    const second = once();
    w.start({ writable: true });
    await second;
    expect(seen[1]).toEqual({ readable: false, writable: true });
    expect(w.active).toBe(false);
    w.close();
    expect(() => w.start()).toThrow(expect.objectContaining({ code: "EBADF" }));
    close(a);
    close(b);
  });

  it("refuses what is not a descriptor or a callback, and an empty interest", () => {
    expect(() => new FdWatcher(-1, () => {})).toThrow(expect.objectContaining({ code: "ERR_OUT_OF_RANGE" }));
    expect(() => new FdWatcher(0, "x" as never)).toThrow(expect.objectContaining({ code: "ERR_INVALID_ARG_TYPE" }));
    const [a, b] = socketpair(constants.AF_UNIX, constants.SOCK_STREAM);
    const w = new FdWatcher(a, () => {});
    expect(() => w.start({})).toThrow(/readable or writable/);
    w.close();
    close(a);
    close(b);
  });
});

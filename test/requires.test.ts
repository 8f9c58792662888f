// test/helpers/requires.ts: a test whose runtime is missing is skipped with
// a line saying what to install, or fails when REALFORK_REQUIRE_ALL=1.
import { describe, expect, it } from "vitest";
import { missing, type Need, verdict } from "./helpers/requires.js";

const absent: Need = {
  what: "Frobnicator",
  probe: ["/nonexistent/realfork-frobnicator", ["--version"]],
  install: "apt-get install frobnicator",
};
const failingProbe: Need = {
  what: "Node's Frob module",
  probe: [process.execPath, ["-e", "require('frob-missing')"]],
  install: "npm install frob-missing",
};
const present: Need = { what: "Node", probe: [process.execPath, ["-e", ""]], install: "none" };

describe("requires", () => {
  it("says what is missing and how to install it, when the command is absent or its probe fails", () => {
    expect(missing(absent)).toBe("Frobnicator missing (apt-get install frobnicator)");
    expect(missing(failingProbe)).toBe("Node's Frob module missing (npm install frob-missing)");
    expect(missing(present)).toBeNull();
  });

  it("skips with one line naming each missing need; fails instead under REALFORK_REQUIRE_ALL=1", () => {
    expect(verdict([present], {})).toBeNull();
    expect(verdict([present, absent], {})).toEqual({
      skip: "skipped: Frobnicator missing (apt-get install frobnicator)",
    });
    expect(verdict([absent, failingProbe], { REALFORK_REQUIRE_ALL: "0" })).toEqual({
      skip: "skipped: Frobnicator missing (apt-get install frobnicator); Node's Frob module missing (npm install frob-missing)",
    });
    expect(verdict([absent], { REALFORK_REQUIRE_ALL: "1" })).toEqual({
      fail: "Frobnicator missing (apt-get install frobnicator); REALFORK_REQUIRE_ALL=1 makes this a failure, not a skip",
    });
    expect(verdict([present], { REALFORK_REQUIRE_ALL: "1" })).toBeNull();
  });
});

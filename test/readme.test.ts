// The README's library example, run as it is written there.
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { afterAll, describe, expect, it } from "vitest";
import { fixture, root } from "./helpers/paths.js";
import { spawnTracked, useLeftoverCheck, withTimeout } from "./helpers/processes.js";

useLeftoverCheck();

const readme = readFileSync(`${root}README.md`, "utf8");
const section = readme.slice(readme.indexOf("## The library"));
const code = /```js\n([\s\S]*?)```/.exec(section)?.[1] ?? "";
// Inside the package, so that "realfork" resolves to it (package.json "exports").
const script = fixture(".readme-example.mjs");

afterAll(() => rmSync(script, { force: true }));

describe("README, The library", () => {
  it("the example is about 20 lines and serves: greeting from a child, echo, reaped, closed on SIGTERM", async () => {
    expect(code.split("\n").length).toBeGreaterThan(12);
    expect(code.split("\n").length).toBeLessThan(26);
    writeFileSync(script, code);
    const proc = spawnTracked(process.execPath, [script]);
    const m = await proc.waitFor(/listening on 127\.0\.0\.1:(\d+)\n/);
    const reply = await withTimeout(
      new Promise<string>((resolve, reject) => {
        let got = "";
        const s = connect(Number(m[1]), "127.0.0.1", () => s.end("ping\n"));
        s.setEncoding("utf8").on("data", (d) => {
          got += d;
        });
        s.on("error", reject);
        s.on("close", () => resolve(got));
      }),
      10_000,
      "the example's reply",
    );
    const hello = /^hello 127\.0\.0\.1:\d+, this is child (\d+)\nping\n$/.exec(reply);
    expect(hello, reply).not.toBeNull();
    expect(Number(hello?.[1])).not.toBe(proc.pid);
    await proc.waitFor(new RegExp(`child ${hello?.[1]}: exited 0\n`));
    proc.child.kill("SIGTERM");
    expect(await proc.exited()).toEqual({ code: 0, signal: null });
    expect(proc.stdout()).toMatch(/closed\n$/);
    expect(proc.stderr()).toBe("");
  });
});

// The programs in examples/, run as a user would (plain node, no flags: each
// restarts itself with --single-threaded), with real clients.
import { describe, expect, it } from "vitest";
import { root } from "./helpers/paths.js";
import { spawnTracked, type Tracked, useLeftoverCheck } from "./helpers/processes.js";
import { childrenGone, childrenOf, echo } from "./helpers/servers.js";

useLeftoverCheck();

async function run(name: string, args: string[] = []): Promise<{ proc: Tracked; port: number }> {
  const proc = spawnTracked(process.execPath, [`${root}examples/${name}`, "0", ...args]);
  const m = await proc.waitFor(/listening on 127\.0\.0\.1:(\d+)/, 20_000);
  return { proc, port: Number(m[1]) };
}

async function terminate(proc: Tracked): Promise<void> {
  proc.child.kill("SIGTERM");
  expect(await proc.exited()).toEqual({ code: 0, signal: null });
  expect(proc.stdout()).toMatch(/stopped\n$/);
  expect(proc.stderr()).toBe("");
}

describe("examples/", () => {
  it("upper-server.mjs answers each line in upper case, one child per connection", async () => {
    const { proc, port } = await run("upper-server.mjs");
    const replies = await Promise.all(
      [1, 2, 3].map((i) => echo(port, Buffer.from(`hello ${i}\nsecond line\nno newline`))),
    );
    for (const [i, r] of replies.entries()) expect(r.toString()).toBe(`HELLO ${i + 1}\nSECOND LINE\nNO NEWLINE`);
    await proc.waitFor(/(child \d+ ended \(exited 0\)\n[\s\S]*){3}/);
    await childrenGone(proc.pid);
    await terminate(proc);
  });

  it.skipIf(process.platform !== "linux")(
    "prefork-table.mjs: workers answer from a table loaded once, each with far less private memory than the table",
    async () => {
      const { proc, port } = await run("prefork-table.mjs", ["3"]);
      const workers = await childrenOf(proc.pid, 3);
      const queries = [0, 1, 12345, 16 * 1024 * 1024 - 1];
      const expected = queries.map((i) => `${(Math.imul(i, 2654435761) >>> 0) % 1000003}\n`).join("");
      for (let round = 0; round < 6; round++) {
        const got = await echo(port, Buffer.from(queries.map((q) => `${q}\n`).join("")));
        expect(got.toString()).toBe(expected);
      }
      proc.child.kill("SIGUSR2");
      const m = await proc.waitFor(/parent \d+: private [\d.]+ MiB\n/);
      const report = proc.stdout().slice(0, (m.index ?? 0) + m[0].length);
      for (const pid of workers) {
        const w = new RegExp(`worker ${pid}: private ([\\d.]+) MiB; table (\\d+) MiB`).exec(report);
        expect(w, report).not.toBeNull();
        const [privateMiB, tableMiB] = [Number(w?.[1]), Number(w?.[2])];
        expect(tableMiB).toBe(64);
        // Shared copy-on-write: a worker's own pages are a fraction of the table.
        expect(privateMiB).toBeLessThan(tableMiB / 4);
      }
      await terminate(proc);
    },
  );

  it("book-server.mjs echoes like echo_mpserv.c and reaps every child while idle", async () => {
    const { proc, port } = await run("book-server.mjs");
    for (let i = 0; i < 3; i++) expect((await echo(port, Buffer.from(`book ${i}\n`))).toString()).toBe(`book ${i}\n`);
    await proc.waitFor(/(removed proc id: \d+\n[\s\S]*){3}/);
    await childrenGone(proc.pid);
    expect(proc.stdout().match(/new client connected\.\.\./g)).toHaveLength(3);
    await terminate(proc);
  });
});

import http from "node:http";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { row } from "../examples/http-prefork/table.mjs";
import { inGroups, sleep, spawnTracked, type Tracked, useLeftoverCheck } from "./helpers/processes.js";

useLeftoverCheck();
const example = fileURLToPath(new URL("../examples/http-prefork/server.mjs", import.meta.url));
const ROWS = 100_000;

interface Event {
  event: string;
  [k: string]: unknown;
}
const events = (p: Tracked): Event[] =>
  p
    .stdout()
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Event);

async function startExample(workers: number): Promise<{ p: Tracked; port: number }> {
  const p = spawnTracked(process.execPath, [
    "--single-threaded",
    example,
    "--workers",
    `${workers}`,
    "--rows",
    `${ROWS}`,
  ]);
  const m = await p.waitFor(/"event":"listening","port":(\d+)/, 30_000);
  await untilEvents(p, "ready", workers);
  return { p, port: Number(m[1]) };
}

async function untilEvents(p: Tracked, name: string, n: number): Promise<Event[]> {
  for (let i = 0; i < 600; i++) {
    const found = events(p).filter((e) => e.event === name);
    if (found.length >= n) return found;
    await sleep(50);
  }
  throw new Error(`fewer than ${n} '${name}' events:\n${p.stdout()}\n${p.stderr()}`);
}

/** n requests, `concurrency` at a time; every answer checked. Returns the workers that answered and the wrong answers. */
async function load(port: number, n: number, concurrency: number, keepAlive: boolean) {
  const agent = new http.Agent({ keepAlive, maxSockets: concurrency });
  const bad: string[] = [];
  const workers = new Map<string, number>();
  let next = 0;
  const one = (i: number) =>
    new Promise<void>((resolve) => {
      const id = (i * 7) % (ROWS + 50); // some beyond the table: 404
      http
        .get({ host: "127.0.0.1", port, path: `/row/${id}`, agent }, (res) => {
          let body = "";
          res.setEncoding("utf8").on("data", (d) => {
            body += d;
          });
          res.on("end", () => {
            const want = id < ROWS ? [200, row(id)] : [404, "no such row\n"];
            if (res.statusCode !== want[0] || body !== want[1]) bad.push(`${id}: ${res.statusCode} ${body}`);
            const w = String(res.headers["x-worker"] ?? "none");
            workers.set(w, (workers.get(w) ?? 0) + 1);
            resolve();
          });
        })
        .on("error", (err) => {
          bad.push(`${id}: ${err.message}`);
          resolve();
        });
    });
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) await one(next++);
    }),
  );
  agent.destroy();
  return { bad, workers };
}

describe("examples/http-prefork: fork({ eventLoop }) http workers under load", () => {
  it("answers thousands of requests from 4 workers correctly, replaces a SIGKILLed worker, stops on SIGTERM", async () => {
    const { p, port } = await startExample(4);
    const ready = await untilEvents(p, "ready", 4);
    const first = await load(port, 3000, 16, false);
    expect(first.bad).toEqual([]);
    const keep = await load(port, 3000, 16, true);
    expect(keep.bad).toEqual([]);
    const answered = new Set([...first.workers.keys(), ...keep.workers.keys()]);
    for (const w of answered) expect(ready.map((r) => String(r.pid))).toContain(w);

    const victim = ready[0]?.pid as number;
    process.kill(victim, "SIGKILL");
    await untilEvents(p, "ready", 5);
    expect(events(p).find((e) => e.event === "worker-exit")).toMatchObject({ pid: victim, signal: "SIGKILL" });
    const after = await load(port, 1000, 8, false);
    expect(after.bad).toEqual([]);
    expect(after.workers.has(String(victim))).toBe(false);

    p.child.kill("SIGTERM");
    expect(await p.exited(20_000)).toEqual({ code: 0, signal: null });
    const exits = events(p).filter((e) => e.event === "worker-exit");
    expect(exits).toHaveLength(5);
    // The four live workers stopped on SIGTERM, each with status 0.
    expect(exits.slice(1).map((e) => [e.state, e.code])).toEqual([
      ["exited", 0],
      ["exited", 0],
      ["exited", 0],
      ["exited", 0],
    ]);
    expect(events(p).at(-1)?.event).toBe("stopped");
  });

  it("leaves no worker behind when the parent is SIGKILLed (PR_SET_PDEATHSIG)", async () => {
    const { p, port } = await startExample(4);
    expect((await load(port, 200, 8, true)).bad).toEqual([]);
    p.child.kill("SIGKILL");
    await p.died(10_000);
    // The workers get SIGTERM from the kernel and drain; none may stay.
    let left = inGroups([p.pid]);
    for (let i = 0; i < 200 && left.some((x) => !x.stat.startsWith("Z")); i++) {
      await sleep(50);
      left = inGroups([p.pid]);
    }
    expect(left.filter((x) => !x.stat.startsWith("Z"))).toEqual([]);
  });
});

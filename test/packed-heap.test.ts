// The packed-heap opt-in (serve --packed-heap, ensureNodeFlags(..., { packedHeap })):
// the restart preloads native/linux/packed_heap.c, the kernel shows V8's pages
// packed (far fewer page tables), the server still serves byte-exact, and no
// program the process starts inherits the preload.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import type { CompareResult } from "../src/bench/compare.js";
import type { BenchReport } from "../src/cli/commands/bench.js";
import { runCli } from "./helpers/cli.js";
import { cli, fixture } from "./helpers/paths.js";
import { spawnTracked, useLeftoverCheck } from "./helpers/processes.js";
import { childrenGone, echoMany, startServe, stop } from "./helpers/servers.js";

useLeftoverCheck();

const SHIM = "realfork_packed_heap.so";
const status = (pid: number, field: string): number =>
  Number(new RegExp(`^${field}:\\s+(\\d+)`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]);
/** Anonymous read-write mappings of exactly 256 KiB: V8 heap pages that sit alone. */
const lonePages = (pid: number): number =>
  readFileSync(`/proc/${pid}/maps`, "utf8")
    .split("\n")
    .filter((line) => {
      const m = /^([0-9a-f]+)-([0-9a-f]+) rw-p 00000000 00:00 0\s*$/.exec(line);
      return m !== null && Number.parseInt(m[2] as string, 16) - Number.parseInt(m[1] as string, 16) === 256 * 1024;
    }).length;
const libcPath = (): string => {
  const line = readFileSync("/proc/self/maps", "utf8")
    .split("\n")
    .find((l) => /\/libc\.so\.6$/.test(l));
  return line?.split(/\s+/).pop() as string;
};

describe.skipIf(process.platform !== "linux")("the packed heap (opt-in)", () => {
  it("serve --packed-heap: preloaded, V8's pages packed, byte-exact, nothing left", async () => {
    const plain = await startServe(["--quiet"]);
    const packed = await startServe(["--quiet", "--packed-heap"]);
    expect(packed.proc.stderr()).toContain(
      "--packed-heap: V8's heap pages are packed, not placed at random (weaker ASLR)",
    );
    expect(readFileSync(`/proc/${packed.pid}/maps`, "utf8")).toContain(SHIM);
    expect(readFileSync(`/proc/${plain.pid}/maps`, "utf8")).not.toContain(SHIM);
    // What the kernel keeps for each: the page tables fork() copies.
    expect(lonePages(plain.pid)).toBeGreaterThanOrEqual(10);
    expect(lonePages(packed.pid)).toBeLessThanOrEqual(3);
    expect(status(packed.pid, "VmPTE")).toBeLessThan(0.6 * status(plain.pid, "VmPTE"));
    const bad = await echoMany(packed.port, 200, 16, (i) => Buffer.from(`packed ${i} `.repeat(1 + (i % 50))));
    expect(bad).toEqual([]);
    await childrenGone(packed.pid);
    expect(await stop(packed)).toEqual({ code: 0, signal: null });
    expect(await stop(plain)).toEqual({ code: 0, signal: null });
  });

  it.each([
    ["no LD_PRELOAD of the user's", undefined],
    ["the user's LD_PRELOAD", "libc"],
  ])("ensureNodeFlags({ packedHeap: true }) with %s: loaded here, not in spawned programs", async (_, user) => {
    const mine = user === undefined ? undefined : libcPath();
    const env = { ...process.env };
    delete env.LD_PRELOAD;
    if (mine) env.LD_PRELOAD = mine;
    const proc = spawnTracked(process.execPath, [fixture("packed-heap.mjs")], { stdin: "ignore", env });
    expect(await proc.exited()).toEqual({ code: 0, signal: null });
    expect(JSON.parse(proc.stdout())).toEqual({
      event: "ran",
      pid: proc.pid,
      packedHeap: true,
      mapped: true,
      env: mine ?? null,
      spawnedEnv: mine ?? "(unset)",
      spawnedMapped: 0,
    });
  });

  it("a restart that did not load the preload fails at start with exit 2 and says so", async () => {
    const proc = spawnTracked(process.execPath, [cli, "serve", "0", "--packed-heap"], {
      env: { ...process.env, REALFORK_REEXEC: "1" },
    });
    expect(await proc.exited()).toEqual({ code: 2, signal: null });
    expect(proc.stderr()).toMatch(
      /^realfork: node was restarted with LD_PRELOAD=\S+realfork_packed_heap\.so but the library was not loaded/,
    );
    expect(proc.stdout()).toBe("");
  });

  it("--packed-heap belongs to serve: other commands refuse it with exit 2, without a restart", async () => {
    const proc = spawnTracked(process.execPath, [cli, "client", "127.0.0.1", "9", "--packed-heap"]);
    expect(await proc.exited()).toEqual({ code: 2, signal: null });
    expect(proc.stderr()).toBe("realfork client: unknown option '--packed-heap' (see realfork client --help)\n");
  });

  it("ensureNodeFlags() checks its options", async () => {
    const { ensureNodeFlags } = await import("../src/lib/reexec.js");
    expect(() => ensureNodeFlags([], { packedHeap: "yes" as unknown as boolean })).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_ARG_TYPE", message: expect.stringContaining("options.packedHeap") }),
    );
    expect(() => ensureNodeFlags([], null as unknown as object)).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_ARG_TYPE" }),
    );
  });

  it("bench --packed-heap drives realfork serve --packed-heap, every byte checked", async () => {
    const r = await runCli<BenchReport>(
      ["bench", "--packed-heap", "--workload", "short", "--connections", "150", "--concurrency", "4", "--json"],
      { timeoutMs: 60_000 },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.json?.server).toBe("realfork serve --packed-heap");
    expect(r.json?.short).toMatchObject({ ok: 150, failed: 0, mismatched: 0 });
  });

  it("compare --packed-heap: a row of its own in the same rounds, and its ratio to each fork-per-connection server", async () => {
    const small = ["--rounds", "1", "--connections", "150", "--concurrency", "4", "--stream-bytes", "2097152"];
    const r = await runCli<CompareResult>(["compare", ...small, "--forks", "0", "--packed-heap", "--json"], {
      timeoutMs: 120_000,
    });
    expect(r.code, r.stderr).toBe(0);
    const rows = r.json?.peers?.rows ?? [];
    expect(rows.map((p) => [p.server, p.label])).toEqual([
      ["c", "C echo_mpserv_fixed"],
      ["ts", "realfork serve"],
      ["ts --packed-heap", "realfork serve --packed-heap"],
    ]);
    const packed = rows.find((p) => p.server === "ts --packed-heap");
    for (const p of rows) {
      expect(p.connsPerSec).toHaveLength(1);
      if (p === packed) expect(p.packedRatio).toBeNull();
      else expect(p.packedRatio).toBeCloseTo((packed?.median ?? 0) / p.median, 6);
    }
    const text = await runCli(["compare", ...small, "--forks", "0", "--packed-heap"], { timeoutMs: 120_000 });
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/SHORT CONNECTIONS .* realfork\/it +packed\/it\n/);
    expect(text.stdout).toMatch(/\n {2}realfork serve --packed-heap +\d+ /);
  });
});

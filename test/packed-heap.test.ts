// The packed heap (serve's default on Linux, --no-packed-heap to leave it out;
// ensureNodeFlags(..., { packedHeap }) for a script): the restart preloads
// native/linux/packed_heap.c, V8's pages sit together in one region at a
// random address (far fewer page tables), the server still serves
// byte-exact, and no program the process starts inherits the preload.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import type { CompareResult } from "../src/bench/compare.js";
import type { BenchReport } from "../src/cli/commands/bench.js";
import { NODE_FLAGS } from "../src/cli/node-flags.js";
import { packedHeapLibrary } from "../src/lib/native.js";
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
const GiB = 2 ** 30;
const maps = (pid: number) => readFileSync(`/proc/${pid}/maps`, "utf8").split("\n");
/** The packed heap's region: its unused end is the one anonymous PROT_NONE mapping of several GiB. */
const regionOf = (pid: number): { start: number; end: number } | null => {
  const ends = maps(pid)
    .map((line) => /^([0-9a-f]+)-([0-9a-f]+) ---p 00000000 00:00 0\s*$/.exec(line))
    .filter((m) => m !== null)
    .map((m) => [Number.parseInt(m[1] as string, 16), Number.parseInt(m[2] as string, 16)] as const)
    .filter(([start, end]) => end - start > 4 * GiB);
  return ends.length === 1 ? { start: (ends[0]?.[1] ?? 0) - 8 * GiB, end: ends[0]?.[1] ?? 0 } : null;
};
/** Where libc is mapped: the libraries' randomised base. */
const libcStart = (pid: number): number => Number.parseInt(maps(pid).find((l) => /\/libc\.so\.6$/.test(l)) ?? "", 16);
/** Bytes of anonymous read-write memory mapped inside [start, end). */
const rwInside = (pid: number, region: { start: number; end: number }): number =>
  maps(pid)
    .map((line) => /^([0-9a-f]+)-([0-9a-f]+) rw-p 00000000 00:00 0\s*$/.exec(line))
    .filter((m) => m !== null)
    .map((m) => [Number.parseInt(m[1] as string, 16), Number.parseInt(m[2] as string, 16)] as const)
    .filter(([start, end]) => start >= region.start && end <= region.end)
    .reduce((sum, [start, end]) => sum + end - start, 0);
const libcPath = (): string => {
  const line = readFileSync("/proc/self/maps", "utf8")
    .split("\n")
    .find((l) => /\/libc\.so\.6$/.test(l));
  return line?.split(/\s+/).pop() as string;
};

describe.skipIf(process.platform !== "linux")("the packed heap (serve's default)", () => {
  it("serve: preloaded, V8's pages packed, byte-exact, nothing left; --no-packed-heap leaves it out", async () => {
    const plain = await startServe(["--quiet", "--no-packed-heap"]);
    const packed = await startServe(["--quiet"]);
    expect(readFileSync(`/proc/${packed.pid}/maps`, "utf8")).toContain(SHIM);
    expect(readFileSync(`/proc/${plain.pid}/maps`, "utf8")).not.toContain(SHIM);
    expect(regionOf(plain.pid)).toBeNull();
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

  it("the region's base is drawn at random for each process, apart from the libraries, and V8's pages are in it", async () => {
    const servers = [await startServe(["--quiet"]), await startServe(["--quiet", "--packed-heap"])];
    const regions = servers.map((s) => regionOf(s.pid));
    for (const [i, region] of regions.entries()) {
      const pid = servers[i]?.pid as number;
      expect(region).not.toBeNull();
      if (region === null) continue;
      expect(region.start).toBeGreaterThanOrEqual(4 * GiB);
      expect(region.end).toBeLessThanOrEqual(2 ** 46);
      expect(region.start % (256 * 1024)).toBe(0);
      expect(rwInside(pid, region)).toBeGreaterThan(1024 * 1024);
      expect(lonePages(pid)).toBeLessThanOrEqual(3);
    }
    const [a, b] = regions.map((r) => r?.start ?? 0) as [number, number];
    const [pa, pb] = servers.map((s) => s.pid) as [number, number];
    // ~28 bits each: equal bases, or an equal offset from libc, would mean they are not drawn apart.
    expect(a).not.toBe(b);
    expect(a - libcStart(pa)).not.toBe(b - libcStart(pb));
    for (const s of servers) expect(await stop(s)).toEqual({ code: 0, signal: null });
  });

  it("REALFORK_LARGE_TEXT=1: node's code moved onto 2 MiB pages, and the variable and the preload gone for programs it starts", async () => {
    const thp = readFileSync("/sys/kernel/mm/transparent_hugepage/enabled", "utf8");
    const script = `
      const { readFileSync } = require("node:fs");
      const { execFileSync } = require("node:child_process");
      const huge = readFileSync("/proc/self/smaps", "utf8").split(/^(?=[0-9a-f]+-)/m)
        .filter((m) => / r-xp /.test(m)).map((m) => Number(/AnonHugePages:\\s+(\\d+)/.exec(m)?.[1] ?? 0));
      const spawned = execFileSync("sh", ["-c", 'echo "\${REALFORK_LARGE_TEXT-unset} \${LD_PRELOAD-unset}"'], { encoding: "utf8" });
      console.log(JSON.stringify({ codeHugeKb: huge.reduce((a, b) => a + b, 0), env: process.env.REALFORK_LARGE_TEXT ?? null, spawned: spawned.trim() }));`;
    const env = { ...process.env, LD_PRELOAD: packedHeapLibrary, REALFORK_LARGE_TEXT: "1" };
    const proc = spawnTracked(process.execPath, ["-e", script], { stdin: "ignore", env });
    expect(await proc.exited()).toEqual({ code: 0, signal: null });
    const ran = JSON.parse(proc.stdout());
    expect(ran).toMatchObject({ env: null, spawned: "unset unset" });
    // node's code is ~40 MB; with THP off ("[never]") nothing moves and the code stays where it was.
    if (thp.includes("[never]")) expect(ran.codeHugeKb).toBe(0);
    else expect(ran.codeHugeKb).toBeGreaterThan(16 * 1024);
  });

  it.skipIf(Number(process.versions.node.split(".")[0]) < 26)(
    "node 26+: serve's code is on 2 MiB pages by default, not with --no-packed-heap",
    async () => {
      const hugeCode = (pid: number) =>
        readFileSync(`/proc/${pid}/smaps`, "utf8")
          .split(/^(?=[0-9a-f]+-)/m)
          .filter((m) => / r-xp /.test(m))
          .reduce((sum, m) => sum + Number(/AnonHugePages:\s+(\d+)/.exec(m)?.[1] ?? 0), 0);
      const packed = await startServe(["--quiet"]);
      const plain = await startServe(["--quiet", "--no-packed-heap"]);
      if (!readFileSync("/sys/kernel/mm/transparent_hugepage/enabled", "utf8").includes("[never]"))
        expect(hugeCode(packed.pid)).toBeGreaterThan(16 * 1024);
      expect(hugeCode(plain.pid)).toBe(0);
      expect(await echoMany(packed.port, 50, 8, (i) => Buffer.from(`text ${i}`))).toEqual([]);
      await childrenGone(packed.pid);
      for (const s of [packed, plain]) expect(await stop(s)).toEqual({ code: 0, signal: null });
    },
  );

  it.each([
    ["no LD_PRELOAD of the user's", undefined],
    ["the user's LD_PRELOAD", "libc"],
  ])(
    "ensureNodeFlags({ packedHeap: true }) with %s: loaded here, in the forked child, not in spawned programs",
    async (_, user) => {
      const mine = user === undefined ? undefined : libcPath();
      const env = { ...process.env };
      delete env.LD_PRELOAD;
      if (mine) env.LD_PRELOAD = mine;
      const proc = spawnTracked(process.execPath, [fixture("packed-heap.mjs")], { stdin: "ignore", env });
      expect(await proc.exited()).toEqual({ code: 0, signal: null });
      const [child, ran] = proc
        .stdout()
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l));
      // The child placed its new pages (large objects) in the region it inherited.
      expect(child).toEqual({ held: 4, added: expect.any(Number), inside: child.added });
      expect(child.added).toBeGreaterThanOrEqual(1);
      expect(ran).toEqual({
        event: "ran",
        pid: proc.pid,
        packedHeap: true,
        mapped: true,
        region: { start: expect.any(Number), end: expect.any(Number) },
        libcStart: expect.any(Number),
        mappings: expect.any(Number),
        lonePagesOutside: 0,
        childExit: { pid: expect.any(Number), state: "exited", code: 0, signal: null },
        env: mine ?? null,
        spawnedEnv: mine ?? "(unset)",
        spawnedMapped: 0,
      });
      // After churn with collections: what V8 freed was taken again.
      expect(ran.mappings).toBeLessThan(150);
    },
  );

  it.each([
    [["serve", "0", "--packed-heap"], ""],
    [["serve", "0"], "; realfork serve --no-packed-heap runs without the preload"],
  ])("a restart that did not load the preload (%j) fails at start with exit 2 and says so", async (args, hint) => {
    // Started with the flags, so the preload is all that is missing.
    const proc = spawnTracked(process.execPath, [...NODE_FLAGS, cli, ...args], {
      env: { ...process.env, REALFORK_REEXEC: "1" },
    });
    expect(await proc.exited()).toEqual({ code: 2, signal: null });
    expect(proc.stderr()).toMatch(
      /^realfork: node was restarted with LD_PRELOAD=\S+realfork_packed_heap\.so but the library was not loaded/,
    );
    expect(proc.stderr().trimEnd().endsWith(`(see the loader's message above)${hint}`)).toBe(true);
    expect(proc.stdout()).toBe("");
  });

  it.each(["--packed-heap", "--no-packed-heap"])(
    "%s belongs to serve: other commands refuse it with exit 2",
    async (flag) => {
      const proc = spawnTracked(process.execPath, [cli, "client", "127.0.0.1", "9", flag]);
      expect(await proc.exited()).toEqual({ code: 2, signal: null });
      expect(proc.stderr()).toBe(`realfork client: unknown option '${flag}' (see realfork client --help)\n`);
    },
  );

  it("serve --packed-heap --no-packed-heap: exit 2, a clear message, nothing started", async () => {
    const proc = spawnTracked(process.execPath, [cli, "serve", "0", "--packed-heap", "--no-packed-heap"]);
    expect(await proc.exited()).toEqual({ code: 2, signal: null });
    expect(proc.stderr()).toContain("--packed-heap and --no-packed-heap contradict each other");
    expect(proc.stderr()).not.toContain("listening on");
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

  it("bench --no-packed-heap drives realfork serve --no-packed-heap, every byte checked", async () => {
    const r = await runCli<BenchReport>(
      ["bench", "--no-packed-heap", "--workload", "short", "--connections", "150", "--concurrency", "4", "--json"],
      { timeoutMs: 60_000 },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.json?.server).toBe("realfork serve --no-packed-heap");
    expect(r.json?.short).toMatchObject({ ok: 150, failed: 0, mismatched: 0 });
  });

  it("compare --no-packed-heap: a row of its own in the same rounds, and its ratio to each fork-per-connection server", async () => {
    const small = ["--rounds", "1", "--connections", "150", "--concurrency", "4", "--stream-bytes", "2097152"];
    const r = await runCli<CompareResult>(["compare", ...small, "--forks", "0", "--no-packed-heap", "--json"], {
      timeoutMs: 120_000,
    });
    expect(r.code, r.stderr).toBe(0);
    const rows = r.json?.peers?.rows ?? [];
    expect(rows.map((p) => [p.server, p.label])).toEqual([
      ["c", "C echo_mpserv_fixed"],
      ["ts", "realfork serve"],
      ["ts --no-packed-heap", "realfork serve --no-packed-heap"],
    ]);
    const unpacked = rows.find((p) => p.server === "ts --no-packed-heap");
    for (const p of rows) {
      expect(p.connsPerSec).toHaveLength(1);
      if (p === unpacked) expect(p.unpackedRatio).toBeNull();
      else expect(p.unpackedRatio).toBeCloseTo((unpacked?.median ?? 0) / p.median, 6);
    }
    const text = await runCli(["compare", ...small, "--forks", "0", "--no-packed-heap"], { timeoutMs: 120_000 });
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/SHORT CONNECTIONS .* realfork\/it +unpacked\/it\n/);
    expect(text.stdout).toMatch(/\n {2}realfork serve --no-packed-heap +\d+ /);
  });
});

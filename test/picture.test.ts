import type { Socket } from "node:net";
import { describe, expect, it } from "vitest";
import { renderDot } from "../src/inspect/dot.js";
import { type FdSnapshot, snapshot } from "../src/inspect/fdtable.js";
import type { Finding } from "../src/inspect/findings.js";
import { FINDING_COLOUR, pictureModel, renderSvg } from "../src/inspect/picture.js";
import { cli } from "./helpers/paths.js";
import { decodePng, inkedPixels, pixelsNear } from "./helpers/png.js";
import { sleep, spawnTracked, useLeftoverCheck } from "./helpers/processes.js";
import { open, startServe, stop } from "./helpers/servers.js";
import { png, wellFormed } from "./helpers/svg.js";

useLeftoverCheck();

/** A server and `n` idle clients, once every child holds its connection. */
async function serverWith(n: number) {
  const server = await startServe(["--quiet"]);
  const clients: Socket[] = [];
  for (let i = 0; i < n; i++) {
    const c = await open(server.port);
    c.on("error", () => {});
    clients.push(c);
  }
  let snap = snapshot(server.pid);
  const settled = (s: FdSnapshot) =>
    s.processes.length === n + 1 &&
    s.sockets.length === n + 1 &&
    s.sockets.every((x) => x.holders.length === 1) &&
    s.processes.every((p) => p.descriptors.length <= (p.pid === server.pid ? 64 : 6));
  for (let i = 0; i < 200 && !settled(snap); i++) {
    await sleep(25);
    snap = snapshot(server.pid);
  }
  expect(settled(snap)).toBe(true);
  return { server, clients, snap };
}

/** The text of the SVG from one socket's label to the next. */
function socketBlock(svg: string, inode: number): string {
  const start = svg.indexOf(`socket:[${inode}]`);
  const next = svg.indexOf("socket:[", start + 1);
  return svg.slice(start, next < 0 ? undefined : next);
}

function rects(svg: string, x: number): Array<[number, number]> {
  return [...svg.matchAll(/<rect x="(\d+(?:\.\d+)?)" y="(\d+(?:\.\d+)?)" width="\d+" height="(\d+(?:\.\d+)?)" rx/g)]
    .filter((m) => Number(m[1]) === x)
    .map((m) => [Number(m[2]), Number(m[2]) + Number(m[3])]);
}

describe("the pictures' checks (test/helpers/svg.ts)", () => {
  it("reject malformed XML, and tell a blank picture, a black one, a red one and text apart", () => {
    for (const bad of ["<svg><g></svg>", "<svg>a & b</svg>", "<svg/><svg/>", "<svg>&nbsp;</svg>", '<svg a="1" a="2"/>'])
      expect(() => wellFormed(bad), bad).toThrow(/^not well-formed XML: /);
    const draw = (body: string) =>
      decodePng(png(`<svg xmlns="http://www.w3.org/2000/svg" width="200" height="100">${body}</svg>`));
    const blank = draw("");
    expect([blank.width, blank.height, inkedPixels(blank)]).toEqual([200, 100, 0]);
    const black = draw('<rect x="10" y="10" width="100" height="50"/>');
    expect([inkedPixels(black), pixelsNear(black, FINDING_COLOUR)]).toEqual([5000, 0]);
    const red = draw(`<rect x="10" y="10" width="100" height="50" fill="${FINDING_COLOUR}"/>`);
    expect(pixelsNear(red, FINDING_COLOUR)).toBe(5000);
    // Text is drawn on any machine: the font comes with the tests, not from the system.
    expect(inkedPixels(draw('<text x="10" y="50" font-family="DejaVu Sans Mono">refs 2</text>'))).toBeGreaterThan(50);
  });
});

describe("descriptor pictures", () => {
  it("fds --svg is well-formed XML and holds every pid, inode and reference count of its snapshot", async () => {
    const { server, clients, snap } = await serverWith(3);
    const svg = renderSvg(pictureModel(snap));
    wellFormed(svg);
    for (const p of snap.processes) expect(svg).toContain(`${p.pid === server.pid ? "parent" : "child"} ${p.pid}<`);
    for (const s of snap.sockets) expect(socketBlock(svg, s.inode)).toContain(`>refs ${s.holders.length}<`);
    expect(inkedPixels(decodePng(png(svg)))).toBeGreaterThan(5000);

    // The CLI draws the same (the clients are idle: the tables do not move).
    const p = spawnTracked(cli, ["fds", String(server.pid), "--svg"]);
    expect(await p.exited()).toEqual({ code: 0, signal: null });
    wellFormed(p.stdout());
    for (const proc of snap.processes) expect(p.stdout()).toContain(`${proc.pid}<`);
    for (const s of snap.sockets) expect(socketBlock(p.stdout(), s.inode)).toContain(`>refs ${s.holders.length}<`);

    const dot = spawnTracked(cli, ["fds", String(server.pid), "--dot"]);
    expect(await dot.exited()).toEqual({ code: 0, signal: null });
    const text = dot.stdout();
    expect(text.startsWith("digraph fds {")).toBe(true);
    for (const proc of snap.processes) expect(text).toContain(`  p${proc.pid} [label=<`);
    for (const s of snap.sockets) {
      expect(text).toContain(`  s${s.inode} [label=<`);
      for (const h of s.holders) expect(text).toContain(`  p${h.pid}:fd${h.fd} -> s${s.inode};`);
    }
    for (const c of clients) c.destroy();
    expect(await stop(server)).toEqual({ code: 0, signal: null });
  });

  it("draws a finding's process, descriptor and socket in red, and lists it", async () => {
    const { server, clients, snap } = await serverWith(1);
    const child = snap.processes[1]?.pid as number;
    const conn = snap.sockets.find((s) => s.state === "ESTABLISHED");
    const fd = conn?.holders[0]?.fd as number;
    const finding: Finding = {
      kind: "connection-in-parent",
      message: "the test says this descriptor is wrong",
      fix: "none, it is a test",
      evidence: [{ pid: child, fd, inode: conn?.inode as number }],
    };
    const plain = renderSvg(pictureModel(snap));
    const flagged = renderSvg(pictureModel(snap, { findings: [finding] }));
    wellFormed(flagged);
    expect(flagged).toContain("connection-in-parent: the test says this descriptor is wrong (fix: none, it is a test)");
    expect(socketBlock(flagged, conn?.inode as number)).toBeTruthy();
    expect(pixelsNear(decodePng(png(plain)), FINDING_COLOUR)).toBe(0);
    expect(pixelsNear(decodePng(png(flagged)), FINDING_COLOUR)).toBeGreaterThan(500);
    const dot = renderDot(pictureModel(snap, { findings: [finding] }));
    expect(dot).toContain(`p${child}:fd${fd} -> s${conn?.inode} [color="${FINDING_COLOUR}" penwidth=2];`);
    for (const c of clients) c.destroy();
    expect(await stop(server)).toEqual({ code: 0, signal: null });
  });

  it("stays readable with a few dozen children: no box overlaps another, each socket next to its holder", async () => {
    const n = 30;
    const { server, clients, snap } = await serverWith(n);
    const svg = renderSvg(pictureModel(snap));
    wellFormed(svg);
    const procs = rects(svg, 20);
    const socks = rects(svg, 520);
    expect([procs.length, socks.length]).toEqual([n + 1, n + 1]);
    for (const column of [procs, socks]) {
      const sorted = [...column].sort((a, b) => a[0] - b[0]);
      for (let i = 1; i < sorted.length; i++) expect(sorted[i]?.[0]).toBeGreaterThan(sorted[i - 1]?.[1] as number);
    }
    // Each child's connection is drawn level with the child: every edge but the listener's is a short one.
    const edges = [...svg.matchAll(/<path d="M\d+ (\d+(?:\.\d+)?) C[^"]* (\d+(?:\.\d+)?)"/g)].map((m) =>
      Math.abs(Number(m[1]) - Number(m[2])),
    );
    expect(edges.length).toBe(n + 1);
    expect(edges.filter((d) => d > 120).length).toBeLessThanOrEqual(1);
    expect(inkedPixels(decodePng(png(svg)))).toBeGreaterThan(n * 2000);
    for (const c of clients) c.destroy();
    expect(await stop(server)).toEqual({ code: 0, signal: null });
  });

  it("rejects --svg with --json, --dot or --watch", async () => {
    for (const args of [
      ["--svg", "--json"],
      ["--svg", "--dot"],
      ["--dot", "--watch"],
    ]) {
      const p = spawnTracked(cli, ["fds", String(process.pid), ...args]);
      expect(await p.exited()).toEqual({ code: 2, signal: null });
      expect(p.stderr()).toMatch(/^realfork fds: (choose one of|--watch redraws text)/);
    }
  });
});

// realfork watch, driven in a real browser: Debian's chromium through
// playwright-core. Without chromium the browser tests are skipped with a line
// saying what is missing; with REALFORK_REQUIRE_ALL=1 (CI) that is a failure.
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FdSnapshot, type ProcessEntry, type SocketEntry, snapshot } from "../src/inspect/fdtable.js";
import { changes } from "../src/inspect/web/changes.js";
import { cli } from "./helpers/paths.js";
import { spawnTracked, type Tracked, useLeftoverCheck } from "./helpers/processes.js";
import { open, type Server, startServe } from "./helpers/servers.js";

useLeftoverCheck();

const CHROMIUM = "/usr/bin/chromium";

/** What the browser tests need and this machine lacks, or null. */
function browserMissing(): string | null {
  try {
    createRequire(import.meta.url).resolve("playwright-core");
  } catch {
    return "playwright-core is not installed (npm ci installs it: a devDependency)";
  }
  if (!existsSync(CHROMIUM)) return `${CHROMIUM} is missing (Debian: apt-get install -y chromium)`;
  return null;
}

const missing = browserMissing();
const requireAll = process.env.REALFORK_REQUIRE_ALL === "1";
if (missing && !requireAll) console.warn(`test/watch.test.ts: browser tests skipped: ${missing}`);

type Browser = import("playwright-core").Browser;
type Page = import("playwright-core").Page;

/** realfork watch on a target; resolves once it printed its address. */
async function startWatch(args: string[]): Promise<{ proc: Tracked; url: string }> {
  const proc = spawnTracked(cli, ["watch", ...args]);
  const m = await proc.waitFor(/^(http:\/\/127\.0\.0\.1:\d+\/\?token=([A-Za-z0-9_-]+))\n/, 10_000);
  expect((m[2] as string).length).toBeGreaterThanOrEqual(16);
  return { proc, url: m[1] as string };
}

/** realfork demo --web; resolves once it printed the page's address (the first line of its stdout). */
async function startDemoWeb(): Promise<{ demo: Tracked; url: string }> {
  const demo = spawnTracked(cli, ["demo", "--web"]);
  const url = (await demo.waitFor(/^(http:\/\/127\.0\.0\.1:\d+\/\?token=[\w-]{16,})$/m))[1] as string;
  return { demo, url };
}

/** Waits until the inline picture's text includes (or, with present false, no longer includes) `text`. */
async function picture(page: Page, text: string, present = true): Promise<void> {
  await page.waitForFunction(
    ([t, p]) => (document.querySelector("#picture svg")?.textContent ?? "").includes(t as string) === p,
    [text, present] as const,
    { timeout: 10_000 },
  );
}

describe("the timeline: what changed between two readings", () => {
  const proc = (pid: number, ppid: number, fds: Array<[number, number]>): ProcessEntry => ({
    pid,
    ppid,
    command: "node",
    descriptors: fds.map(([fd, inode]) => ({ fd, type: "tcp" as const, target: `socket:[${inode}]`, inode })),
  });
  const sock = (
    inode: number,
    state: string,
    remote: string | null,
    holders: Array<[number, number]>,
  ): SocketEntry => ({
    inode,
    local: "127.0.0.1:9190",
    remote,
    state,
    holders: holders.map(([pid, fd]) => ({ pid, fd })),
    descriptions: null,
  });
  const snap = (processes: ProcessEntry[], sockets: SocketEntry[]): FdSnapshot => ({
    platform: "linux",
    root: 100,
    unavailable: [],
    processes,
    sockets,
  });

  it("says which socket appeared, whose close() took refs 2 -> 1, a state change, an exit, a socket gone", () => {
    const forked = snap(
      [
        proc(100, 1, [
          [3, 11],
          [4, 22],
        ]),
        proc(200, 100, [
          [3, 11],
          [4, 22],
        ]),
      ],
      [
        sock(11, "LISTEN", null, [
          [100, 3],
          [200, 3],
        ]),
        sock(22, "ESTABLISHED", "127.0.0.1:5000", [
          [100, 4],
          [200, 4],
        ]),
      ],
    );
    expect(changes(null, forked).map((c) => c.text)).toEqual([
      "socket:[11] 127.0.0.1:9190 LISTEN appeared, held by 100:3 200:3 (refs 2)",
      "socket:[22] 127.0.0.1:9190 <-> 127.0.0.1:5000 ESTABLISHED appeared, held by 100:4 200:4 (refs 2)",
    ]);
    const closed = snap(
      [proc(100, 1, [[3, 11]]), proc(200, 100, [[4, 22]])],
      [sock(11, "LISTEN", null, [[100, 3]]), sock(22, "CLOSE_WAIT", "127.0.0.1:5000", [[200, 4]])],
    );
    expect(changes(forked, closed)).toEqual([
      { kind: "refs", text: "socket:[11] 127.0.0.1:9190 refs 2 -> 1: close(3) in [child 200]" },
      { kind: "socket", text: "socket:[22] 127.0.0.1:9190 <-> 127.0.0.1:5000 ESTABLISHED -> CLOSE_WAIT" },
      { kind: "refs", text: "socket:[22] 127.0.0.1:9190 <-> 127.0.0.1:5000 refs 2 -> 1: close(4) in [parent 100]" },
    ]);
    const exited = snap([proc(100, 1, [[3, 11]])], [sock(11, "LISTEN", null, [[100, 3]])]);
    expect(changes(closed, exited).map((c) => c.text)).toEqual([
      "[child 200] exited",
      "socket:[22] 127.0.0.1:9190 <-> 127.0.0.1:5000 CLOSE_WAIT: no descriptor left (refs 1 -> 0), the kernel has closed it",
    ]);
    expect(changes(exited, exited)).toEqual([]);
    const again = snap([proc(100, 1, [[3, 11]]), proc(300, 100, [])], [sock(11, "LISTEN", null, [[100, 3]])]);
    expect(changes(exited, again).map((c) => c.text)).toEqual([
      "[child 300] appeared (forked by 100), holding no socket",
    ]);
  });
});

describe("realfork watch: wrong input", () => {
  it("refuses what it cannot watch, and any address but loopback", async () => {
    const cases: Array<[string[], number, RegExp]> = [
      [[], 2, /missing <pid>/],
      [["12x"], 2, /<pid> must be a process id, not '12x'/],
      [["999999999"], 1, /^realfork: no process 999999999\n$/],
      [["--port", "1"], 1, /^realfork: nothing listens on TCP port 1/],
      [
        [String(process.pid), "--host", "0.0.0.0"],
        2,
        /--host must be 127.0.0.1 or ::1 \(loopback only\), not '0.0.0.0'/,
      ],
      [[String(process.pid), "--interval", "5"], 2, /--interval must be a whole number from 20 to 60000/],
      [["demo", "--web", "--json"], 2, /--web tells the story in the browser; --json is for machines/],
      [["demo", "--http-port", "8080"], 2, /--http-port goes with --web/],
    ];
    for (const [args, code, message] of cases) {
      const p = spawnTracked(cli, args[0] === "demo" ? args : ["watch", ...args]);
      expect(await p.exited(), args.join(" ")).toEqual({ code, signal: null });
      expect(p.stderr(), args.join(" ")).toMatch(message);
      expect(p.stdout()).toBe("");
    }
  });
});

describe.skipIf(missing !== null && !requireAll)("realfork watch in chromium", () => {
  let browser: Browser;

  beforeAll(async () => {
    if (missing) throw new Error(`REALFORK_REQUIRE_ALL=1 and ${missing}`);
    const { chromium } = await import("playwright-core");
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
  });

  afterAll(async () => {
    await browser?.close();
  });

  it("shows the server and its listener; a client's socket appears and goes without a reload", async () => {
    const server: Server = await startServe(["--quiet"]);
    const listener = snapshot(server.pid).sockets.find((s) => s.state === "LISTEN");
    const watch = await startWatch(["--port", String(server.port)]);
    const page = await browser.newPage();
    try {
      await page.goto(watch.url);
      await picture(page, `parent ${server.pid}`);
      await picture(page, `socket:[${listener?.inode}]`);
      // Set once: a reload would lose it.
      await page.evaluate(() => {
        (window as unknown as { loadedOnce: boolean }).loadedOnce = true;
      });

      const client = await open(server.port);
      const endpoint = `127.0.0.1:${client.localPort}`;
      let conn = snapshot(server.pid).sockets.find((s) => s.remote === endpoint);
      for (let i = 0; i < 100 && !conn?.holders.some((h) => h.pid !== server.pid); i++) {
        await new Promise((r) => setTimeout(r, 20));
        conn = snapshot(server.pid).sockets.find((s) => s.remote === endpoint);
      }
      await picture(page, `socket:[${conn?.inode}]`);
      await picture(page, `-> ${endpoint}`);
      const child = conn?.holders.find((h) => h.pid !== server.pid)?.pid;
      await picture(page, `child ${child}`);
      expect(await page.locator("#timeline").textContent()).toContain(`socket:[${conn?.inode}]`);

      client.end();
      await picture(page, `socket:[${conn?.inode}]`, false);
      await picture(page, `child ${child}`, false);
      const timeline = await page.locator("#timeline").textContent();
      expect(timeline).toContain(`[child ${child}] exited`);
      expect(await page.evaluate(() => (window as unknown as { loadedOnce?: boolean }).loadedOnce)).toBe(true);

      server.proc.child.kill("SIGTERM");
      expect(await server.proc.exited()).toEqual({ code: 0, signal: null });
      // The server gone: said on the page and on the terminal, and watch ends.
      await page
        .locator("#banner", { hasText: `the watched process ${server.pid} is gone` })
        .waitFor({ timeout: 10_000 });
      expect(await watch.proc.exited()).toEqual({ code: 0, signal: null });
      expect(watch.proc.stderr()).toContain(`realfork watch: the watched process ${server.pid} is gone: stopped`);
    } finally {
      await page.close();
    }
  });

  it("reads the tables once per interval, not once per page; light and dark from the browser's setting", async () => {
    const server = await startServe(["--quiet"]);
    // One reading a minute: any reading a page caused would show in the count.
    const watch = await startWatch([String(server.pid), "--interval", "60000"]);
    const pages = await Promise.all(
      (["light", "dark", "light"] as const).map((colorScheme) => browser.newPage({ colorScheme })),
    );
    try {
      for (const page of pages) {
        await page.goto(watch.url);
        await picture(page, `parent ${server.pid}`);
        expect(await page.locator("#status").textContent()).toMatch(/\(reading 1; the tables are read every 60000 ms/);
      }
      const background = (page: Page) => page.evaluate(() => getComputedStyle(document.body).backgroundColor);
      expect(await background(pages[0] as Page)).toBe("rgb(255, 255, 255)");
      expect(await background(pages[1] as Page)).toBe("rgb(21, 23, 27)");
      watch.proc.child.kill("SIGINT");
      expect(await watch.proc.exited()).toEqual({ code: 0, signal: null });
      expect(watch.proc.stderr()).toContain("realfork watch: SIGINT: stopped");
    } finally {
      for (const page of pages) await page.close();
      server.proc.child.kill("SIGTERM");
      await server.proc.exited();
    }
  });

  it("a few dozen children on a laptop screen: all drawn, no sideways scrolling, text of at least 10 px", async () => {
    const server = await startServe(["--quiet"]);
    const watch = await startWatch([String(server.pid)]);
    const page = await browser.newPage({ viewport: { width: 1366, height: 768 } });
    const clients = await Promise.all(Array.from({ length: 30 }, () => open(server.port)));
    try {
      await page.goto(watch.url);
      await page.waitForFunction(
        () => (document.querySelector("#picture svg")?.textContent?.match(/child \d+/g) ?? []).length === 30,
        undefined,
        { timeout: 20_000 },
      );
      const layout = await page.evaluate(() => {
        const svg = document.querySelector("#picture svg") as SVGSVGElement;
        const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
        return {
          scrollsSideways: document.documentElement.scrollWidth > window.innerWidth,
          textPx: scale * Number(svg.getAttribute("font-size")),
        };
      });
      expect(layout.scrollsSideways).toBe(false);
      expect(layout.textPx).toBeGreaterThanOrEqual(10);
    } finally {
      for (const c of clients) c.destroy();
      await page.close();
      server.proc.child.kill("SIGTERM");
      await server.proc.exited();
      watch.proc.child.kill("SIGTERM");
      await watch.proc.exited();
    }
  });

  it("serves nothing without the token: 403, and the page says why", async () => {
    const server = await startServe(["--quiet"]);
    const watch = await startWatch([String(server.pid)]);
    const page = await browser.newPage();
    try {
      const bare = watch.url.replace(/\?token=.*$/, "");
      for (const url of [bare, `${bare}?token=wrong-token-of-24-chars`, `${bare}events`, `${bare}events?token=`]) {
        const res = await page.goto(url);
        expect(res?.status(), url).toBe(403);
        const text = await page.locator("body").textContent();
        expect(text).toContain("token required");
        expect(text).not.toContain(String(server.pid));
      }
      const step = await fetch(`${bare}step?pid=${server.pid}`, { method: "POST" });
      expect(step.status).toBe(403);
      // With the token: the page.
      expect((await page.goto(watch.url))?.status()).toBe(200);
      await picture(page, `parent ${server.pid}`);
      watch.proc.child.kill("SIGTERM");
      await page.locator("#banner", { hasText: "realfork watch has stopped: SIGTERM" }).waitFor({ timeout: 10_000 });
      expect(await watch.proc.exited()).toEqual({ code: 0, signal: null });
      expect(watch.proc.stderr()).toContain("realfork watch: SIGTERM: stopped");
    } finally {
      await page.close();
      server.proc.child.kill("SIGTERM");
      await server.proc.exited();
    }
  });

  it("steps a --step server by clicks to the moment after fork(): both sockets at refs 2", async () => {
    const server = spawnTracked(cli, ["serve", "0", "--host", "127.0.0.1", "--quiet", "--step"]);
    const line = await server.waitFor(/step \[parent (\d+)\] listening: .* on \S+:(\d+);/, 10_000, "stderr");
    const port = Number(line[2]);
    const watch = await startWatch([String(server.pid)]);
    const page = await browser.newPage();
    try {
      await page.goto(watch.url);
      const button = (pid: number, step: string) =>
        page.locator(`#steps li:has([data-step-pid="${pid}"])`, { hasText: `waits after ${step}` });
      await button(server.pid, "listening").waitFor({ timeout: 10_000 });
      expect(await button(server.pid, "listening").textContent()).toContain("socket(), bind(), listen()");
      await page.click(`[data-step-pid="${server.pid}"]`);
      await page.locator("#steps", { hasText: "no process waits at a step now" }).waitFor({ timeout: 10_000 });

      const client = await open(port);
      client.on("error", () => {});
      await button(server.pid, "accepted").waitFor({ timeout: 10_000 });
      await page.click(`[data-step-pid="${server.pid}"]`);
      await button(server.pid, "forked").waitFor({ timeout: 10_000 });
      const child = Number(
        await page.locator("#steps li", { hasText: "child-forked" }).locator("button").getAttribute("data-step-pid"),
      );
      await button(child, "child-forked").waitFor({ timeout: 10_000 });
      // The moment after fork(): both wait, and the picture shows both sockets held twice.
      await page.waitForFunction(
        () =>
          [...document.querySelectorAll("#picture svg text")].filter((t) => t.textContent === "refs 2").length === 2,
        undefined,
        { timeout: 10_000 },
      );
      const snap = snapshot(server.pid);
      expect(snap.sockets.map((s) => s.holders.map((h) => h.pid))).toEqual([
        [server.pid, child],
        [server.pid, child],
      ]);
      expect(await page.locator("#timeline").textContent()).toContain(
        `[child ${child}] appeared (forked by ${server.pid})`,
      );

      // The server stopped while both wait at a step: at once, page and terminal say so.
      server.child.kill("SIGTERM");
      expect(await server.died(5000)).toEqual({ code: 0, signal: null });
      await page
        .locator("#banner", { hasText: `the watched process ${server.pid} is gone` })
        .waitFor({ timeout: 10_000 });
      expect(await watch.proc.exited()).toEqual({ code: 0, signal: null });
      client.destroy();
    } finally {
      await page.close();
    }
  });

  it("demo --web: one step per click on the real tables, to the end", async () => {
    const { demo, url } = await startDemoWeb();
    const page = await browser.newPage();
    try {
      await page.goto(url);
      const steps: string[] = [];
      for (;;) {
        await page
          .locator("#next:not([disabled]), #story:has(h2:text-is('The end'))")
          .first()
          .waitFor({ timeout: 20_000 });
        if ((await page.locator("#story h2").textContent()) === "The end") break;
        const text = (await page.locator("#story p").textContent()) ?? "";
        steps.push(text);
        const fork = /^Step 3 \[parent (\d+) and child (\d+)\]/.exec(text);
        if (fork && steps.length === 3) {
          // Part 1 at the moment after fork(): the page shows what the kernel shows.
          const [parent, child] = [Number(fork[1]), Number(fork[2])];
          await picture(page, `child ${child}`);
          expect(snapshot(parent).sockets.map((s) => s.holders.map((h) => h.pid))).toEqual([
            [parent, child],
            [parent, child],
          ]);
          expect(await page.locator("#picture svg text", { hasText: /^refs 2$/ }).count()).toBe(2);
        }
        await page.click("#next");
      }
      // Parts 1 to 4, each step once and in order (8 + 7 + 7 + 5).
      expect(steps).toHaveLength(27);
      expect(steps.map((t) => Number(/^Step (\d+)/.exec(t)?.[1]))).toEqual([
        1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 1, 2, 3, 4, 5, 6, 7, 1, 2, 3, 4, 5,
      ]);
      expect(await demo.exited(20_000)).toEqual({ code: 0, signal: null });
      await page.locator("#banner", { hasText: "the demo is over" }).waitFor({ timeout: 10_000 });
    } finally {
      await page.close();
    }
  });

  it("demo --web: SIGTERM while its server waits at a step ends both at once", async () => {
    const { demo, url } = await startDemoWeb();
    const page = await browser.newPage();
    try {
      await page.goto(url);
      await page.locator("#next:not([disabled])").waitFor({ timeout: 20_000 });
      const parent = Number(/^Step 1 \[parent (\d+)\]/.exec((await page.locator("#story p").textContent()) ?? "")?.[1]);
      expect(existsSync(`/proc/${parent}`)).toBe(true);
      demo.child.kill("SIGTERM");
      expect(await demo.died(5000)).toEqual({ code: 0, signal: null });
      expect(demo.stderr()).toContain("realfork demo: SIGTERM: stopped, and its programs with it");
      expect(existsSync(`/proc/${parent}`)).toBe(false);
      await page.locator("#banner", { hasText: "realfork watch has stopped: SIGTERM" }).waitFor({ timeout: 10_000 });
    } finally {
      await page.close();
    }
  });
});

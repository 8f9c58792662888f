// realfork watch's HTTP server: on loopback only, every request carries a
// random token (other local users can reach loopback), one reading of the
// tables per interval shared by every open page, sent as Server-Sent Events
// when something changed.
import { randomBytes, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { judgeSnapshot } from "../check.js";
import { type FdSnapshot, processExists, snapshot } from "../fdtable.js";
import { pictureModel, renderSvg } from "../picture.js";
import { goOn, StepError, type WaitingProcess, waitingProcesses } from "../step.js";
import { type Change, changes } from "./changes.js";
import { forbiddenPage, watchPage } from "./page.js";

export interface Story {
  heading: string;
  text: string;
  /** The page's "Next step" button is enabled. */
  next: boolean;
  done: boolean;
}

export interface WatchOptions {
  /** The process whose tree is watched; null: none until setRoot(). */
  root: number | null;
  /** 127.0.0.1 (default) or ::1. */
  host?: string;
  /** 0 (default): the system picks one. */
  port?: number;
  /** How often the tables are read, in ms (default 250). */
  intervalMs?: number;
  /** The page's "Next step" button (realfork demo --web). */
  onNext?: () => void;
  /** Buttons that let waiting processes go on (default true; the demo steps them itself). */
  stepButtons?: boolean;
  /** Stop when the watched process is gone (default true; the demo moves on to its next server). */
  endWhenGone?: boolean;
}

interface TimelineEntry extends Change {
  at: number;
}

/** What every page gets, whole, on each change. */
interface State {
  title: string;
  at: number;
  reads: number;
  intervalMs: number;
  svg: string;
  waiting: Array<Omit<WaitingProcess, "fifo">>;
  stepped: boolean;
  stepButtons: boolean;
  story: (Story & { seq: number }) | null;
  firstEvent: number;
  timeline: TimelineEntry[];
}

const KEPT_EVENTS = 300;

export class WatchServer {
  /** The URL to open, with its token. */
  url = "";
  readonly token = randomBytes(18).toString("base64url");
  readonly #http: Server;
  readonly #options: Required<Omit<WatchOptions, "onNext">>;
  #onNext: (() => void) | null;
  readonly #pages = new Set<ServerResponse>();
  #root: number | null;
  #timer: NodeJS.Timeout | null = null;
  #last: FdSnapshot | null = null;
  #state: State | null = null;
  #reads = 0;
  #stepped = false;
  #story: (Story & { seq: number }) | null = null;
  #storySeq = 0;
  #timeline: TimelineEntry[] = [];
  #dropped = 0;
  #ended: ((why: string) => void) | null = null;
  #stopped = false;
  /** Resolves with the reason when watching has ended ("the watched process 4242 is gone", or stop()'s). */
  readonly ended: Promise<string>;

  constructor(options: WatchOptions) {
    const { onNext: _, ...rest } = options;
    this.#options = { host: "127.0.0.1", port: 0, intervalMs: 250, stepButtons: true, endWhenGone: true, ...rest };
    this.#root = options.root;
    this.#onNext = options.onNext ?? null;
    this.#http = createServer((req, res) => this.#serve(req, res));
    this.ended = new Promise((resolve) => {
      this.#ended = resolve;
    });
  }

  /** Listens, reads the tables once, and starts reading them every interval. */
  async start(): Promise<string> {
    const { host, port } = this.#options;
    await new Promise<void>((resolve, reject) => {
      this.#http.once("error", reject);
      this.#http.listen(port, host, () => resolve());
    });
    const bound = (this.#http.address() as AddressInfo).port;
    this.url = `http://${host.includes(":") ? `[${host}]` : host}:${bound}/?token=${this.token}`;
    this.#read();
    this.#timer = setInterval(() => {
      try {
        this.#read();
      } catch (err) {
        void this.stop(`reading the tables failed: ${(err as Error).message}`);
      }
    }, this.#options.intervalMs);
    return this.url;
  }

  /** Watches another process tree from now on (the demo's next program); `what` goes into the timeline. */
  setRoot(pid: number, what: string): void {
    this.#root = pid;
    this.#last = null;
    this.#add([{ kind: "process", text: `watching ${what}, pid ${pid}` }]);
    this.#read();
  }

  setOnNext(onNext: () => void): void {
    this.#onNext = onNext;
  }

  setStory(story: Story | null): void {
    this.#story = story === null ? null : { ...story, seq: ++this.#storySeq };
    this.#publish(true);
  }

  /** Ends watching: every page is told why, the server closes. */
  async stop(reason: string): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    const text = `realfork watch has stopped: ${reason}.`;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    for (const page of this.#pages) page.end(`event: end\ndata: ${JSON.stringify({ text })}\n\n`);
    this.#pages.clear();
    await new Promise<void>((resolve) => this.#http.close(() => resolve()));
    this.#http.closeAllConnections();
    this.#ended?.(reason);
  }

  #read(): void {
    const root = this.#root;
    if (this.#stopped || root === null) return;
    if (!processExists(root)) {
      if (this.#options.endWhenGone) void this.stop(`the watched process ${root} is gone`);
      return;
    }
    const snap = snapshot(root);
    this.#reads++;
    const tree = new Set(snap.processes.map((p) => p.pid));
    const waiting = waitingProcesses().filter((w) => tree.has(w.pid));
    if (waiting.length > 0) this.#stepped = true;
    // A moment held at a step is not a leak (right after fork() the child
    // holds the listener until its next step): check's findings are drawn
    // only when no process of the tree waits at a step.
    const judged = judgeSnapshot(snap);
    const findings = waiting.length > 0 ? [] : judged.findings;
    const roles = new Map((judged.pool?.workers ?? []).map((pid) => [pid, "worker"]));
    const svg = renderSvg(pictureModel(snap, { findings, roles })).replace(/^<\?xml[^>]*>\n/, "");
    const before = this.#state;
    const waitingKey = JSON.stringify(waiting.map((w) => [w.pid, w.step]));
    const changed =
      before === null ||
      before.svg !== svg ||
      JSON.stringify(before.waiting.map((w) => [w.pid, w.step])) !== waitingKey;
    if (changed) {
      const found = changes(this.#last, snap);
      const wasWaiting = new Set((before?.waiting ?? []).map((w) => `${w.pid} ${w.step}`));
      for (const w of waiting)
        if (!wasWaiting.has(`${w.pid} ${w.step}`))
          found.push({ kind: "process", text: `[${w.role} ${w.pid}] waits after ${w.step}: ${w.detail}` });
      this.#add(found);
    }
    this.#last = snap;
    this.#state = {
      title: `realfork watch ${root}: ${snap.processes.length} process${snap.processes.length === 1 ? "" : "es"}, ${snap.sockets.length} TCP socket${snap.sockets.length === 1 ? "" : "s"}`,
      at: Date.now(),
      reads: this.#reads,
      intervalMs: this.#options.intervalMs,
      svg,
      waiting: waiting.map(({ fifo: _, ...w }) => w),
      stepped: this.#stepped,
      stepButtons: this.#options.stepButtons,
      story: this.#story,
      firstEvent: this.#dropped,
      timeline: this.#timeline,
    };
    if (changed) this.#publish(false);
  }

  #add(found: Change[]): void {
    const at = Date.now();
    this.#timeline.push(...found.map((c) => ({ ...c, at })));
    const extra = this.#timeline.length - KEPT_EVENTS;
    if (extra > 0) {
      this.#timeline.splice(0, extra);
      this.#dropped += extra;
    }
  }

  #publish(refresh: boolean): void {
    if (!this.#state) return;
    if (refresh)
      this.#state = { ...this.#state, story: this.#story, firstEvent: this.#dropped, timeline: this.#timeline };
    const message = `event: state\ndata: ${JSON.stringify(this.#state)}\n\n`;
    for (const page of this.#pages) page.write(message);
  }

  #authorised(url: URL): boolean {
    const given = Buffer.from(url.searchParams.get("token") ?? "");
    const token = Buffer.from(this.token);
    return given.length === token.length && timingSafeEqual(given, token);
  }

  #serve(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? "/", "http://localhost");
    res.setHeader("cache-control", "no-store");
    res.setHeader("x-content-type-options", "nosniff");
    res.setHeader("referrer-policy", "no-referrer");
    if (!this.#authorised(url)) {
      res.writeHead(403, { "content-type": "text/html; charset=utf-8" }).end(forbiddenPage());
      return;
    }
    const route = `${req.method} ${url.pathname}`;
    if (route === "GET /") {
      res
        .writeHead(200, {
          "content-type": "text/html; charset=utf-8",
          "content-security-policy":
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'; img-src data:",
        })
        .end(watchPage(`realfork watch ${this.#root ?? ""}`.trimEnd()));
    } else if (route === "GET /events") {
      res.writeHead(200, { "content-type": "text/event-stream", connection: "keep-alive" });
      res.write("retry: 1000\n\n");
      if (this.#state) res.write(`event: state\ndata: ${JSON.stringify(this.#state)}\n\n`);
      this.#pages.add(res);
      req.on("close", () => this.#pages.delete(res));
    } else if (route === "POST /step" && this.#options.stepButtons) {
      void this.#step(Number(url.searchParams.get("pid")), res);
    } else if (route === "POST /next" && this.#onNext) {
      // The step the page showed: a second click (or one sent before the
      // page heard of the next step) does not skip a step.
      if (this.#story?.next && this.#story.seq === Number(url.searchParams.get("seq"))) {
        this.#story = { ...this.#story, next: false };
        this.#publish(true);
        this.#onNext();
      }
      res.writeHead(204).end();
    } else {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
    }
  }

  /** What `realfork step PID` does, for a process of the watched tree that waits at a step. */
  async #step(pid: number, res: ServerResponse): Promise<void> {
    if (!this.#state?.waiting.some((w) => w.pid === pid)) {
      res
        .writeHead(409, { "content-type": "text/plain" })
        .end(`process ${pid} does not wait at a step of this server\n`);
      return;
    }
    try {
      await goOn(pid);
      res.writeHead(204).end();
    } catch (err) {
      const status = err instanceof StepError ? 409 : 500;
      res.writeHead(status, { "content-type": "text/plain" }).end(`${(err as Error).message}\n`);
    }
    this.#read();
  }
}

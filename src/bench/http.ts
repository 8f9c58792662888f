// realfork bench-http: forked http workers (examples/http-prefork/server.mjs,
// fork({ eventLoop: true })) against node:cluster (cluster.mjs beside it),
// with the same handler, table and Node flags, in one run: requests per
// second with and without keep-alive, each worker's private memory idle and
// after the load, and the time from fork to listening. Loopback only; the
// load is bounded in count and every request has a deadline.
import { type ChildProcess, spawn } from "node:child_process";
import http from "node:http";
import { fileURLToPath } from "node:url";
import { memoryOf } from "./bench.js";

const exampleDir = fileURLToPath(new URL("../../examples/http-prefork/", import.meta.url));

export type HttpServerKind = "fork" | "cluster-rr" | "cluster-none";

export interface HttpBenchOptions {
  workers: number;
  /** Requests per mode (one connection each, then keep-alive). */
  requests: number;
  concurrency: number;
  rows: number;
  /** Node flags for both servers (--single-threaded is always there). */
  nodeFlags: string[];
  kinds: HttpServerKind[];
}

export interface HttpSide {
  kind: HttpServerKind;
  forkToListenMs: number[];
  parentUssKb: number | null;
  idleUssKb: number[];
  loadedUssKb: number[];
  /** Requests per second, one connection per request. */
  rpsClose: number;
  /** Requests per second over keep-alive connections. */
  rpsKeepAlive: number;
  /** Wrong answers and failed requests (must be 0). */
  errors: number;
}

interface Started {
  child: ChildProcess;
  port: number;
  workers: number[];
  forkToListenMs: number[];
  lines: () => Array<Record<string, unknown>>;
}

const REQUEST_TIMEOUT_MS = 10_000;
const START_TIMEOUT_MS = 60_000;

function start(kind: HttpServerKind, o: HttpBenchOptions): Promise<Started> {
  const script = kind === "fork" ? "server.mjs" : "cluster.mjs";
  const extra = kind === "fork" ? [] : ["--policy", kind === "cluster-rr" ? "rr" : "none"];
  const args = [
    "--single-threaded",
    ...o.nodeFlags,
    `${exampleDir}${script}`,
    "--workers",
    `${o.workers}`,
    "--rows",
    `${o.rows}`,
    ...extra,
  ];
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  const lines = () =>
    out
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${script} did not start ${o.workers} workers in ${START_TIMEOUT_MS / 1000} s`));
    }, START_TIMEOUT_MS);
    const early = (code: number | null, signal: string | null) => {
      clearTimeout(timer);
      reject(new Error(`${script} ended before it was ready (${code ?? signal})`));
    };
    child.on("exit", early);
    child.stdout?.setEncoding("utf8").on("data", (d: string) => {
      out += d;
      const all = lines();
      const ready = all.filter((e) => e.event === "ready");
      const listening = all.find((e) => e.event === "listening");
      if (listening && ready.length >= o.workers) {
        clearTimeout(timer);
        child.off("exit", early);
        resolve({
          child,
          port: Number(listening.port),
          workers: ready.map((e) => Number(e.pid)),
          forkToListenMs: ready.map((e) => Number(e.forkToListenMs)),
          lines,
        });
      }
    });
  });
}

async function stop(s: Started): Promise<void> {
  if (s.child.exitCode !== null || s.child.signalCode !== null) return;
  const done = new Promise((r) => s.child.on("exit", r));
  s.child.kill("SIGTERM");
  const timer = setTimeout(() => s.child.kill("SIGKILL"), 20_000);
  await done;
  clearTimeout(timer);
}

/** `n` GET requests, `concurrency` at a time, every answer checked; requests per second and errors. */
export async function load(
  port: number,
  n: number,
  concurrency: number,
  keepAlive: boolean,
  rows: number,
  expected: (i: number) => string,
): Promise<{ rps: number; errors: number }> {
  const agent = new http.Agent({ keepAlive, maxSockets: concurrency });
  let next = 0;
  let errors = 0;
  const one = (i: number) =>
    new Promise<void>((resolve) => {
      const id = (i * 7919) % rows;
      const req = http.get({ host: "127.0.0.1", port, path: `/row/${id}`, agent }, (res) => {
        let body = "";
        res.setEncoding("utf8").on("data", (d: string) => {
          body += d;
        });
        res.on("end", () => {
          if (res.statusCode !== 200 || body !== expected(id)) errors++;
          resolve();
        });
      });
      req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(new Error("timeout")));
      req.on("error", () => {
        errors++;
        resolve();
      });
    });
  const t0 = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) await one(next++);
    }),
  );
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  agent.destroy();
  return { rps: n / seconds, errors };
}

const uss = (pids: number[]) => pids.map((pid) => memoryOf(pid)?.ussKb ?? Number.NaN);

/** Runs each kind in turn (fork first), with the same options. */
export async function benchHttp(o: HttpBenchOptions): Promise<HttpSide[]> {
  const { row } = (await import(`${exampleDir}table.mjs`)) as { row: (i: number) => string };
  const sides: HttpSide[] = [];
  for (const kind of o.kinds) {
    const s = await start(kind, o);
    try {
      // Let start-up garbage settle before the idle figure.
      await new Promise((r) => setTimeout(r, 500));
      const idleUssKb = uss(s.workers);
      const close = await load(s.port, o.requests, o.concurrency, false, o.rows, row);
      const keep = await load(s.port, o.requests, o.concurrency, true, o.rows, row);
      sides.push({
        kind,
        forkToListenMs: s.forkToListenMs,
        parentUssKb: memoryOf(s.child.pid ?? 0)?.ussKb ?? null,
        idleUssKb,
        loadedUssKb: uss(s.workers),
        rpsClose: close.rps,
        rpsKeepAlive: keep.rps,
        errors: close.errors + keep.errors,
      });
    } finally {
      await stop(s);
    }
  }
  return sides;
}

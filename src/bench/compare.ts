// realfork compare: the C reference and realfork serve side by side. First
// what each does (messages, who holds which socket, the echoed bytes), then
// how fast, interleaved round by round (C, TS, C, TS, ...) so that the
// machine's drift falls on both alike.
import { connect, type Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { processTree, snapshot } from "../inspect/fdtable.js";
import {
  forkFloor,
  measureShort,
  median,
  type RunningServer,
  runStream,
  type ServerSpec,
  type ShortMeasurement,
  type ShortResult,
  type StreamResult,
  shortProblem,
  streamProblem,
  withServer,
} from "./bench.js";

export interface Observation {
  /** stdout lines, with pids replaced by <pid>. */
  messages: string[];
  /** While one connection is open: the TCP states each role holds. */
  parentHolds: string[];
  childHolds: string[];
  /** Which roles hold the listening and the connected socket (their reference counts). */
  listenerHeldBy: string[];
  connectionHeldBy: string[];
  /** 64 KiB of every byte value came back unchanged. */
  echoExact: boolean;
  /** After our half-close the server closed its side (the last reference went). */
  closedAfterHalfClose: boolean;
  /** After both connections ended: children left, and what the parent still holds. */
  childrenAfter: number;
  parentHoldsAfter: string[];
}

export interface BehaviourCheck {
  what: string;
  c: string;
  ts: string;
  same: boolean;
}

async function until(test: () => boolean, timeoutMs: number): Promise<boolean> {
  for (const end = Date.now() + timeoutMs; Date.now() < end; await sleep(20)) if (test()) return true;
  return test();
}

function open(server: RunningServer): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(server.port, server.host, () => resolve(s));
    s.once("error", reject);
  });
}

/** Sends data, half-closes, collects the echo; `closed` tells whether the server closed its side within 2 s. */
function echoAndHalfClose(s: Socket, data: Buffer): Promise<{ echoed: Buffer; closed: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ echoed: Buffer.concat(chunks), closed: false });
    }, 2000);
    s.on("data", (c: Buffer) => chunks.push(c));
    s.on("error", () => {});
    s.on("close", () => {
      clearTimeout(timer);
      resolve({ echoed: Buffer.concat(chunks), closed: true });
    });
    s.end(data);
  });
}

function rolesOf(server: RunningServer) {
  const pid = server.pid as number;
  const snap = snapshot(pid);
  const role = (p: number) => (p === pid ? "parent" : "child");
  const tcp = (p: number) =>
    (snap.processes.find((e) => e.pid === p)?.descriptors ?? [])
      .filter((d) => d.type === "tcp")
      .map((d) => d.state ?? "?")
      .sort();
  const children = snap.processes.map((e) => e.pid).filter((p) => p !== pid);
  const holders = (listening: boolean) =>
    snap.sockets
      .filter((s) => (s.state === "LISTEN") === listening)
      .flatMap((s) => s.holders.map((h) => role(h.pid)))
      .sort();
  return {
    parent: tcp(pid),
    child: children.flatMap(tcp).sort(),
    listener: holders(true),
    connection: holders(false),
    children: children.length,
  };
}

/**
 * Drives one server through the C material's story: a connection held open
 * (who holds what), a second one echoing every byte value and half-closing,
 * then the first one closing; the messages it printed on the way.
 */
export function observe(spec: ServerSpec): Promise<Observation> {
  return withServer({ ...spec, verbose: true }, async (server) => {
    const pid = server.pid as number;
    const held = await open(server);
    held.write("hello\n");
    await new Promise((r) => held.once("data", r));
    // Parent and child close their copies right after fork(); wait until the
    // table stops changing before reading it.
    let roles = rolesOf(server);
    for (let i = 0; i < 50; i++) {
      await sleep(20);
      const next = rolesOf(server);
      if (JSON.stringify(next) === JSON.stringify(roles)) break;
      roles = next;
    }
    const payload = Buffer.from(Array.from({ length: 65536 }, (_, i) => i % 256));
    const second = await echoAndHalfClose(await open(server), payload);
    await until(() => processTree(pid).length <= 2, 3000);
    const first = await echoAndHalfClose(held, Buffer.alloc(0));
    await until(() => processTree(pid).length <= 1, 3000);
    await until(() => (server.stdout().match(/removed proc id/g) ?? []).length >= 2, 1000);
    const after = rolesOf(server);
    return {
      messages: server
        .stdout()
        .split("\n")
        .filter(Boolean)
        .map((l) => l.replace(/\d+/g, "<pid>")),
      parentHolds: roles.parent,
      childHolds: roles.child,
      listenerHeldBy: roles.listener,
      connectionHeldBy: roles.connection,
      echoExact: second.echoed.equals(payload),
      closedAfterHalfClose: second.closed && first.closed,
      childrenAfter: after.children,
      parentHoldsAfter: after.parent,
    };
  });
}

const show = (v: unknown): string => (Array.isArray(v) ? (v.length > 0 ? v.join(", ") : "none") : String(v));

export function compareBehaviour(c: Observation, ts: Observation): BehaviourCheck[] {
  const rows: [string, keyof Observation][] = [
    ["book messages", "messages"],
    ["parent holds (one client)", "parentHolds"],
    ["child holds (one client)", "childHolds"],
    ["listening socket held by", "listenerHeldBy"],
    ["connected socket held by", "connectionHeldBy"],
    ["64 KiB of all byte values echoed exactly", "echoExact"],
    ["server closes after the client half-closes", "closedAfterHalfClose"],
    ["children left after the clients end", "childrenAfter"],
    ["parent holds afterwards", "parentHoldsAfter"],
  ];
  return rows.map(([what, key]) => {
    const same = JSON.stringify(c[key]) === JSON.stringify(ts[key]);
    // The messages are summed up as a line count, and shown in full where they differ.
    const text = (o: Observation) => (key === "messages" && same ? `${o.messages.length} lines` : show(o[key]));
    return { what, c: text(c), ts: text(ts), same };
  });
}

export interface CompareOptions {
  rounds: number;
  connections: number;
  concurrency: number;
  size: number;
  bufferSize: number;
  streamBytes: number;
  streamBuffer: number;
  prefork: number;
  forks: number;
  /** Extra realfork serve arguments (negative controls). */
  extra: string[];
  /** Called as each measurement ends (progress). */
  onProgress?: (line: string) => void;
}

export interface Figure {
  what: string;
  unit: string;
  /** Whether more is better (for reading the ratio). */
  higherIsBetter: boolean;
  c: number[];
  ts: number[];
  cMedian: number | null;
  tsMedian: number | null;
  /**
   * TS/C: the median of the per-round ratios when each round measured both
   * (the two ran back to back, so drift of the machine cancels), else the
   * ratio of the medians.
   */
  ratio: number | null;
}

export interface CompareResult {
  behaviour: BehaviourCheck[];
  behaviourMatches: boolean;
  figures: Figure[];
  failures: string[];
}

type ShortRound = ShortMeasurement;

const shortRound = (spec: ServerSpec, o: CompareOptions): Promise<ShortRound> =>
  withServer(spec, (server) => measureShort(server, o.connections, o.concurrency, o.size));

const streamRound = (spec: ServerSpec, o: CompareOptions): Promise<StreamResult> =>
  withServer(spec, (server) => runStream(server, o.streamBytes, o.streamBuffer));

function figure(what: string, unit: string, higherIsBetter: boolean, c: number[], ts: number[]): Figure {
  const cMedian = c.length > 0 ? median(c) : null;
  const tsMedian = ts.length > 0 ? median(ts) : null;
  return {
    what,
    unit,
    higherIsBetter,
    c,
    ts,
    cMedian,
    tsMedian,
    ratio:
      c.length === ts.length && c.length > 0 && c.every((x) => x > 0)
        ? median(ts.map((t, i) => t / (c[i] as number)))
        : cMedian && tsMedian !== null
          ? tsMedian / cMedian
          : null,
  };
}

export async function runCompare(o: CompareOptions): Promise<CompareResult> {
  const say = o.onProgress ?? (() => {});
  const failures: string[] = [];
  say("behaviour: the C server");
  const cObs = await observe({ kind: "c", bufferSize: o.bufferSize });
  say("behaviour: realfork serve");
  const tsObs = await observe({ kind: "ts", bufferSize: o.bufferSize, extra: o.extra });
  const behaviour = compareBehaviour(cObs, tsObs);
  if (!behaviour.every((b) => b.same)) {
    // Timing a server that behaves differently compares nothing (and a leak
    // can stall a workload until its time-out).
    return { behaviour, behaviourMatches: false, figures: [], failures };
  }

  const c = { short: [] as ShortRound[], stream: [] as StreamResult[] };
  const ts = { short: [] as ShortRound[], stream: [] as StreamResult[], prefork: [] as ShortRound[] };
  const cSpec: ServerSpec = { kind: "c", bufferSize: o.bufferSize };
  const tsSpec: ServerSpec = { kind: "ts", bufferSize: o.bufferSize, extra: o.extra };
  const checkShort = (who: string, r: ShortResult) => {
    const problem = shortProblem(r);
    if (problem) failures.push(`${who}: ${problem}`);
  };
  const checkStream = (who: string, r: StreamResult) => {
    const problem = streamProblem(r);
    if (problem) failures.push(`${who}: ${problem}`);
  };
  for (let round = 1; round <= o.rounds; round++) {
    const tag = `round ${round}/${o.rounds}`;
    const cShort = await shortRound(cSpec, o);
    checkShort("C", cShort.short);
    c.short.push(cShort);
    say(`${tag}: C short ${cShort.short.connsPerSec.toFixed(0)} conn/s`);
    const tsShort = await shortRound(tsSpec, o);
    checkShort("realfork serve", tsShort.short);
    ts.short.push(tsShort);
    say(`${tag}: TS short ${tsShort.short.connsPerSec.toFixed(0)} conn/s`);
    if (o.prefork > 0) {
      const pre = await shortRound({ kind: "ts", bufferSize: o.bufferSize, prefork: o.prefork }, o);
      checkShort("realfork serve --prefork", pre.short);
      ts.prefork.push(pre);
      say(`${tag}: TS --prefork ${o.prefork} short ${pre.short.connsPerSec.toFixed(0)} conn/s`);
    }
    const cStream = await streamRound({ kind: "c", bufferSize: o.streamBuffer }, o);
    checkStream("C", cStream);
    c.stream.push(cStream);
    say(`${tag}: C stream ${cStream.mibPerSec.toFixed(0)} MiB/s`);
    const tsStream = await streamRound({ kind: "ts", bufferSize: o.streamBuffer, extra: o.extra }, o);
    checkStream("realfork serve", tsStream);
    ts.stream.push(tsStream);
    say(`${tag}: TS stream ${tsStream.mibPerSec.toFixed(0)} MiB/s`);
  }
  const cFloor: number[] = [];
  const tsFloor: number[] = [];
  if (o.forks > 0) {
    for (let round = 1; round <= o.rounds; round++) {
      cFloor.push((await forkFloor("c", o.forks)).perSec);
      tsFloor.push((await forkFloor("ts", o.forks)).perSec);
    }
    say("fork floor measured");
  }

  const nums = (xs: (number | null | undefined)[]) => xs.filter((x): x is number => typeof x === "number");
  type Pick = (r: ShortRound) => number | null | undefined;
  const fromShort = (what: string, unit: string, higher: boolean, pick: Pick, tsRounds = ts.short) =>
    figure(what, unit, higher, nums(c.short.map(pick)), nums(tsRounds.map(pick)));
  const shortLabel = `short connections, ${o.size} B, ${o.concurrency} at a time, buffer ${o.bufferSize}`;
  const figures = [
    fromShort(shortLabel, "conn/s", true, (r) => r.short.connsPerSec),
    fromShort("  latency p50", "us", false, (r) => r.short.latencyUs.p50),
    fromShort("  latency p99", "us", false, (r) => r.short.latencyUs.p99),
    figure(
      `stream, buffer ${o.streamBuffer}`,
      "MiB/s",
      true,
      c.stream.map((r) => r.mibPerSec),
      ts.stream.map((r) => r.mibPerSec),
    ),
    fromShort("CPU per connection: the parent", "ms", false, (r) => r.cpu?.parent),
    fromShort("CPU per connection: its children", "ms", false, (r) => r.cpu?.children),
    fromShort("fork() in the parent, p50", "us", false, (r) => r.cost.parentLatencyUs?.p50),
    fromShort("fork() in the parent, p99", "us", false, (r) => r.cost.parentLatencyUs?.p99),
    fromShort("parent RSS after the load", "kB", false, (r) => r.cost.parentRss?.loadedKb),
    fromShort("child private memory (USS)", "kB", false, (r) => r.cost.child?.ussKb),
    fromShort("child PSS", "kB", false, (r) => r.cost.child?.pssKb),
  ];
  if (o.forks > 0) figures.push(figure("floor: fork+_exit+waitpid loop", "/s", true, cFloor, tsFloor));
  if (o.prefork > 0) {
    const label = `--prefork ${o.prefork}`;
    figures.push(
      fromShort(
        `${label}: ${shortLabel} (vs C fork-per-connection)`,
        "conn/s",
        true,
        (r) => r.short.connsPerSec,
        ts.prefork,
      ),
      fromShort(`${label}: worker private memory (USS)`, "kB", false, (r) => r.cost.child?.ussKb, ts.prefork),
    );
  }
  return { behaviour, behaviourMatches: behaviour.every((b) => b.same), figures, failures };
}

// realfork compare: the C reference and realfork serve side by side, and
// with --peers the other forking servers of peers.ts. First what each does
// (messages, who holds which socket, the echoed bytes), then how fast,
// interleaved round by round (C, TS, peers, C, TS, peers, ...) so that the
// machine's drift falls on all alike.
import { connect, type Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { processTree, snapshot } from "../inspect/fdtable.js";
import { statFields } from "../inspect/procstate.js";
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
  serverLabel,
  shortProblem,
  streamProblem,
  withServer,
} from "./bench.js";
import { isPreforkPeer, type PeerKind, peerMissing } from "./peers.js";

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
  /** After both connections ended: children left, zombies among them (Linux), and what the parent still holds. */
  childrenAfter: number;
  zombiesAfter: number | null;
  parentHoldsAfter: string[];
}

export interface BehaviourCheck {
  what: string;
  c: string;
  ts: string;
  /** C and realfork alike (the peers are shown, not judged). */
  same: boolean;
  /** With --peers: each observed peer's value, by its --server name. */
  peers?: Partial<Record<PeerKind, string>>;
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

/** A process's state letter from /proc (Z: a zombie); null where there is no /proc. */
function processState(pid: number): string | null {
  if (process.platform !== "linux") return null;
  return statFields(pid)?.[0] ?? null;
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
  const states = children.map(processState);
  return {
    parent: tcp(pid),
    child: children.flatMap(tcp).sort(),
    listener: holders(true),
    connection: holders(false),
    /** Connected sockets still held by the server's processes. */
    connections: snap.sockets.filter((s) => s.state !== "LISTEN").length,
    children: children.length,
    zombies: states.includes(null) ? null : states.filter((st) => st === "Z").length,
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
    // A prefork server's workers stay; a per-connection child leaves with its client.
    const workers = spec.prefork ?? 0;
    const settled = (connections: number) => () => {
      const r = rolesOf(server);
      return r.connections <= connections && r.children <= (workers || connections);
    };
    // The workers may still be starting when the port listens.
    await until(() => processTree(pid).length > workers, 3000);
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
    await until(settled(1), 3000);
    const first = await echoAndHalfClose(held, Buffer.alloc(0));
    await until(settled(0), 3000);
    if (spec.kind === "c" || spec.kind === "ts")
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
      zombiesAfter: after.zombies,
      parentHoldsAfter: after.parent,
    };
  });
}

/** A sorted list with repeats counted: ["child", "child", "parent"] is "child x2, parent". */
function show(v: unknown): string {
  if (!Array.isArray(v)) return v === null ? "n/a" : String(v);
  if (v.length === 0) return "none";
  const counts = new Map<string, number>();
  for (const x of v) counts.set(String(x), (counts.get(String(x)) ?? 0) + 1);
  return [...counts].map(([x, n]) => (n > 1 ? `${x} x${n}` : x)).join(", ");
}

export interface PeerObservation {
  peer: PeerKind;
  observation: Observation;
}

export function compareBehaviour(c: Observation, ts: Observation, peers: PeerObservation[] = []): BehaviourCheck[] {
  const rows: [string, keyof Observation][] = [
    ["book messages", "messages"],
    ["parent holds (one client)", "parentHolds"],
    ["child holds (one client)", "childHolds"],
    ["listening socket held by", "listenerHeldBy"],
    ["connected socket held by", "connectionHeldBy"],
    ["64 KiB of all byte values echoed exactly", "echoExact"],
    ["server closes after the client half-closes", "closedAfterHalfClose"],
    ["children left after the clients end", "childrenAfter"],
    ["zombies among them", "zombiesAfter"],
    ["parent holds afterwards", "parentHoldsAfter"],
  ];
  return rows.map(([what, key]) => {
    const same = JSON.stringify(c[key]) === JSON.stringify(ts[key]);
    // The messages are summed up as a line count, and shown in full where they differ.
    const text = (o: Observation) => (key === "messages" && same ? `${o.messages.length} lines` : show(o[key]));
    if (peers.length === 0) return { what, c: text(c), ts: text(ts), same };
    // The peers are other programs: their own messages, not the book's.
    const peerText = (o: Observation) => (key === "messages" ? "-" : show(o[key]));
    return {
      what,
      c: text(c),
      ts: text(ts),
      same,
      peers: Object.fromEntries(peers.map((p) => [p.peer, peerText(p.observation)])),
    };
  });
}

/** What makes a peer's figures meaningless: its echo is not exact, or it never closes. */
function peerProblem(o: Observation): string | null {
  if (!o.echoExact) return "64 KiB of all byte values did not come back exactly";
  if (!o.closedAfterHalfClose) return "it did not close after the client half-closed";
  return null;
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
  /** Short connections per round for the prefork servers (they serve ~20x faster; a round of --connections would last ~100 ms). */
  preforkConnections: number;
  forks: number;
  /** Extra realfork serve arguments (negative controls). */
  extra: string[];
  /** Peers to run next to C and realfork (those that cannot run here are skipped). */
  peers: PeerKind[];
  /** Also realfork serve --no-packed-heap, short connections, in the same rounds (a row of the peer table). */
  unpackedHeap?: boolean;
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
  /** TS/C, as ratioOf() takes it. */
  ratio: number | null;
}

/** One server's short-connection figures in the peer table. */
export interface PeerRow {
  /** The --server name ("ts --prefork" for realfork serve --prefork N). */
  server: string;
  label: string;
  group: "fork per connection" | "prefork";
  /** Short connections each round measured. */
  connections: number;
  /** Connections per second, one per round. */
  connsPerSec: number[];
  median: number;
  latencyP50Us: number;
  /** CPU per connection, parent and children together (Linux). */
  cpuMs: number | null;
  /** Private memory of a child or worker while it serves. */
  childUssKb: number | null;
  /** realfork serve (the same group's) / this server: the median of per-round ratios. */
  realforkRatio: number | null;
  /** With unpackedHeap: realfork serve --no-packed-heap / this server (fork per connection only). */
  unpackedRatio?: number | null;
}

export interface CompareResult {
  behaviour: BehaviourCheck[];
  behaviourMatches: boolean;
  figures: Figure[];
  failures: string[];
  /** With --peers: the table, and the peers that could not run here and why. */
  peers?: { rows: PeerRow[]; skipped: { server: PeerKind; reason: string }[] };
}

type ShortRound = ShortMeasurement;

const shortRound = (spec: ServerSpec, o: CompareOptions): Promise<ShortRound> =>
  withServer(spec, (server) =>
    measureShort(server, spec.prefork ? o.preforkConnections : o.connections, o.concurrency, o.size),
  );

const streamRound = (spec: ServerSpec, o: CompareOptions): Promise<StreamResult> =>
  withServer(spec, (server) => runStream(server, o.streamBytes, o.streamBuffer));

/**
 * other/base: the median of the per-round ratios when both have every round
 * (each pair ran back to back, so drift of the machine cancels), else the
 * ratio of the medians.
 */
function ratioOf(base: number[], other: number[]): number | null {
  if (base.length === other.length && base.length > 0 && base.every((x) => x > 0))
    return median(other.map((t, i) => t / (base[i] as number)));
  const baseMedian = base.length > 0 ? median(base) : null;
  return baseMedian && other.length > 0 ? median(other) / baseMedian : null;
}

function figure(what: string, unit: string, higherIsBetter: boolean, c: number[], ts: number[]): Figure {
  return {
    what,
    unit,
    higherIsBetter,
    c,
    ts,
    cMedian: c.length > 0 ? median(c) : null,
    tsMedian: ts.length > 0 ? median(ts) : null,
    ratio: ratioOf(c, ts),
  };
}

export async function runCompare(o: CompareOptions): Promise<CompareResult> {
  const say = o.onProgress ?? (() => {});
  const failures: string[] = [];
  say("behaviour: the C server");
  const cObs = await observe({ kind: "c", bufferSize: o.bufferSize });
  say("behaviour: realfork serve");
  const tsObs = await observe({ kind: "ts", bufferSize: o.bufferSize, extra: o.extra });
  const skipped: { server: PeerKind; reason: string }[] = [];
  const peers: PeerKind[] = [];
  for (const peer of o.peers) {
    const reason = peerMissing(peer);
    if (reason) {
      skipped.push({ server: peer, reason });
      say(`skipped ${peer}: ${reason}`);
    } else {
      peers.push(peer);
    }
  }
  const peerSpec = (peer: PeerKind): ServerSpec => ({
    kind: peer,
    bufferSize: o.bufferSize,
    ...(isPreforkPeer(peer) ? { prefork: o.prefork } : {}),
  });
  const observed: PeerObservation[] = [];
  for (const peer of peers) {
    say(`behaviour: ${serverLabel(peerSpec(peer))}`);
    const observation = await observe(peerSpec(peer));
    const problem = peerProblem(observation);
    if (problem) failures.push(`${serverLabel(peerSpec(peer))}: ${problem}`);
    observed.push({ peer, observation });
  }
  const behaviour = compareBehaviour(cObs, tsObs, observed);
  const peerResult = (rows: PeerRow[]) => (o.peers.length > 0 || o.unpackedHeap ? { peers: { rows, skipped } } : {});
  if (!behaviour.every((b) => b.same)) {
    // Timing a server that behaves differently compares nothing (and a leak
    // can stall a workload until its time-out).
    return { behaviour, behaviourMatches: false, figures: [], failures, ...peerResult([]) };
  }

  const c = { short: [] as ShortRound[], stream: [] as StreamResult[] };
  const ts = {
    short: [] as ShortRound[],
    stream: [] as StreamResult[],
    prefork: [] as ShortRound[],
    unpacked: [] as ShortRound[],
  };
  const unpackedSpec: ServerSpec = { kind: "ts", bufferSize: o.bufferSize, extra: [...o.extra, "--no-packed-heap"] };
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
  const peerShort = new Map<PeerKind, ShortRound[]>(peers.map((p) => [p, []]));
  for (let round = 1; round <= o.rounds; round++) {
    const tag = `round ${round}/${o.rounds}`;
    const short = (spec: ServerSpec, who: string, rounds: ShortRound[] | undefined) => async () => {
      const r = await shortRound(spec, o);
      checkShort(serverLabel(spec), r.short);
      rounds?.push(r);
      say(`${tag}: ${who} short ${r.short.connsPerSec.toFixed(0)} conn/s`);
    };
    const peerSteps = (prefork: boolean) =>
      peers.filter((p) => isPreforkPeer(p) === prefork).map((peer) => short(peerSpec(peer), peer, peerShort.get(peer)));
    const forkGroup = [
      short(cSpec, "C", c.short),
      short(tsSpec, "TS", ts.short),
      ...(o.unpackedHeap ? [short(unpackedSpec, "TS --no-packed-heap", ts.unpacked)] : []),
      ...peerSteps(false),
    ];
    const preforkSpec: ServerSpec = { kind: "ts", bufferSize: o.bufferSize, prefork: o.prefork };
    const preforkGroup =
      o.prefork > 0 ? [short(preforkSpec, `TS --prefork ${o.prefork}`, ts.prefork), ...peerSteps(true)] : [];
    // Every other round runs each group in reverse: a server that always ran
    // right after another (whose children were still exiting, whose
    // connections were still in TIME_WAIT) would carry that in every round.
    for (const group of [forkGroup, preforkGroup]) {
      for (const step of round % 2 === 1 ? group : [...group].reverse()) await step();
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
  const row = (
    server: string,
    label: string,
    group: PeerRow["group"],
    rounds: ShortRound[],
    realfork: ShortRound[],
  ): PeerRow => {
    const conns = rounds.map((r) => r.short.connsPerSec);
    const cpu = nums(rounds.map((r) => (r.cpu ? r.cpu.parent + r.cpu.children : null)));
    const uss = nums(rounds.map((r) => r.cost.child?.ussKb));
    return {
      server,
      label,
      group,
      connections: group === "prefork" ? o.preforkConnections : o.connections,
      connsPerSec: conns,
      median: median(conns),
      latencyP50Us: median(rounds.map((r) => r.short.latencyUs.p50)),
      cpuMs: cpu.length > 0 ? median(cpu) : null,
      childUssKb: uss.length > 0 ? median(uss) : null,
      realforkRatio:
        rounds === realfork
          ? null
          : ratioOf(
              conns,
              realfork.map((r) => r.short.connsPerSec),
            ),
      ...(o.unpackedHeap
        ? {
            unpackedRatio:
              group === "prefork" || rounds === ts.unpacked
                ? null
                : ratioOf(
                    conns,
                    ts.unpacked.map((r) => r.short.connsPerSec),
                  ),
          }
        : {}),
    };
  };
  const rows: PeerRow[] = [];
  if (o.peers.length > 0 || o.unpackedHeap) {
    const label = (kind: ServerSpec["kind"], prefork?: number) =>
      serverLabel({ kind, bufferSize: o.bufferSize, ...(prefork ? { prefork } : {}) });
    const perConnection = "fork per connection";
    rows.push(row("c", label("c"), perConnection, c.short, ts.short));
    rows.push(row("ts", label("ts"), perConnection, ts.short, ts.short));
    if (o.unpackedHeap)
      rows.push(row("ts --no-packed-heap", serverLabel(unpackedSpec), perConnection, ts.unpacked, ts.short));
    for (const peer of peers.filter((p) => !isPreforkPeer(p)))
      rows.push(row(peer, label(peer), perConnection, peerShort.get(peer) ?? [], ts.short));
    if (o.prefork > 0) {
      rows.push(row("ts --prefork", label("ts", o.prefork), "prefork", ts.prefork, ts.prefork));
      for (const peer of peers.filter(isPreforkPeer))
        rows.push(row(peer, label(peer, o.prefork), "prefork", peerShort.get(peer) ?? [], ts.prefork));
    }
  }
  return {
    behaviour,
    behaviourMatches: behaviour.every((b) => b.same),
    figures,
    failures,
    ...peerResult(rows),
  };
}

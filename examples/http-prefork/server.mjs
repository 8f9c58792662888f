// http-prefork: the parent loads a large table once, opens one listener and
// forks N workers with fork({ eventLoop: true }). Each worker runs
// http.createServer(...).listen({ fd }) on that listener and answers from the
// table it shares with the parent by copy-on-write. Workers that die are
// replaced; SIGTERM (or SIGINT) stops them cleanly; a worker gets SIGTERM if
// the parent dies (PR_SET_PDEATHSIG).
//
//   node --single-threaded examples/http-prefork/server.mjs --port 8080 --workers 4
//   curl http://127.0.0.1:8080/row/42
//
// One JSON line per event on stdout: listening, ready (per worker, with the
// time from fork() to listening), worker-exit, stopped.
import http from "node:http";
import { parseArgs } from "node:util";
import * as rf from "realfork";
import { handler, loadTable } from "./table.mjs";

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "0" },
    host: { type: "string", default: "127.0.0.1" },
    workers: { type: "string", default: "4" },
    rows: { type: "string", default: "500000" },
  },
});
const workers = Number(values.workers);
const say = (event, fields = {}) => rf.writeAll(1, `${JSON.stringify({ event, ...fields })}\n`);

const table = loadTable(Number(values.rows));
const { AF_INET, SOCK_STREAM, SOL_SOCKET, SO_REUSEADDR } = rf.constants;
const listener = rf.socket(AF_INET, SOCK_STREAM);
rf.setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, 1);
rf.bind(listener, values.host, Number(values.port));
rf.listen(listener, 511);
say("listening", { port: rf.getsockname(listener).port, pid: process.pid, rows: table.length });

const reaper = new rf.Reaper();
let stopping = false;
let stopped = false;
// Signal handles do not keep Node's loop alive: this does, until the stop.
const alive = setInterval(() => {}, 2 ** 30);

/** Forks one worker; true in the worker. */
function startWorker() {
  const forkedAt = process.hrtime.bigint();
  const pid = rf.fork({ eventLoop: true, keep: [listener] });
  if (pid !== 0) {
    reaper.track(pid);
    return false;
  }
  rf.parentDeathSignal("SIGTERM");
  const server = http.createServer(handler(table));
  server.listen({ fd: listener }, () => {
    say("ready", { pid: process.pid, forkToListenMs: Number(process.hrtime.bigint() - forkedAt) / 1e6 });
  });
  // Stop accepting, let requests in progress finish; the loop then drains
  // and the worker ends with status 0.
  process.on("SIGTERM", () => {
    server.close();
    server.closeIdleConnections();
  });
  return true;
}

reaper.on("exit", (status) => {
  say("worker-exit", status);
  if (stopping) {
    // One SIGCHLD may report several workers: the last one closes.
    if (reaper.live === 0 && !stopped) {
      stopped = true;
      rf.close(listener);
      reaper.dispose();
      clearInterval(alive);
      say("stopped");
    }
    return;
  }
  startWorker();
});

function stop() {
  if (stopping) return;
  stopping = true;
  process.removeAllListeners("SIGINT");
  for (const pid of reaper.pids) rf.kill(pid, "SIGTERM");
}

let child = false;
for (let i = 0; i < workers && !child; i++) child = startWorker();
if (!child) {
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

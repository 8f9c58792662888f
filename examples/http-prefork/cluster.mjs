// The node:cluster counterpart of server.mjs, for `realfork bench-http`: the
// same handler and table, but every worker is a fresh Node process that
// loads the table itself. Same events on stdout (listening, ready with the
// time from cluster.fork() to listening, stopped).
//
//   node examples/http-prefork/cluster.mjs --workers 4 [--policy rr|none]
import cluster from "node:cluster";
import http from "node:http";
import { exampleArgs, handler, loadTable } from "./table.mjs";

const values = exampleArgs({ policy: { type: "string", default: "rr" } });
const say = (event, fields = {}) => process.stdout.write(`${JSON.stringify({ event, ...fields })}\n`);

if (cluster.isPrimary) {
  cluster.schedulingPolicy = values.policy === "none" ? cluster.SCHED_NONE : cluster.SCHED_RR;
  let stopping = false;
  let listening = false;
  const forkedAt = new Map();
  const start = () => {
    const w = cluster.fork();
    forkedAt.set(w.id, process.hrtime.bigint());
    w.on("message", (m) => {
      if (!listening) {
        listening = true;
        say("listening", { port: m.port, pid: process.pid });
      }
      say("ready", { pid: m.pid, forkToListenMs: Number(BigInt(m.at) - forkedAt.get(w.id)) / 1e6 });
    });
  };
  for (let i = 0; i < Number(values.workers); i++) start();
  cluster.on("exit", (w, code, signal) => {
    say("worker-exit", { pid: w.process.pid, code, signal });
    if (!stopping) start();
    else if (Object.keys(cluster.workers ?? {}).length === 0) say("stopped");
  });
  const stop = () => {
    stopping = true;
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill("SIGTERM");
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
} else {
  const table = loadTable(Number(values.rows));
  const server = http.createServer(handler(table));
  server.listen(Number(values.port), values.host, () => {
    process.send({ pid: process.pid, port: server.address().port, at: process.hrtime.bigint().toString() });
  });
  process.on("SIGTERM", () => {
    server.close(() => process.disconnect());
    server.closeIdleConnections();
  });
}

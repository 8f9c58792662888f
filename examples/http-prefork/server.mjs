// http-prefork: the parent loads a large table once, then a ForkingServer in
// async mode (prefork + eventLoop) forks N workers, each with an event loop
// of its own (fork({ eventLoop: true })). Each worker runs
// http.createServer(...).listen({ fd }) on the one listener and answers from
// the table it shares with the parent by copy-on-write. Workers that die are
// replaced; SIGTERM (or SIGINT) stops them cleanly; a worker gets SIGTERM if
// the parent dies (PR_SET_PDEATHSIG).
//
//   node --single-threaded examples/http-prefork/server.mjs --port 8080 --workers 4
//   curl http://127.0.0.1:8080/row/42
//
// One JSON line per event on stdout: listening, ready (per worker, with the
// time from fork() to listening), worker-exit, stopped.
import http from "node:http";
import { ForkingServer, writeAll } from "realfork";
import { exampleArgs, handler, loadTable } from "./table.mjs";

const values = exampleArgs();
const say = (event, fields = {}) => writeAll(1, `${JSON.stringify({ event, ...fields })}\n`);

const table = loadTable(Number(values.rows));
const server = new ForkingServer(
  { host: values.host, port: Number(values.port), backlog: 511, prefork: Number(values.workers), eventLoop: true },
  ({ listener, forkedAt }) =>
    http.createServer(handler(table)).listen({ fd: listener }, () => {
      say("ready", { pid: process.pid, forkToListenMs: Number(process.hrtime.bigint() - forkedAt) / 1e6 });
    }),
);
server.on("child-exit", (status) => say("worker-exit", status));
const { port } = server.listen();
say("listening", { port, pid: process.pid, rows: table.length });

const stop = () => server.close().then(() => say("stopped"));
process.once("SIGTERM", stop);
process.once("SIGINT", stop);

// A line server that forks per connection: each child answers every line in
// upper case until the client closes. Run: node examples/upper-server.mjs [port]
import { ensureNodeFlags, ForkingServer, read, writeAll } from "realfork";

ensureNodeFlags(); // fork() needs node --single-threaded: restarts this script with it (same pid)

const server = new ForkingServer({ host: "127.0.0.1", port: Number(process.argv[2] ?? 0) }, (conn) => {
  // In the child, synchronously: plain blocking reads and writes on conn.fd.
  const buf = Buffer.alloc(4096);
  let pending = "";
  for (;;) {
    const n = read(conn.fd, buf);
    if (n === 0) break; // the client closed (or half-closed)
    pending += buf.toString("utf8", 0, n);
    const lines = pending.split("\n");
    pending = lines.pop() ?? "";
    for (const line of lines) writeAll(conn.fd, `${line.toUpperCase()}\n`);
  }
  if (pending) writeAll(conn.fd, pending.toUpperCase());
});
server.on("child-exit", (s) => console.log(`child ${s.pid} ended (${s.state} ${s.code ?? s.signal})`));
const { port } = server.listen();
console.log(`upper-server: listening on 127.0.0.1:${port}, pid ${process.pid}`);
for (const sig of ["SIGINT", "SIGTERM"]) process.once(sig, () => server.close().then(() => console.log("stopped")));

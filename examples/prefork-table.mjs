// Prefork workers sharing a table loaded once, before fork: the workers read
// it and never write it, so the kernel shares its pages (copy-on-write) and
// each worker's private memory stays far below the table's size.
// Ask "N\n", get table[N]. SIGUSR2: each worker's private memory, from
// /proc/PID/smaps_rollup (Linux). Run: node examples/prefork-table.mjs [port] [workers]
import { readFileSync } from "node:fs";
import { ensureNodeFlags, ForkingServer, read, writeAll } from "realfork";

ensureNodeFlags();

const ENTRIES = 16 * 1024 * 1024; // 64 MiB of Uint32
const table = new Uint32Array(ENTRIES);
for (let i = 0; i < ENTRIES; i++) table[i] = (Math.imul(i, 2654435761) >>> 0) % 1000003; // every page touched
const tableMiB = table.byteLength / 2 ** 20;

const server = new ForkingServer(
  { host: "127.0.0.1", port: Number(process.argv[2] ?? 0), prefork: Number(process.argv[3] ?? 4) },
  (conn) => {
    const buf = Buffer.alloc(256);
    let pending = "";
    for (;;) {
      const n = read(conn.fd, buf);
      if (n === 0) break;
      pending += buf.toString("latin1", 0, n);
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      for (const line of lines) writeAll(conn.fd, `${table[Number(line)] ?? "?"}\n`);
    }
  },
);

/** Private_Clean + Private_Dirty of a process, in MiB: the pages no other process shares. */
function privateMiB(pid) {
  const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
  const kib = (field) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(rollup)?.[1] ?? 0);
  return (kib("Private_Clean") + kib("Private_Dirty")) / 1024;
}

process.on("SIGUSR2", () => {
  for (const pid of server.children)
    console.log(`worker ${pid}: private ${privateMiB(pid).toFixed(1)} MiB; table ${tableMiB} MiB`);
  console.log(`parent ${process.pid}: private ${privateMiB(process.pid).toFixed(1)} MiB`);
});
const { port } = server.listen();
console.log(`prefork-table: listening on 127.0.0.1:${port}, ${server.children.length} workers, table ${tableMiB} MiB`);
for (const sig of ["SIGINT", "SIGTERM"]) process.once(sig, () => server.close().then(() => console.log("stopped")));

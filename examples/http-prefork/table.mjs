// The shared part of the http-prefork example and its node:cluster
// counterpart: their options, a large table loaded once, and the handler
// that answers from it.
import { parseArgs } from "node:util";

/** --port, --host, --workers, --rows, and any `extra` options. */
export function exampleArgs(extra = {}) {
  return parseArgs({
    options: {
      port: { type: "string", default: "0" },
      host: { type: "string", default: "127.0.0.1" },
      workers: { type: "string", default: "4" },
      rows: { type: "string", default: "500000" },
      ...extra,
    },
  }).values;
}

/** Row i of the table, as the handler sends it (the test checks every answer with it). */
export const row = (i) => `{"id":${i},"name":"item ${i}","score":${(i * 7919) % 1000}}`;

/** Loads `rows` rows (~60 bytes each), as a service would load its data at start. */
export function loadTable(rows) {
  const table = new Array(rows);
  for (let i = 0; i < rows; i++) table[i] = row(i);
  return table;
}

/** GET /row/N answers row N; anything else is 404. */
export function handler(table) {
  return (req, res) => {
    const m = /^\/row\/(\d+)$/.exec(req.url ?? "");
    const i = m ? Number(m[1]) : -1;
    if (i < 0 || i >= table.length) {
      res.writeHead(404, { "content-type": "text/plain" }).end("no such row\n");
      return;
    }
    res.writeHead(200, { "content-type": "application/json", "x-worker": process.pid }).end(table[i]);
  };
}

// The shared part of the http-prefork example and its node:cluster
// counterpart: a large table loaded once, and the handler that answers from it.

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

// The descriptor picture of a snapshot: processes as boxes with their
// descriptors, sockets as boxes with state, endpoints and reference count,
// one edge per descriptor that refers to a socket. Findings (what `check`
// flags) are drawn in red. One model, two renderings: SVG (drawn here, no
// external program) and Graphviz DOT (src/inspect/dot.ts).
//
// Layout: two layers, processes on the left in tree order (parent first),
// sockets on the right, each placed at the mean height of the descriptors
// that refer to it (the barycenter), pushed down only as far as needed not to
// overlap. A child's connection then sits next to the child, and the listener
// next to its holders: with dozens of children the edges stay short and
// mostly level, and the picture grows in height only.
import type { Descriptor, FdSnapshot, ProcessEntry, SocketEntry } from "./fdtable.js";
import type { Finding } from "./findings.js";

export interface PictureOptions {
  /** A heading over the picture. */
  title?: string;
  /** Text under the heading (a demo step's narration); wrapped. */
  caption?: string;
  /** What `check` found in this snapshot: its evidence is drawn in red. */
  findings?: Finding[];
  /** Role names by pid (e.g. "worker" for serve --prefork); default: the root is "parent", the others "child". */
  roles?: ReadonlyMap<number, string>;
}

export interface PictureRow {
  fd: number | null;
  text: string;
  /** The socket this descriptor refers to. */
  inode: number | null;
  flagged: boolean;
}

export interface PictureProcess {
  pid: number;
  ppid: number;
  role: string;
  rows: PictureRow[];
  flagged: boolean;
}

export interface PictureSocket {
  socket: SocketEntry;
  flagged: boolean;
}

/** What both renderings draw. */
export interface PictureModel {
  title: string;
  caption: string;
  processes: PictureProcess[];
  sockets: PictureSocket[];
  findings: Finding[];
}

const STDIO = ["stdin", "stdout", "stderr"];

export function pictureModel(snap: FdSnapshot, options: PictureOptions = {}): PictureModel {
  const findings = options.findings ?? [];
  const evidence = findings.flatMap((f) => f.evidence);
  const flaggedFd = (pid: number, fd: number) => evidence.some((e) => e.pid === pid && e.fd === fd);
  // The kernel cannot tell a --prefork worker from a child that forgot to
  // close the listener (both hold it): callers that know say so in `roles`.
  const roleOf = (p: ProcessEntry) => options.roles?.get(p.pid) ?? (p.pid === snap.root ? "parent" : "child");
  const processes = snap.processes.map((p) => {
    // Named Unix sockets (fds --unix) have an address, and a box like TCP's.
    const addressed = (d: Descriptor) => d.type === "tcp" || (d.type === "unix" && d.local !== undefined);
    const shown = p.descriptors.filter((d) => d.fd <= 2 || addressed(d) || d.type === "socket");
    const rows: PictureRow[] = shown.map((d) => ({
      fd: d.fd,
      text: rowText(d),
      inode: addressed(d) ? d.inode : null,
      flagged: flaggedFd(p.pid, d.fd),
    }));
    const hidden = p.descriptors.length - shown.length;
    if (p.error) rows.push({ fd: null, text: p.error, inode: null, flagged: false });
    if (hidden > 0)
      rows.push({ fd: null, text: `+${hidden} runtime (epoll, eventfd, pipes)`, inode: null, flagged: false });
    return {
      pid: p.pid,
      ppid: p.ppid,
      role: roleOf(p),
      rows,
      flagged: evidence.some((e) => e.pid === p.pid && e.fd === undefined && e.inode === undefined),
    };
  });
  const sockets = snap.sockets.map((s) => ({ socket: s, flagged: evidence.some((e) => e.inode === s.inode) }));
  const count = (n: number, one: string, many: string) => `${n} ${n === 1 ? one : many}`;
  const unix = snap.sockets.some((s) => s.family === "unix");
  return {
    title:
      options.title ??
      `realfork fds ${snap.root}: ${count(processes.length, "process", "processes")}, ${unix ? count(sockets.length, "socket", "sockets") : count(sockets.length, "TCP socket", "TCP sockets")}`,
    caption: options.caption ?? "",
    processes,
    sockets,
    findings,
  };
}

function rowText(d: Descriptor): string {
  const text = rowWords(d);
  return text.length > 36 ? `${text.slice(0, 35)}…` : text;
}

function rowWords(d: Descriptor): string {
  if (d.fd <= 2 && d.type !== "tcp")
    return `${STDIO[d.fd]} ${d.type === "file" || d.type === "tty" ? d.target : d.type}`;
  if (d.type === "tcp") return `tcp ${d.state ?? ""}`;
  if (d.type === "unix" && d.local !== undefined) return `unix ${d.state ?? ""}`;
  return d.target;
}

/** The socket's lines, shared by both renderings. */
export function socketLines(s: SocketEntry): string[] {
  return [`socket:[${s.inode}]`, s.state, `${s.local} -> ${s.remote ?? "*"}`];
}

/** "refs 2: 4242:18 4250:18" */
export function refsText(s: SocketEntry): string {
  return `refs ${s.holders.length}`;
}

export function findingText(f: Finding): string {
  return `${f.kind}: ${f.message} (fix: ${f.fix})`;
}

// ---- SVG ----

const FONT = 13;
const LINE = 18;
const PAD = 10;
const PROC_X = 20;
const PROC_W = 330;
const SOCK_X = PROC_X + PROC_W + 170;
const SOCK_W = 320;
const GAP = 16;
const WIDTH = SOCK_X + SOCK_W + 20;
const COLORS: Record<string, string> = { LISTEN: "#1f5fbf", ESTABLISHED: "#1b8a3a" };
/** Findings are drawn in this red. */
export const FINDING_COLOUR = "#d01c1c";
const RED = FINDING_COLOUR;

export function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => `&${{ "<": "lt", ">": "gt", "&": "amp", '"': "quot", "'": "apos" }[c]};`);
}

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  for (const paragraph of text.split("\n")) {
    let line = "";
    for (const word of paragraph.split(/\s+/).filter(Boolean)) {
      if (line && line.length + 1 + word.length > width) {
        lines.push(line);
        line = word;
      } else line = line ? `${line} ${word}` : word;
    }
    lines.push(line);
  }
  return lines;
}

/** The picture as a standalone SVG document. */
export function renderSvg(model: PictureModel): string {
  const out: string[] = [];
  const text = (x: number, y: number, s: string, attrs = "") =>
    out.push(`<text x="${x}" y="${y}"${attrs ? ` ${attrs}` : ""}>${escapeXml(s)}</text>`);
  const heading: string[] = [model.title, ...(model.caption ? wrap(model.caption, 100) : [])];
  const findingLines = model.findings.flatMap((f) => wrap(findingText(f), 96));
  let y = 20 + heading.length * LINE + (findingLines.length > 0 ? findingLines.length * LINE + 2 * PAD + GAP : 0) + 30;
  const top = y;

  // Left layer: processes, and where each descriptor row sits.
  const rowY = new Map<string, number>();
  const procBoxes: string[] = [];
  for (const p of model.processes) {
    const h = PAD + LINE + p.rows.length * LINE + PAD;
    const stroke = p.flagged ? `stroke="${RED}" stroke-width="3"` : `stroke="#444" stroke-width="1.5"`;
    procBoxes.push(`<rect x="${PROC_X}" y="${y}" width="${PROC_W}" height="${h}" rx="6" fill="#f7f7f2" ${stroke}/>`);
    procBoxes.push(
      `<text x="${PROC_X + PAD}" y="${y + PAD + FONT}" font-weight="bold">${escapeXml(`${p.role} ${p.pid}`)}</text>`,
      `<text x="${PROC_X + PROC_W - PAD}" y="${y + PAD + FONT}" text-anchor="end" fill="#666">${escapeXml(`ppid ${p.ppid}`)}</text>`,
    );
    p.rows.forEach((r, i) => {
      const ry = y + PAD + LINE * (i + 1);
      const fill = r.flagged ? ` fill="${RED}" font-weight="bold"` : r.fd === null ? ` fill="#666"` : "";
      if (r.flagged)
        procBoxes.push(`<rect x="${PROC_X + 4}" y="${ry + 2}" width="${PROC_W - 8}" height="${LINE}" fill="#fde2e2"/>`);
      const label = r.fd === null ? r.text : `fd ${String(r.fd).padEnd(3)} ${r.text}`;
      procBoxes.push(
        `<text x="${PROC_X + PAD}" y="${ry + FONT + 2}"${fill} xml:space="preserve">${escapeXml(label)}</text>`,
      );
      if (r.inode !== null) rowY.set(`${p.pid}:${r.fd}`, ry + LINE / 2 + 2);
    });
    y += h + GAP;
  }
  const procBottom = y;

  // Right layer: each socket at the mean height of its holders' rows.
  const sockH = PAD + 4 * LINE + PAD;
  const wanted = model.sockets.map((s) => {
    const ys = s.socket.holders.map((h) => rowY.get(`${h.pid}:${h.fd}`)).filter((v) => v !== undefined);
    return { s, centre: ys.length > 0 ? ys.reduce((a, b) => a + b, 0) / ys.length : top };
  });
  wanted.sort((a, b) => a.centre - b.centre);
  const sockBoxes: string[] = [];
  const edges: string[] = [];
  let next = top;
  for (const { s, centre } of wanted) {
    const sy = Math.max(next, centre - sockH / 2);
    next = sy + sockH + GAP;
    const colour = s.flagged ? RED : (COLORS[s.socket.state] ?? "#c06a00");
    sockBoxes.push(
      `<rect x="${SOCK_X}" y="${sy}" width="${SOCK_W}" height="${sockH}" rx="6" fill="#ffffff" stroke="${colour}" stroke-width="${s.flagged ? 3 : 2}"/>`,
    );
    socketLines(s.socket).forEach((line, i) => {
      sockBoxes.push(
        `<text x="${SOCK_X + PAD}" y="${sy + PAD + FONT + i * LINE}"${i === 1 ? ` fill="${colour}" font-weight="bold"` : ""}>${escapeXml(line)}</text>`,
      );
    });
    sockBoxes.push(
      `<text x="${SOCK_X + PAD}" y="${sy + PAD + FONT + 3 * LINE}" font-weight="bold" font-size="${FONT + 2}">${escapeXml(refsText(s.socket))}</text>`,
    );
    const ty = sy + sockH / 2;
    for (const h of s.socket.holders) {
      const fy = rowY.get(`${h.pid}:${h.fd}`);
      if (fy === undefined) continue;
      const x1 = PROC_X + PROC_W;
      const x2 = SOCK_X;
      const mid = (x1 + x2) / 2;
      edges.push(
        `<path d="M${x1} ${fy} C${mid} ${fy} ${mid} ${ty} ${x2 - 2} ${ty}" fill="none" stroke="${colour}" stroke-width="${s.flagged ? 2.5 : 1.5}" marker-end="url(#arrow-${s.flagged ? "red" : "grey"})"/>`,
      );
    }
  }
  const height = Math.max(procBottom, next) + 10;

  y = 20;
  for (const [i, line] of heading.entries()) {
    text(PROC_X, y + FONT, line, i === 0 ? `font-weight="bold" font-size="${FONT + 3}"` : "");
    y += LINE;
  }
  if (findingLines.length > 0) {
    y += GAP / 2;
    const h = findingLines.length * LINE + 2 * PAD;
    out.push(
      `<rect x="${PROC_X}" y="${y}" width="${WIDTH - 2 * PROC_X}" height="${h}" rx="6" fill="#fde2e2" stroke="${RED}" stroke-width="2"/>`,
    );
    for (const [i, line] of findingLines.entries())
      text(PROC_X + PAD, y + PAD + FONT + i * LINE, line, `fill="${RED}" font-weight="bold"`);
  }
  const legend = top - 14;
  text(PROC_X, legend, "processes and their descriptors", `fill="#666"`);
  text(SOCK_X, legend, "sockets (refs: descriptors to it)", `fill="#666"`);

  return [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="DejaVu Sans Mono, Menlo, monospace" font-size="${FONT}">`,
    `<title>${escapeXml(model.title)}</title>`,
    "<defs>",
    ...["grey", "red"].map(
      (c) =>
        `<marker id="arrow-${c}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0 0 L10 5 L0 10 z" fill="${c === "red" ? RED : "#555"}"/></marker>`,
    ),
    "</defs>",
    `<rect width="${WIDTH}" height="${height}" fill="#ffffff"/>`,
    ...out,
    ...edges,
    ...procBoxes,
    ...sockBoxes,
    "</svg>",
    "",
  ].join("\n");
}

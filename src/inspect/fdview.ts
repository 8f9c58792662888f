// Text rendering of a descriptor snapshot: one table of processes and their
// descriptors, one of sockets and their holders (the reference counts).
import type { Descriptor, FdSnapshot, Holder, SocketEntry } from "./fdtable.js";

export function table(rows: string[][]): string[] {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, cell.length);
    });
  }
  return rows.map((row) =>
    row
      .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd(),
  );
}

export function holderText(holders: Holder[]): string {
  return holders.length === 0 ? "none" : holders.map((h) => `${h.pid}:${h.fd}`).join(" ");
}

function describe(d: Descriptor): string {
  if (d.type === "tcp") return `${d.local} -> ${d.remote ?? "*"} ${d.state}`;
  return d.target;
}

function sharing(s: SocketEntry): string {
  if (s.descriptions === null) return "";
  if (s.holders.length < 2) return "";
  if (s.descriptions.length === 1) return "one open file description (dup/fork)";
  return `${s.descriptions.length} open file descriptions`;
}

export interface RenderOptions {
  /** Show the runtime's own descriptors (epoll, eventfd, pipes) too. */
  all: boolean;
}

export function renderSnapshot(snap: FdSnapshot, options: RenderOptions = { all: true }): string {
  const lines: string[] = [];
  const rows: string[][] = [["PID", "PPID", "COMMAND", "FD", "TYPE", "WHAT"]];
  for (const p of snap.processes) {
    const shown = options.all
      ? p.descriptors
      : p.descriptors.filter((d) => d.fd <= 2 || d.type === "tcp" || d.type === "socket");
    if (p.error) rows.push([String(p.pid), String(p.ppid), p.command, "-", "-", p.error]);
    for (const d of shown) rows.push([String(p.pid), String(p.ppid), p.command, String(d.fd), d.type, describe(d)]);
    const hidden = p.descriptors.length - shown.length;
    if (hidden > 0)
      rows.push([
        String(p.pid),
        String(p.ppid),
        p.command,
        "",
        "",
        `(${hidden} more descriptor${hidden === 1 ? "" : "s"} of the runtime: epoll, eventfd, pipes; realfork fds without --sockets lists them)`,
      ]);
  }
  lines.push(
    `Descriptors of ${snap.root} and its descendants (${snap.processes.length} process${snap.processes.length === 1 ? "" : "es"})`,
  );
  lines.push(...table(rows));
  lines.push("");
  lines.push("TCP sockets: each holder is one descriptor; REFS is the reference count");
  if (snap.sockets.length === 0) {
    lines.push("  (none)");
  } else {
    const srows: string[][] = [["INODE", "STATE", "LOCAL", "REMOTE", "REFS", "HOLDERS (pid:fd)", "SHARING"]];
    for (const s of snap.sockets) {
      srows.push([
        String(s.inode),
        s.state,
        s.local,
        s.remote ?? "-",
        String(s.holders.length),
        holderText(s.holders),
        sharing(s),
      ]);
    }
    lines.push(...table(srows));
  }
  for (const note of snap.unavailable) lines.push(`not available on ${snap.platform}: ${note}`);
  return `${lines.join("\n")}\n`;
}

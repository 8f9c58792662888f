// Linux: descriptor tables from /proc, TCP endpoints from /proc/PID/net/tcp
// and tcp6, and kcmp(KCMP_FILE) for shared open file descriptions.
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { basename } from "node:path";
import { native } from "../../lib/native.js";
import type { Descriptor, DescriptorType, Holder, ProcessEntry } from "./types.js";

const TCP_STATES: Record<string, string> = {
  "01": "ESTABLISHED",
  "02": "SYN_SENT",
  "03": "SYN_RECV",
  "04": "FIN_WAIT1",
  "05": "FIN_WAIT2",
  "06": "TIME_WAIT",
  "07": "CLOSE",
  "08": "CLOSE_WAIT",
  "09": "LAST_ACK",
  "0A": "LISTEN",
  "0B": "CLOSING",
};

export interface TcpSocket {
  inode: number;
  local: string;
  remote: string | null;
  state: string;
  localPort: number;
}

/** /proc/net/tcp prints each 32-bit word of the address in host (little-endian) order. */
function decodeAddress(hex: string): string {
  const bytes: number[] = [];
  for (let w = 0; w < hex.length; w += 8) {
    const word = hex.slice(w, w + 8);
    for (let b = 6; b >= 0; b -= 2) bytes.push(Number.parseInt(word.slice(b, b + 2), 16));
  }
  if (bytes.length === 4) return bytes.join(".");
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0)).toString(16));
  if (groups.slice(0, 5).every((g) => g === "0") && groups[5] === "ffff") {
    return `::ffff:${bytes.slice(12).join(".")}`;
  }
  // Shorten the longest run of zero groups, as inet_ntop does.
  const text = groups.join(":");
  const runs = [...text.matchAll(/(?:^|:)0(?::0)+(?::|$)/g)];
  if (runs.length === 0) return text;
  const longest = runs.reduce((a, b) => (b[0].length > a[0].length ? b : a));
  return `${text.slice(0, longest.index)}::${text.slice((longest.index ?? 0) + longest[0].length)}`;
}

function endpoint(field: string, v6: boolean): { text: string; port: number; zero: boolean } {
  const [addrHex = "", portHex = "0"] = field.split(":");
  const address = decodeAddress(addrHex);
  const port = Number.parseInt(portHex, 16);
  const zero = /^0+$/.test(addrHex) && port === 0;
  return { text: v6 ? `[${address}]:${port}` : `${address}:${port}`, port, zero };
}

/** Every TCP socket in the network namespace of `pid`, by inode. */
export function tcpSockets(pid: number | "self" = "self"): Map<number, TcpSocket> {
  const table = new Map<number, TcpSocket>();
  for (const [file, v6] of [
    ["tcp", false],
    ["tcp6", true],
  ] as const) {
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/net/${file}`, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      const inode = Number(f[9]);
      if (!inode) continue; // TIME_WAIT and the like belong to no descriptor
      const local = endpoint(f[1] ?? "", v6);
      const remote = endpoint(f[2] ?? "", v6);
      table.set(inode, {
        inode,
        local: local.text,
        remote: remote.zero ? null : remote.text,
        state: TCP_STATES[f[3] ?? ""] ?? `0x${f[3]}`,
        localPort: local.port,
      });
    }
  }
  return table;
}

/**
 * A process's name in /proc/PID/stat (comm) is its main thread's name, and
 * Node 24 and later name that thread ("MainThread"; "node-MainThread" on 26),
 * which ps, lsof and ss then show for every node process. Such a process is
 * named after its program instead, as on Node 22 ("node"): /proc/PID/exe, or
 * for another user's process (exe is not readable) the first word of its
 * command line.
 */
export function programName(pid: number | string, comm: string): string {
  if (!/^(node-)?MainThread$/.test(comm)) return comm;
  try {
    return basename(readlinkSync(`/proc/${pid}/exe`));
  } catch {}
  try {
    return basename(readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")[0] ?? "") || comm;
  } catch {
    return comm; // gone meanwhile
  }
}

export function parentMap(): Map<number, { ppid: number; command: string }> {
  const map = new Map<number, { ppid: number; command: string }>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      // The command is in parentheses and may itself contain spaces or ")".
      const close = stat.lastIndexOf(")");
      const command = programName(name, stat.slice(stat.indexOf("(") + 1, close));
      const fields = stat.slice(close + 2).split(" ");
      map.set(Number(name), { ppid: Number(fields[1]), command });
    } catch {
      // gone meanwhile
    }
  }
  return map;
}

function classify(target: string): { type: DescriptorType; inode: number | null } {
  const m = /^(socket|pipe):\[(\d+)\]$/.exec(target);
  if (m) return { type: m[1] === "pipe" ? "pipe" : "socket", inode: Number(m[2]) };
  if (target === "anon_inode:[eventpoll]") return { type: "epoll", inode: null };
  if (target === "anon_inode:[eventfd]") return { type: "eventfd", inode: null };
  if (target.startsWith("/dev/pts/") || target.startsWith("/dev/tty")) return { type: "tty", inode: null };
  if (target.startsWith("/")) return { type: "file", inode: null };
  return { type: "other", inode: null };
}

function unixInodes(pid: number): Set<number> {
  const set = new Set<number>();
  try {
    for (const line of readFileSync(`/proc/${pid}/net/unix`, "utf8").split("\n").slice(1)) {
      const inode = Number(line.trim().split(/\s+/)[6]);
      if (inode) set.add(inode);
    }
  } catch {}
  return set;
}

export function readProcess(pid: number, ppid: number, command: string, tcp: Map<number, TcpSocket>): ProcessEntry {
  const entry: ProcessEntry = { pid, ppid, command, descriptors: [] };
  let names: string[];
  try {
    names = readdirSync(`/proc/${pid}/fd`);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    entry.error =
      code === "EACCES" || code === "EPERM"
        ? `permission denied: the descriptors of pid ${pid} can be read only by its user or root`
        : `cannot read /proc/${pid}/fd: ${code}`;
    return entry;
  }
  const unix = unixInodes(pid);
  for (const name of names) {
    const fd = Number(name);
    let target: string;
    try {
      target = readlinkSync(`/proc/${pid}/fd/${name}`);
    } catch {
      continue; // closed meanwhile
    }
    const { type, inode } = classify(target);
    const d: Descriptor = { fd, type, target, inode };
    if (type === "socket" && inode !== null) {
      const t = tcp.get(inode);
      if (t) Object.assign(d, { type: "tcp", local: t.local, remote: t.remote, state: t.state });
      else if (unix.has(inode)) d.type = "unix";
    }
    entry.descriptors.push(d);
  }
  entry.descriptors.sort((a, b) => a.fd - b.fd);
  return entry;
}

/** Groups holders that share one open file description (kcmp), or null if kcmp is refused. */
export function groupDescriptions(holders: Holder[]): Holder[][] | null {
  const groups: Holder[][] = [];
  for (const h of holders) {
    let placed = false;
    for (const g of groups) {
      const first = g[0] as Holder;
      const r = native.kcmp?.(first.pid, h.pid, first.fd, h.fd) ?? -1;
      if (r < 0) return null;
      if (r === 0) {
        g.push(h);
        placed = true;
        break;
      }
    }
    if (!placed) groups.push([h]);
  }
  return groups;
}

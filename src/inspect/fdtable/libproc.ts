// macOS: a process's descriptors from libproc's structs (sys/proc_info.h), read
// where the kernel wrote them. The addon only makes the two calls
// (native/darwin/fdtable.cc); it asserts every offset below against the SDK's
// headers when it compiles (npm run build:macos-check, in CI). They are the
// same on arm64 and x86_64.
import { constants } from "node:os";
import { native } from "../../lib/native.js";

/** One descriptor as libproc describes it. */
export interface LibprocFd {
  fd: number;
  type: "socket" | "tcp" | "unix" | "pipe" | "file" | "kqueue" | "other";
  /** The kernel address of the socket or pipe (as much of it as a JS number holds). */
  id?: number;
  local?: string;
  remote?: string | null;
  state?: string;
  path?: string;
}

/** The two calls, as the addon exports them on macOS: bytes filled, or -errno. */
export interface Libproc {
  procPidInfo(pid: number, flavor: number, arg: number, buffer: Buffer): number;
  procPidFdInfo(pid: number, fd: number, flavor: number, buffer: Buffer): number;
}

export const LAYOUT = {
  PROC_PIDLISTFDS: 1,
  PROC_PIDFDVNODEPATHINFO: 2,
  PROC_PIDFDSOCKETINFO: 3,
  PROC_PIDFDPIPEINFO: 6,
  PROX_FDTYPE_VNODE: 1,
  PROX_FDTYPE_SOCKET: 2,
  PROX_FDTYPE_KQUEUE: 5,
  PROX_FDTYPE_PIPE: 6,
  SOCKINFO_TCP: 2,
  AF_UNIX: 1,
  INI_IPV4: 1,
  proc_fdinfo: { size: 8, proc_fd: 0, proc_fdtype: 4 },
  socket_fdinfo: {
    size: 792,
    soi_so: 160,
    soi_family: 184,
    soi_kind: 256,
    // psi.soi_proto.pri_tcp: its tcpsi_ini (struct in_sockinfo), then tcpsi_state.
    insi_fport: 264,
    insi_lport: 268,
    insi_vflag: 288,
    insi_faddr: 296,
    insi_laddr: 312,
    /** i46a_addr4 in an in4in6_addr. */
    addr4: 12,
    tcpsi_state: 344,
  },
  pipe_fdinfo: { size: 184, pipe_handle: 160 },
  vnode_fdinfowithpath: { size: 1200, vip_path: 176, maxpathlen: 1024 },
} as const;

/** TSI_S_* in order, named as Linux's /proc/net/tcp names them. */
const TCP_STATES = [
  "CLOSE",
  "LISTEN",
  "SYN_SENT",
  "SYN_RECV",
  "ESTABLISHED",
  "CLOSE_WAIT",
  "FIN_WAIT1",
  "CLOSING",
  "LAST_ACK",
  "FIN_WAIT2",
  "TIME_WAIT",
];

/** A kernel address kept to 53 bits, so that it stays an exact JS number. */
const handle = (b: Buffer, off: number): number => Number(b.readBigUInt64LE(off) & 0x1fffffffffffffn);

/**
 * An IPv6 address as macOS's inet_ntop() writes it (BIND's inet_ntop6): the
 * first longest run of two or more zero groups as "::", lowercase hex, and an
 * IPv4-mapped or -compatible address with its last 32 bits dotted.
 */
export function ipv6Text(b: Buffer): string {
  const words = Array.from({ length: 8 }, (_, i) => b.readUInt16BE(i * 2));
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    let n = 0;
    while (i + n < 8 && words[i + n] === 0) n++;
    if (n >= 2 && n > bestLen) [best, bestLen] = [i, n];
    i += n || 1;
  }
  let text = "";
  for (let i = 0; i < 8; i++) {
    if (best >= 0 && i >= best && i < best + bestLen) {
      if (i === best) text += ":";
      continue;
    }
    if (i !== 0) text += ":";
    if (i === 6 && best === 0 && (bestLen === 6 || (bestLen === 5 && words[5] === 0xffff))) {
      text += [...b.subarray(12, 16)].join(".");
      break;
    }
    text += (words[i] as number).toString(16);
  }
  if (best >= 0 && best + bestLen === 8) text += ":";
  return text;
}

function endpoint(info: Buffer, addr: number, port: number, ipv4: boolean): string {
  // insi_lport/insi_fport: an int whose first two bytes are the port in network order.
  const p = info.readUInt16BE(port);
  if (ipv4) return `${[...info.subarray(addr + LAYOUT.socket_fdinfo.addr4, addr + 16)].join(".")}:${p}`;
  return `[${ipv6Text(info.subarray(addr, addr + 16))}]:${p}`;
}

function describeSocket(entry: LibprocFd, info: Buffer): void {
  const s = LAYOUT.socket_fdinfo;
  entry.id = handle(info, s.soi_so);
  if (info.readInt32LE(s.soi_kind) === LAYOUT.SOCKINFO_TCP) {
    const ipv4 = (info.readUInt8(s.insi_vflag) & LAYOUT.INI_IPV4) !== 0;
    entry.type = "tcp";
    entry.local = endpoint(info, s.insi_laddr, s.insi_lport, ipv4);
    entry.remote = info.readInt32LE(s.insi_fport) !== 0 ? endpoint(info, s.insi_faddr, s.insi_fport, ipv4) : null;
    entry.state = TCP_STATES[info.readInt32LE(s.tcpsi_state)] ?? "UNKNOWN";
  } else if (info.readInt32LE(s.soi_family) === LAYOUT.AF_UNIX) {
    entry.type = "unix";
  }
}

/**
 * The descriptors of `pid`, or -errno; undefined where the addon has no
 * libproc (any system but macOS). A descriptor closed between the list and
 * its own look keeps its type and loses its details.
 */
export function listFds(
  pid: number,
  lib: Partial<Libproc> = native as Partial<Libproc>,
): LibprocFd[] | number | undefined {
  if (!lib.procPidInfo || !lib.procPidFdInfo) return undefined;
  const { procPidInfo, procPidFdInfo } = lib as Libproc;
  const needed = procPidInfo(pid, LAYOUT.PROC_PIDLISTFDS, 0, Buffer.alloc(0));
  if (needed <= 0) return needed < 0 ? needed : -constants.errno.ESRCH;
  // Room for descriptors opened since.
  const list = Buffer.alloc(needed + 16 * LAYOUT.proc_fdinfo.size);
  const filled = procPidInfo(pid, LAYOUT.PROC_PIDLISTFDS, 0, list);
  if (filled <= 0) return filled < 0 ? filled : -constants.errno.ESRCH;
  const look = (fd: number, flavor: number, size: number): Buffer | null => {
    const info = Buffer.alloc(size);
    return procPidFdInfo(pid, fd, flavor, info) === size ? info : null;
  };
  const out: LibprocFd[] = [];
  for (let off = 0; off + LAYOUT.proc_fdinfo.size <= filled; off += LAYOUT.proc_fdinfo.size) {
    const fd = list.readInt32LE(off + LAYOUT.proc_fdinfo.proc_fd);
    const type = list.readUInt32LE(off + LAYOUT.proc_fdinfo.proc_fdtype);
    if (type === LAYOUT.PROX_FDTYPE_SOCKET) {
      const entry: LibprocFd = { fd, type: "socket" };
      const info = look(fd, LAYOUT.PROC_PIDFDSOCKETINFO, LAYOUT.socket_fdinfo.size);
      if (info) describeSocket(entry, info);
      out.push(entry);
    } else if (type === LAYOUT.PROX_FDTYPE_PIPE) {
      const info = look(fd, LAYOUT.PROC_PIDFDPIPEINFO, LAYOUT.pipe_fdinfo.size);
      out.push(info ? { fd, type: "pipe", id: handle(info, LAYOUT.pipe_fdinfo.pipe_handle) } : { fd, type: "pipe" });
    } else if (type === LAYOUT.PROX_FDTYPE_VNODE) {
      const v = LAYOUT.vnode_fdinfowithpath;
      const info = look(fd, LAYOUT.PROC_PIDFDVNODEPATHINFO, v.size);
      const path = info?.subarray(v.vip_path, v.vip_path + v.maxpathlen);
      const end = path?.indexOf(0) ?? -1;
      out.push(
        path ? { fd, type: "file", path: path.toString("utf8", 0, end < 0 ? undefined : end) } : { fd, type: "file" },
      );
    } else {
      out.push({ fd, type: type === LAYOUT.PROX_FDTYPE_KQUEUE ? "kqueue" : "other" });
    }
  }
  return out;
}

// The macOS descriptor table (src/inspect/fdtable/libproc.ts and darwin.ts),
// run here on Linux on recorded libproc answers. The bytes are laid out from
// the structs' declarations in the macOS SDK's sys/proc_info.h (fields in
// order, each at a multiple of its own size, as C lays them out on arm64 and
// x86_64), computed below independently of libproc.ts's offsets; the addon
// asserts those offsets against the SDK when it compiles for macOS (npm run
// build:macos-check). No macOS machine recorded them.
import { constants } from "node:os";
import { describe, expect, it } from "vitest";
import { readProcess } from "../src/inspect/fdtable/darwin.js";
import { ipv6Text, type Libproc, listFds } from "../src/inspect/fdtable/libproc.js";

// struct proc_fileinfo { uint32_t fi_openflags, fi_status; off_t fi_offset; int32_t fi_type; uint32_t fi_guardflags; }
const PROC_FILEINFO = 4 + 4 + 8 + 4 + 4;
// struct vinfo_stat { uint32_t dev; uint16_t mode, nlink; uint64_t ino; uid_t uid; gid_t gid;
//   int64_t atime, atimensec, mtime, mtimensec, ctime, ctimensec, birthtime, birthtimensec; off_t size;
//   int64_t blocks; int32_t blksize; uint32_t flags, gen, rdev; int64_t qspare[2]; }
const VINFO_STAT = 4 + 2 + 2 + 8 + 4 + 4 + 8 * 8 + 8 + 8 + 4 + 4 + 4 + 4 + 2 * 8;
// struct sockbuf_info { uint32_t cc, hiwat, mbcnt, mbmax, lowat; short flags, timeo; }
const SOCKBUF_INFO = 5 * 4 + 2 * 2;
// struct socket_info { vinfo_stat soi_stat; uint64_t soi_so, soi_pcb; int soi_type, soi_protocol, soi_family;
//   short options, linger, state, qlen, incqlen, qlimit, timeo; u_short error; uint32_t oobmark;
//   sockbuf_info rcv, snd; int soi_kind; uint32_t rfu_1; union { ... } soi_proto; }
const SOI_SO = VINFO_STAT;
const SOI_FAMILY = SOI_SO + 8 + 8 + 4 + 4;
const SOI_KIND = SOI_FAMILY + 4 + 7 * 2 + 2 + 4 + 2 * SOCKBUF_INFO;
const SOI_PROTO = SOI_KIND + 4 + 4;
// The union's largest member: struct un_sockinfo { uint64_t conn_so, conn_pcb; two unions of char[SOCK_MAXADDRLEN = 255] },
// 526 bytes, rounded up to its 8-byte alignment.
const SOI_PROTO_SIZE = Math.ceil((8 + 8 + 255 + 255) / 8) * 8;
// struct in_sockinfo { int insi_fport, insi_lport; uint64_t gencnt; uint32_t flags, flow; uint8_t vflag, ip_ttl;
//   uint32_t rfu_1; union { in4in6_addr { uint32_t pad[3]; in_addr addr4; }; in6_addr } insi_faddr, insi_laddr; ... }
const INSI = { fport: 0, lport: 4, vflag: 4 + 4 + 8 + 4 + 4, faddr: 4 + 4 + 8 + 4 + 4 + 1 + 1 + 2 + 4 };
const INSI_LADDR = INSI.faddr + 16;
// struct tcp_sockinfo { in_sockinfo tcpsi_ini; int tcpsi_state; ... }: in_sockinfo is 80 bytes
// (its insi_v4 { u_char } and insi_v6 { uint8_t; int; u_short; short } after the addresses).
const IN_SOCKINFO = INSI_LADDR + 16 + 4 + 12;
// struct socket_fdinfo { proc_fileinfo pfi; socket_info psi; }
const SOCKET_FDINFO = PROC_FILEINFO + SOI_PROTO + SOI_PROTO_SIZE;
// struct pipe_fdinfo { proc_fileinfo pfi; pipe_info { vinfo_stat; uint64_t handle, peerhandle; int status, rfu_1; } }
const PIPE_FDINFO = PROC_FILEINFO + VINFO_STAT + 8 + 8 + 4 + 4;
// struct vnode_fdinfowithpath { proc_fileinfo pfi; vnode_info_path { vnode_info { vinfo_stat; int type, pad; fsid_t (2 x int32) };
//   char vip_path[MAXPATHLEN = 1024]; } }
const VIP_PATH = PROC_FILEINFO + VINFO_STAT + 4 + 4 + 8;
const VNODE_FDINFOWITHPATH = VIP_PATH + 1024;

// Flavors and constants from the same header (and sys/socket.h).
const PROC_PIDLISTFDS = 1;
const [VNODEPATHINFO, SOCKETINFO, PIPEINFO] = [2, 3, 6];
const PROX = { VNODE: 1, SOCKET: 2, PSEM: 4, KQUEUE: 5, PIPE: 6 };
const [SOCKINFO_TCP, SOCKINFO_UN] = [2, 3];
const [AF_UNIX, AF_INET, AF_INET6] = [1, 2, 30];
const [INI_IPV4, INI_IPV6] = [1, 2];
const TSI = { LISTEN: 1, ESTABLISHED: 4, CLOSE_WAIT: 5, TIME_WAIT: 10 };

function ipv4(text: string): Buffer {
  // in4in6_addr: 12 bytes of padding, then the address.
  return Buffer.concat([Buffer.alloc(12), Buffer.from(text.split(".").map(Number))]);
}

function ipv6(words: number[]): Buffer {
  const b = Buffer.alloc(16);
  for (const [i, w] of words.entries()) b.writeUInt16BE(w, i * 2);
  return b;
}

function tcp(
  so: bigint,
  family: number,
  local: [Buffer, number],
  remote: [Buffer, number] | null,
  state: number,
): Buffer {
  const b = Buffer.alloc(SOCKET_FDINFO);
  const psi = PROC_FILEINFO;
  const ini = psi + SOI_PROTO;
  b.writeBigUInt64LE(so, psi + SOI_SO);
  b.writeInt32LE(family, psi + SOI_FAMILY);
  b.writeInt32LE(SOCKINFO_TCP, psi + SOI_KIND);
  b.writeUInt8(family === AF_INET ? INI_IPV4 : INI_IPV6, ini + INSI.vflag);
  // Ports are kept in an int in network byte order, as the kernel's inpcb holds them.
  b.writeUInt16BE(local[1], ini + INSI.lport);
  local[0].copy(b, ini + INSI_LADDR);
  if (remote) {
    b.writeUInt16BE(remote[1], ini + INSI.fport);
    remote[0].copy(b, ini + INSI.faddr);
  }
  b.writeInt32LE(state, ini + IN_SOCKINFO);
  return b;
}

function unix(so: bigint): Buffer {
  const b = Buffer.alloc(SOCKET_FDINFO);
  b.writeBigUInt64LE(so, PROC_FILEINFO + SOI_SO);
  b.writeInt32LE(AF_UNIX, PROC_FILEINFO + SOI_FAMILY);
  b.writeInt32LE(SOCKINFO_UN, PROC_FILEINFO + SOI_KIND);
  return b;
}

function pipe(handle: bigint): Buffer {
  const b = Buffer.alloc(PIPE_FDINFO);
  b.writeBigUInt64LE(handle, PROC_FILEINFO + VINFO_STAT);
  return b;
}

function vnode(path: string): Buffer {
  const b = Buffer.alloc(VNODE_FDINFOWITHPATH);
  b.write(path, VIP_PATH, "utf8");
  return b;
}

interface Recorded {
  fds: Array<[fd: number, type: number]>;
  info: Map<number, [flavor: number, bytes: Buffer]>;
  /** Descriptors opened between the size query and the list. */
  openedSince?: Array<[fd: number, type: number]>;
}

/** Answers as libproc does: the list's size first, then the list; per descriptor, its struct or an error. */
function recorded(pid: number, r: Recorded, listError = 0): Libproc {
  const list = (entries: Array<[number, number]>) => {
    const b = Buffer.alloc(entries.length * 8);
    entries.forEach(([fd, type], i) => {
      b.writeInt32LE(fd, i * 8); // proc_fdinfo.proc_fd
      b.writeUInt32LE(type, i * 8 + 4); // proc_fdinfo.proc_fdtype
    });
    return b;
  };
  return {
    procPidInfo(p, flavor, _arg, buffer) {
      if (listError) return listError;
      if (p !== pid || flavor !== PROC_PIDLISTFDS) return -constants.errno.ESRCH;
      if (buffer.length === 0) return list(r.fds).length;
      const all = list([...r.fds, ...(r.openedSince ?? [])]);
      return all.copy(buffer, 0, 0, Math.min(buffer.length, all.length));
    },
    procPidFdInfo(p, fd, flavor, buffer) {
      const answer = r.info.get(fd);
      if (p !== pid || !answer) return -constants.errno.EBADF;
      if (answer[0] !== flavor || buffer.length < answer[1].length) return -constants.errno.EINVAL;
      return answer[1].copy(buffer);
    },
  };
}

const loopback6 = ipv6([0, 0, 0, 0, 0, 0, 0, 1]);
const any6 = ipv6([0, 0, 0, 0, 0, 0, 0, 0]);
const mapped = ipv6([0, 0, 0, 0, 0, 0xffff, 0x7f00, 0x0001]);
// Kernel addresses use all 64 bits; ids keep the low 53 (an exact JS number).
const so = (n: number) => 0xffffff8000000000n + BigInt(n);
const id = (n: number) => Number(so(n) & 0x1fffffffffffffn);

const server: Recorded = {
  fds: [
    [0, PROX.VNODE],
    [1, PROX.PIPE],
    [3, PROX.SOCKET],
    [4, PROX.SOCKET],
    [5, PROX.SOCKET],
    [6, PROX.SOCKET],
    [7, PROX.SOCKET],
    [8, PROX.KQUEUE],
    [9, PROX.PSEM],
    [10, PROX.SOCKET],
  ],
  openedSince: [[11, PROX.SOCKET]],
  info: new Map([
    [0, [VNODEPATHINFO, vnode("/dev/ttys003")]],
    [1, [PIPEINFO, pipe(so(0x100))]],
    [3, [SOCKETINFO, tcp(so(0x200), AF_INET, [ipv4("0.0.0.0"), 9190], null, TSI.LISTEN)]],
    [4, [SOCKETINFO, tcp(so(0x300), AF_INET, [ipv4("127.0.0.1"), 9190], [ipv4("127.0.0.1"), 53124], TSI.ESTABLISHED)]],
    [5, [SOCKETINFO, tcp(so(0x400), AF_INET6, [any6, 9191], null, TSI.LISTEN)]],
    [6, [SOCKETINFO, tcp(so(0x500), AF_INET6, [mapped, 9191], [loopback6, 65535], TSI.CLOSE_WAIT)]],
    [7, [SOCKETINFO, unix(so(0x600))]],
    // fd 10 was closed between the list and its own look: no answer for it.
    [11, [SOCKETINFO, tcp(so(0x700), AF_INET, [ipv4("10.1.2.3"), 1], [ipv4("192.168.0.255"), 443], TSI.TIME_WAIT)]],
  ]),
};

describe("macOS descriptor tables from libproc's structs (recorded, laid out from sys/proc_info.h)", () => {
  it("the layout computed here is the one the addon asserts against the SDK", () => {
    expect([SOCKET_FDINFO, PIPE_FDINFO, VNODE_FDINFOWITHPATH]).toEqual([792, 184, 1200]);
    expect([PROC_FILEINFO + SOI_SO, PROC_FILEINFO + SOI_KIND, PROC_FILEINFO + SOI_PROTO]).toEqual([160, 256, 264]);
  });

  it("reads every kind of descriptor: files, pipes, TCP over IPv4 and IPv6, unix sockets, kqueues", () => {
    const entry = readProcess(4242, 1, "node", recorded(4242, server));
    expect(entry.error).toBeUndefined();
    expect(entry.descriptors).toEqual([
      { fd: 0, type: "file", target: "/dev/ttys003", inode: null },
      { fd: 1, type: "pipe", target: `pipe:[${id(0x100)}]`, inode: id(0x100) },
      {
        fd: 3,
        type: "tcp",
        target: `tcp:[${id(0x200)}]`,
        inode: id(0x200),
        local: "0.0.0.0:9190",
        remote: null,
        state: "LISTEN",
      },
      {
        fd: 4,
        type: "tcp",
        target: `tcp:[${id(0x300)}]`,
        inode: id(0x300),
        local: "127.0.0.1:9190",
        remote: "127.0.0.1:53124",
        state: "ESTABLISHED",
      },
      {
        fd: 5,
        type: "tcp",
        target: `tcp:[${id(0x400)}]`,
        inode: id(0x400),
        local: "[::]:9191",
        remote: null,
        state: "LISTEN",
      },
      {
        fd: 6,
        type: "tcp",
        target: `tcp:[${id(0x500)}]`,
        inode: id(0x500),
        local: "[::ffff:127.0.0.1]:9191",
        remote: "[::1]:65535",
        state: "CLOSE_WAIT",
      },
      { fd: 7, type: "unix", target: `unix:[${id(0x600)}]`, inode: id(0x600) },
      { fd: 8, type: "kqueue", target: "kqueue", inode: null },
      { fd: 9, type: "other", target: "other", inode: null },
      { fd: 10, type: "socket", target: "socket", inode: null },
      {
        fd: 11,
        type: "tcp",
        target: `tcp:[${id(0x700)}]`,
        inode: id(0x700),
        local: "10.1.2.3:1",
        remote: "192.168.0.255:443",
        state: "TIME_WAIT",
      },
    ]);
  });

  it("says why a table cannot be read: permission, a process gone, no libproc", () => {
    const denied = readProcess(1, 0, "launchd", recorded(1, server, -constants.errno.EPERM));
    expect(denied).toMatchObject({
      descriptors: [],
      error: "permission denied: the descriptors of pid 1 can be read only by its user or root",
    });
    expect(readProcess(99999, 1, "gone", recorded(4242, server)).error).toBe("proc_pidinfo: ESRCH: no such process");
    // A size query answering 0 bytes: the process ended in between.
    expect(listFds(7, recorded(7, { fds: [], info: new Map() }))).toBe(-constants.errno.ESRCH);
    expect(readProcess(7, 1, "x", {}).error).toBe("libproc is not available in this build");
  });

  it("writes IPv6 addresses as inet_ntop does", () => {
    expect(ipv6Text(ipv6([0x2001, 0xdb8, 0, 0, 1, 0, 0, 1]))).toBe("2001:db8::1:0:0:1"); // the first of two equal runs
    expect(ipv6Text(ipv6([0x2001, 0xdb8, 0, 1, 1, 1, 1, 1]))).toBe("2001:db8:0:1:1:1:1:1"); // one zero group stays
    expect(ipv6Text(ipv6([0xfe80, 0, 0, 0, 0xa, 0, 0, 0]))).toBe("fe80::a:0:0:0");
    expect(ipv6Text(ipv6([1, 0, 0, 0, 0, 0, 0, 0]))).toBe("1::");
    expect(ipv6Text(any6)).toBe("::");
    expect(ipv6Text(mapped)).toBe("::ffff:127.0.0.1");
    expect(ipv6Text(ipv6([0, 0, 0, 0, 0, 0, 0x0a00, 0x0001]))).toBe("::10.0.0.1"); // IPv4-compatible
    // Elsewhere the same as the WHATWG URL serializer, which compresses the same run.
    for (let seed = 1; seed <= 500; seed++) {
      const words = Array.from({ length: 8 }, (_, i) =>
        ((seed * (i + 3) * 2654435761) >>> 7) % 5 === 0 ? 0 : (seed * (i + 1) * 40503) & 0xffff,
      );
      const b = ipv6(words);
      const text = ipv6Text(b);
      if (text.includes(".")) continue;
      expect(text, words.join(",")).toBe(
        new URL(`http://[${words.map((w) => w.toString(16)).join(":")}]/`).hostname.slice(1, -1),
      );
    }
  });
});

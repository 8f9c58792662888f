/** The schema of `realfork fds --json` (documented in docs/fds-json.md). */

export type DescriptorType =
  | "tcp"
  | "unix"
  | "socket"
  | "pipe"
  | "file"
  | "tty"
  | "epoll"
  | "eventfd"
  | "kqueue"
  | "other";

export interface Descriptor {
  fd: number;
  type: DescriptorType;
  /** What the kernel calls it: "socket:[1234]", "pipe:[99]", a path... */
  target: string;
  /** Kernel object id: the socket or pipe inode on Linux, the socket/pipe address on macOS. */
  inode: number | null;
  /** TCP, and the Unix sockets asked for by path (local is the path, remote null). */
  local?: string;
  remote?: string | null;
  state?: string;
}

export interface ProcessEntry {
  pid: number;
  ppid: number;
  command: string;
  descriptors: Descriptor[];
  /** Set when the descriptors could not be read (permission, gone). */
  error?: string;
}

export interface Holder {
  pid: number;
  fd: number;
}

export interface SocketEntry {
  /** "unix" for a Unix stream socket (local is its path); TCP otherwise. */
  family?: "unix";
  inode: number;
  local: string;
  remote: string | null;
  state: string;
  /** Every (pid, fd) that refers to the socket: its reference count is holders.length. */
  holders: Holder[];
  /**
   * Holders grouped by open file description (descriptors made by dup() or
   * inherited through fork() share one). null where the OS cannot tell.
   */
  descriptions: Holder[][] | null;
  /** A listener's accept queue: connections that wait for an accept() (Linux). */
  queued?: number;
}

export interface FdSnapshot {
  platform: NodeJS.Platform;
  root: number;
  /** Facts this OS does not give, said once. */
  unavailable: string[];
  processes: ProcessEntry[];
  sockets: SocketEntry[];
}

// The raw binding, typed once. Every function returns its result or a
// negative errno; src/posix.ts turns the latter into SyscallError.
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export interface NativeAddress {
  address: string;
  port: number;
  family: "IPv4" | "IPv6" | "unix" | "other";
}

export interface NativeAccepted extends NativeAddress {
  fd: number;
}

export interface NativeFdWatcher {
  /** events: 1 readable (default), 2 writable, 3 both; 0 or -errno. */
  start(events?: number): number;
  stop(): void;
  close(): void;
}

export interface NativeBinding {
  socket(domain: number, type: number, protocol: number): number;
  socketpair(domain: number, type: number, protocol: number): [number, number] | number;
  setsockopt(fd: number, level: number, name: number, value: number): number;
  getsockopt(fd: number, level: number, name: number): number;
  bind(fd: number, host: string, port: number): number;
  listen(fd: number, backlog: number): number;
  accept(fd: number): NativeAccepted | number;
  connect(fd: number, host: string, port: number): number;
  shutdown(fd: number, how: number): number;
  getsockname(fd: number): NativeAddress | number;
  getpeername(fd: number): NativeAddress | number;
  /** Registers the functions that make accept's and get*name's result objects (once, below). */
  setAddressFactories(
    address: (family: NativeAddress["family"], port: number, address: string) => NativeAddress,
    accepted: (family: NativeAddress["family"], port: number, address: string, fd: number) => NativeAccepted,
  ): void;
  /** 4 or 6 when inet_pton reads the text as that family's numeric address, else 0. */
  ipFamily(text: string): 0 | 4 | 6;
  read(fd: number, buf: Uint8Array, offset: number, length: number): number;
  write(fd: number, buf: Uint8Array, offset: number, length: number): number;
  close(fd: number): number;
  open(path: string, flags: number): number;
  mkfifo(path: string, mode: number): number;
  /** close_range(2) on Linux; -ENOSYS elsewhere. */
  closeRange(first: number, last: number): number;
  dup(fd: number): number;
  dup2(fd: number, target: number): number;
  poll(fds: number[], events: number[], timeout: number): number[] | number;
  getfl(fd: number): number;
  setfl(fd: number, flags: number): number;
  /** With eventLoop true, the child's libuv loop is made its own (native/loopfork.cc); -EBUSY when V8's workers did not park within parkTimeoutMs. They stay parked in the parent until releasePlatformWorkers(). */
  fork(eventLoop?: boolean): number;
  /** Lets V8's worker threads go that fork() left parked; nothing when none are. */
  releasePlatformWorkers(): void;
  /** How long fork() waits for V8's worker threads to finish what they run (native/process.cc). */
  parkTimeoutMs: number;
  /** Threadpool requests queued or running, and finished ones not yet collected. */
  threadpoolWork(): { running: number; finished: number };
  /** Handles of Node's alive now (sockets, servers, processes, watchers, reading stdio, a due timer, a waiting immediate). */
  existingHandles(): number;
  /** True on the process's main thread (not a Worker's). */
  isMainThread(): boolean;
  /** A ref'd prepare handle: onIdle when nothing else is alive, then onDrained if still nothing. */
  startLoopGuard(onIdle: () => void, onDrained: () => void): void;
  /** Closes every FdWatcher of this process, with no callback. */
  closeFdWatchers(): void;
  waitpid(pid: number, options: number): [number, number, number] | number;
  _exit(code: number): never;
  /** execve(2): returns only on failure, with -errno. */
  execve(path: string, argv: string[], env: string[]): number;
  /** A pipe readable when one of these signals arrives (one byte: its number); the read end, or -errno. */
  signalPipe(signals: number[]): number;
  /** Sets or clears FD_CLOEXEC; the previous setting (1 or 0), or -errno. */
  cloexec(fd: number, on: boolean): number;
  /** prctl(PR_SET_PDEATHSIG) on Linux; -ENOSYS elsewhere. */
  parentDeathSignal(signal: number): number;
  /** malloc_trim(0) with glibc: 1 if memory was released, else 0; -ENOSYS elsewhere. */
  mallocTrim(): number;
  /** True when native/linux/packed_heap.c is preloaded into this process (Linux; false elsewhere). */
  packedHeap(): boolean;
  /** sigaction(sig, SIG_IGN): 0 or -errno. */
  ignoreSignal(sig: number): number;
  /** Tells fork() that signal handlers were installed or removed: it finds them again before the next fork. */
  signalHandlersChanged(): void;
  getpid(): number;
  getppid(): number;
  kill(pid: number, signal: number): number;
  strerror(errno: number): string;
  /** Linux only: 0 when both descriptors share one open file description. */
  kcmp?(pid1: number, pid2: number, fd1: number, fd2: number): number;
  /** macOS only: proc_pidinfo(), bytes filled (an empty buffer: bytes needed); src/inspect/fdtable/libproc.ts reads them. */
  procPidInfo?(pid: number, flavor: number, arg: number, buffer: Buffer): number;
  /** macOS only: proc_pidfdinfo(), bytes filled. */
  procPidFdInfo?(pid: number, fd: number, flavor: number, buffer: Buffer): number;
  /** The event loop's wakeup descriptors (uv_async_send writes to them); -1 when unused. */
  loopWakeupFds(): [number, number];
  platform: "linux" | "darwin";
  /** The Node the addon was compiled against: its version, NODE_MODULE_VERSION, libuv as major*10000+minor*100+patch. */
  builtFor: { node: string; modules: number; uv: number };
  FdWatcher: new (fd: number, callback: (status: number, events: number) => void) => NativeFdWatcher;
  constants: Record<
    | "AF_UNIX"
    | "AF_INET"
    | "AF_INET6"
    | "SOCK_STREAM"
    | "SOL_SOCKET"
    | "SO_REUSEADDR"
    | "SO_KEEPALIVE"
    | "SO_RCVBUF"
    | "SO_SNDBUF"
    | "SO_ERROR"
    | "SO_TYPE"
    | "IPPROTO_TCP"
    | "TCP_NODELAY"
    | "SHUT_RD"
    | "SHUT_WR"
    | "SHUT_RDWR"
    | "POLLIN"
    | "POLLOUT"
    | "POLLERR"
    | "POLLHUP"
    | "POLLNVAL"
    | "O_NONBLOCK"
    | "O_RDONLY"
    | "O_WRONLY"
    | "O_RDWR"
    | "O_CLOEXEC"
    | "WNOHANG"
    | "WUNTRACED",
    number
  > & {
    /** Linux: a descriptor that names a file and allows no I/O. */
    O_PATH?: number;
  };
}

const require = createRequire(import.meta.url);
const packageRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const bindings = require("bindings") as (opts: { bindings: string; module_root: string }) => unknown;

export const native = bindings({ bindings: "realfork", module_root: packageRoot }) as NativeBinding;

// N-API would load the addon under any Node, but fork() reaches into V8's
// and Node's C++ API (native/platform_park.cc), laid out anew in every major.
if (String(native.builtFor.modules) !== process.versions.modules) {
  throw Object.assign(
    new Error(
      `realfork's addon was built for Node ${native.builtFor.node} and this is Node ${process.versions.node}: ` +
        "rebuild it under this Node (npm rebuild realfork, or npm run build in a checkout)",
    ),
    { code: "ERR_REALFORK_ADDON_NODE" },
  );
}

// accept(), getsockname() and getpeername() return objects made by these
// literals: V8 builds each in one step with a map it keeps, where four
// properties set from C++ cost a string-table lookup and a map change each
// (most of accept's user time in a prefork worker).
native.setAddressFactories(
  (family, port, address) => ({ family, port, address }),
  (family, port, address, fd) => ({ family, port, address, fd }),
);

/** The packed-heap preload (native/linux/packed_heap.c), built beside the addon on Linux. */
export const packedHeapLibrary = join(packageRoot, "build", "Release", "realfork_packed_heap.so");
